//! The master key (key-encryption key): 256-bit keys with versions, read from a file whose lines are
//! `v<N>:<64 hex digits>` (`#` starts a comment). The highest version is current; older ones stay to open
//! what they sealed until retired. With no file configured, a development key file is generated in the
//! data directory on first start, with a loud warning. `file_provider.rs` keeps this file; this module
//! only parses it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
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

pub use super::provider::MasterKeyError;

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
    pub fn read(path: &Path) -> Result<Self, MasterKeyError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| MasterKeyError::File(path.to_owned(), e.to_string()))?,
        );
        Self::parse(&text).map_err(|m| MasterKeyError::File(path.to_owned(), m))
    }

    /// No key at all (a key file not made yet).
    pub fn empty() -> Self {
        Self {
            keys: BTreeMap::new(),
        }
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

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
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
