//! Where the master key lives, behind one trait: `file` (a key file of hex lines, the newcomer's
//! default) or `pkcs11` (non-extractable AES keys inside an HSM, which wrap and unwrap data keys without
//! the master key ever entering this process). Versions are numbered from 1; the highest is current.

use std::path::PathBuf;
use std::sync::Arc;

use super::master::KeyBytes;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key file {0}: {1}")]
    File(PathBuf, String),
    /// The key file can be read by group or others: the start is refused.
    #[error("master key file {path} has mode {mode:04o}: it must not be readable by group or others (run `chmod 600 {path}`)")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    #[error("master key version {0} does not exist")]
    UnknownVersion(u32),
    #[error("{0}")]
    Refused(String),
    /// A wrapped key failed to open: wrong key, wrong account, or tampering.
    #[error("a wrapped key failed to open")]
    Integrity,
}

pub type ProviderResult<T> = Result<T, MasterKeyError>;

/// The master key's custodian. Wrapping binds `aad` (the key's role and account) to the result.
pub trait KeyProvider: Send + Sync {
    /// `file` or `pkcs11`.
    fn kind(&self) -> &'static str;
    /// Where the key lives, for messages and the audit trail (a path or a token label; never a secret).
    fn describe(&self) -> String;
    /// The versions known, ascending, as last read.
    fn versions(&self) -> Vec<u32>;
    /// The version new wraps use.
    fn current_version(&self) -> u32 {
        self.versions().last().copied().unwrap_or(0)
    }
    /// Reads the versions again (another process may have rotated or retired one).
    fn reload(&self) -> ProviderResult<()>;
    fn wrap(&self, version: u32, aad: &[u8], key: &KeyBytes) -> ProviderResult<Vec<u8>>;
    fn unwrap(&self, version: u32, aad: &[u8], wrapped: &[u8]) -> ProviderResult<KeyBytes>;
    /// Creates version 1; refused when a key already exists.
    fn init(&self) -> ProviderResult<u32>;
    /// Adds the next version and returns it, checked by a wrap and unwrap under it.
    fn add_version(&self) -> ProviderResult<u32>;
    /// Destroys one version for good; refused for the current one.
    fn destroy_version(&self, version: u32) -> ProviderResult<()>;
    /// Whether the custodian answers now (for `/ready`).
    fn check(&self) -> ProviderResult<()>;
    /// A file that admin commands lock (besides the database lock row) while they change keys.
    fn lock_file(&self) -> PathBuf;
}

pub type DynProvider = Arc<dyn KeyProvider>;

/// Wraps and unwraps once under `version`: the check a new or loaded key must pass.
pub(crate) fn self_check(provider: &dyn KeyProvider, version: u32) -> ProviderResult<()> {
    let probe: KeyBytes = zeroize::Zeroizing::new([0x5a; 32]);
    let wrapped = provider.wrap(version, b"strongroom/self-check", &probe)?;
    let back = provider.unwrap(version, b"strongroom/self-check", &wrapped)?;
    if back.as_ref() != probe.as_ref() {
        return Err(MasterKeyError::Integrity);
    }
    Ok(())
}
