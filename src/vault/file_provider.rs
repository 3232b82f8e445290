//! The `file` key provider: master keys as `v<N>:<hex>` lines in a file of mode 0600. A file that group
//! or others can read stops the start. Every change goes through a unique temporary file, fsync and
//! rename, and is read back before it counts; callers hold the admin lock while they change it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::master::{KeyBytes, KeyFile, MasterKeys};
use super::provider::{self_check, KeyProvider, MasterKeyError, ProviderResult};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

pub struct FileProvider {
    path: PathBuf,
    keys: RwLock<Arc<MasterKeys>>,
}

impl FileProvider {
    /// Opens the key file, generating the development key first if it is the default one and missing.
    /// Refuses a file that group or others may read.
    pub fn open(file: &KeyFile) -> ProviderResult<Self> {
        if let KeyFile::Development(path) = file {
            if !path.exists() {
                write_new_file(path, &new_key_text(1, None)?)?;
                tracing::warn!(
                    path = %path.display(),
                    "GENERATED A DEVELOPMENT MASTER KEY. Card data sealed with it is only as safe as this file. \
                     In production set STRONGROOM_MASTER_KEY_FILE to a key kept apart from the database, \
                     or STRONGROOM_KEY_PROVIDER=pkcs11."
                );
            }
        }
        check_mode(file.path())?;
        let keys = MasterKeys::read(file.path())?;
        Ok(Self {
            path: file.path().to_owned(),
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// A provider for a key file that may not exist yet (`master-key init`).
    pub fn unopened(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(MasterKeys::empty())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keys(&self) -> Arc<MasterKeys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, keys: MasterKeys) {
        match self.keys.write() {
            Ok(mut slot) => *slot = Arc::new(keys),
            Err(p) => *p.into_inner() = Arc::new(keys),
        }
    }

    fn fail(&self, e: impl std::fmt::Display) -> MasterKeyError {
        MasterKeyError::File(self.path.clone(), e.to_string())
    }

    /// Replaces the file's text with `text` through a unique temporary file, then reads it back.
    fn replace(&self, text: &str) -> ProviderResult<MasterKeys> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            crate::new_id().simple()
        ));
        write_new_file(&tmp, text)?;
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.fail(e));
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        check_mode(&self.path)?;
        MasterKeys::read(&self.path)
    }
}

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    Aes256Gcm::new(key.as_ref().into())
}

impl KeyProvider for FileProvider {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn versions(&self) -> Vec<u32> {
        self.keys().versions()
    }

    /// The file is read again (without replacing the keys in use): it must still be there, readable,
    /// and hold the version new wraps use.
    fn check(&self) -> ProviderResult<()> {
        let in_use = self.current_version();
        let read = MasterKeys::read(&self.path)?;
        if read.get(in_use).is_none() {
            return Err(MasterKeyError::UnknownVersion(in_use));
        }
        Ok(())
    }

    fn reload(&self) -> ProviderResult<()> {
        self.set(MasterKeys::read(&self.path)?);
        Ok(())
    }

    fn wrap(&self, version: u32, aad: &[u8], key: &KeyBytes) -> ProviderResult<Vec<u8>> {
        let keys = self.keys();
        let kek = keys
            .get(version)
            .ok_or(MasterKeyError::UnknownVersion(version))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher(kek)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.as_ref(),
                    aad,
                },
            )
            .map_err(|_| MasterKeyError::Integrity)?;
        Ok([&[FORMAT_V1][..], &nonce, &ciphertext].concat())
    }

    fn unwrap(&self, version: u32, aad: &[u8], wrapped: &[u8]) -> ProviderResult<KeyBytes> {
        if wrapped.len() != 1 + NONCE_LEN + 32 + 16 || wrapped[0] != FORMAT_V1 {
            return Err(MasterKeyError::Integrity);
        }
        let keys = self.keys();
        let kek = keys
            .get(version)
            .ok_or(MasterKeyError::UnknownVersion(version))?;
        let plain = Zeroizing::new(
            cipher(kek)
                .decrypt(
                    Nonce::from_slice(&wrapped[1..1 + NONCE_LEN]),
                    Payload {
                        msg: &wrapped[1 + NONCE_LEN..],
                        aad,
                    },
                )
                .map_err(|_| MasterKeyError::Integrity)?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    fn init(&self) -> ProviderResult<u32> {
        if self.path.exists() {
            return Err(MasterKeyError::Refused(format!(
                "master key file {} already exists; use `master-key rotate` to add a version",
                self.path.display()
            )));
        }
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|e| self.fail(e))?;
        }
        write_new_file(&self.path, &new_key_text(1, None)?)?;
        self.set(MasterKeys::read(&self.path)?);
        self_check(self, 1)?;
        Ok(1)
    }

    fn add_version(&self) -> ProviderResult<u32> {
        check_mode(&self.path)?;
        let current = MasterKeys::read(&self.path)?;
        let existing =
            Zeroizing::new(std::fs::read_to_string(&self.path).map_err(|e| self.fail(e))?);
        let version = current.current_version() + 1;
        let text = new_key_text(version, Some(&existing))?;
        let written = self.replace(&text)?;
        if written.current_version() != version
            || written.versions().len() != current.versions().len() + 1
        {
            return Err(self.fail("the rewritten file does not hold the new version"));
        }
        self.set(written);
        self_check(self, version)?;
        Ok(version)
    }

    fn destroy_version(&self, version: u32) -> ProviderResult<()> {
        check_mode(&self.path)?;
        let current = MasterKeys::read(&self.path)?;
        if current.get(version).is_none() {
            return Err(MasterKeyError::UnknownVersion(version));
        }
        if current.current_version() == version {
            return Err(MasterKeyError::Refused(format!(
                "v{version} is the current master key version; rotate first"
            )));
        }
        let existing =
            Zeroizing::new(std::fs::read_to_string(&self.path).map_err(|e| self.fail(e))?);
        let prefix = format!("v{version}:");
        let mut text = Zeroizing::new(String::with_capacity(existing.len()));
        for line in existing.lines() {
            if !line.trim_start().starts_with(&prefix) {
                text.push_str(line);
                text.push('\n');
            }
        }
        let written = self.replace(&text)?;
        if written.get(version).is_some()
            || written.versions().len() + 1 != current.versions().len()
        {
            return Err(self.fail("the rewritten file still holds the retired version"));
        }
        self.set(written);
        Ok(())
    }

    fn lock_file(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }
}

/// The text of a key file: `existing` (if any) followed by a fresh random key as version `version`.
fn new_key_text(version: u32, existing: Option<&str>) -> ProviderResult<Zeroizing<String>> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let head = match existing {
        Some(text) if text.is_empty() || text.ends_with('\n') => text.to_owned(),
        Some(text) => format!("{text}\n"),
        None => "# Strongroom master key file. Keep it apart from the database and its backups.\n"
            .to_owned(),
    };
    Ok(Zeroizing::new(format!(
        "{head}v{version}:{}\n",
        hex::encode(key.as_ref())
    )))
}

/// Creates `path` (which must not exist) with mode 0600 holding `text`, synced to disk.
fn write_new_file(path: &Path, text: &str) -> ProviderResult<()> {
    let fail = |e: std::io::Error| MasterKeyError::File(path.to_owned(), e.to_string());
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            create_private_dir(dir).map_err(fail)?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Refuses a key file that group or others may read or write.
pub fn check_mode(path: &Path) -> ProviderResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| MasterKeyError::File(path.to_owned(), e.to_string()))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700 (the data directory holds the database).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
