//! The master key (key-encryption key): 256-bit keys with versions, read from a file whose lines are
//! `v<N>:<64 hex digits>` (`#` starts a comment). The highest version is current; older ones stay to open
//! what they sealed until retired. With no file configured, a development key file is generated in the
//! data directory on first start, with a loud warning.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

pub type KeyBytes = Zeroizing<[u8; 32]>;

pub struct MasterKeys {
    keys: BTreeMap<u32, KeyBytes>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key file {0}: {1}")]
    File(PathBuf, String),
}

pub const DEV_KEY_FILE: &str = "master.key";

/// Where the master key lives: a file the operator keeps, or the development key in the data directory,
/// generated on first use.
#[derive(Clone, Debug)]
pub enum KeyFile {
    Configured(PathBuf),
    Development(PathBuf),
}

impl KeyFile {
    pub fn new(configured: Option<PathBuf>, data_dir: &Path) -> Self {
        match configured {
            Some(path) => KeyFile::Configured(path),
            None => KeyFile::Development(data_dir.join(DEV_KEY_FILE)),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            KeyFile::Configured(path) | KeyFile::Development(path) => path,
        }
    }
}

impl MasterKeys {
    /// Reads the master key file; a development key file is made first if it is missing.
    pub fn load(file: &KeyFile) -> Result<Self, MasterKeyError> {
        if let KeyFile::Development(path) = file {
            if !path.exists() {
                create_dev_key_file(path)?;
                tracing::warn!(
                    path = %path.display(),
                    "GENERATED A DEVELOPMENT MASTER KEY. Card data sealed with it is only as safe as this file. \
                     In production set STRONGROOM_MASTER_KEY_FILE to a key kept apart from the database."
                );
            }
        }
        Self::read(file.path())
    }

    pub fn read(path: &Path) -> Result<Self, MasterKeyError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| MasterKeyError::File(path.to_owned(), e.to_string()))?,
        );
        Self::parse(&text).map_err(|m| MasterKeyError::File(path.to_owned(), m))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (version, hex_key) = line
                .strip_prefix('v')
                .and_then(|l| l.split_once(':'))
                .ok_or_else(|| format!("line {}: expected `v<N>:<64 hex digits>`", n + 1))?;
            let version: u32 = version
                .parse()
                .map_err(|_| format!("line {}: bad version number", n + 1))?;
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_key.trim(), key.as_mut())
                .map_err(|_| format!("line {}: the key must be 64 hex digits (256 bits)", n + 1))?;
            if keys.insert(version, key).is_some() {
                return Err(format!("line {}: version {version} appears twice", n + 1));
            }
        }
        if keys.is_empty() {
            return Err("holds no key".to_owned());
        }
        Ok(Self { keys })
    }

    /// The version new wraps use.
    pub fn current_version(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    pub fn get(&self, version: u32) -> Option<&KeyBytes> {
        self.keys.get(&version)
    }

    /// A 256-bit key for `purpose`, derived from the key of `version` (HMAC-SHA256 as a PRF).
    pub fn derive(&self, version: u32, purpose: &str) -> Option<KeyBytes> {
        let key = self.keys.get(&version)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).ok()?;
        mac.update(b"strongroom/");
        mac.update(purpose.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        Some(out)
    }
}

fn create_dev_key_file(path: &Path) -> Result<(), MasterKeyError> {
    let fail = |e: std::io::Error| MasterKeyError::File(path.to_owned(), e.to_string());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let text = Zeroizing::new(format!(
        "# Strongroom DEVELOPMENT master key, generated on first start. Not for production.\nv1:{}\n",
        hex::encode(key.as_ref())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_version_is_current() {
        let text = format!("# keys\nv1:{}\nv2:{}\n", "11".repeat(32), "22".repeat(32));
        let keys = MasterKeys::parse(&text).unwrap();
        assert_eq!(keys.current_version(), 2);
        assert_eq!(keys.get(1).unwrap()[0], 0x11);
    }

    #[test]
    fn short_keys_and_empty_files_are_refused() {
        assert!(MasterKeys::parse("v1:abcd").is_err());
        assert!(MasterKeys::parse("# nothing\n").is_err());
        assert!(MasterKeys::parse(&format!("v1:{0}\nv1:{0}", "00".repeat(32))).is_err());
    }

    #[test]
    fn debug_shows_versions_only() {
        let keys = MasterKeys::parse(&format!("v3:{}", "ab".repeat(32))).unwrap();
        assert_eq!(format!("{keys:?}"), "MasterKeys { versions: [3] }");
    }
}
