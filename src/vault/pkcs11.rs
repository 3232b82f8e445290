//! The `pkcs11` key provider: each master key version is a non-extractable, sensitive AES-256 key in an
//! HSM token, labelled with `STRONGROOM_PKCS11_KEY_LABEL` and identified by `v<N>`. Data keys are wrapped
//! by AES-GCM encryption inside the HSM (C_Encrypt/C_Decrypt, the role and account as associated data),
//! so the master key never enters this process: no code here reads a key's value.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rand::RngCore;
use zeroize::Zeroizing;

use super::master::KeyBytes;
use super::provider::{self_check, KeyProvider, MasterKeyError, ProviderResult};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Where the HSM key lives (the settings `STRONGROOM_PKCS11_*`).
#[derive(Clone, Debug)]
pub struct Pkcs11Settings {
    pub module: PathBuf,
    pub token_label: String,
    pub pin_file: PathBuf,
    pub key_label: String,
}

pub struct Pkcs11Provider {
    settings: Pkcs11Settings,
    /// One logged-in session; PKCS#11 sessions may not be used by two threads at once.
    session: Mutex<Session>,
    versions: RwLock<Vec<(u32, ObjectHandle)>>,
    lock_dir: PathBuf,
}

fn ck(e: CkError) -> MasterKeyError {
    MasterKeyError::Pkcs11(e.to_string())
}

impl Pkcs11Provider {
    /// Loads the module, finds the token by label, logs in with the PIN read from its file and lists
    /// the key's versions. `lock_dir` holds the admin lock file.
    pub fn open(settings: &Pkcs11Settings, lock_dir: &Path) -> ProviderResult<Self> {
        let pkcs11 = Pkcs11::new(&settings.module).map_err(|e| {
            MasterKeyError::Pkcs11(format!(
                "cannot load the module {}: {e}",
                settings.module.display()
            ))
        })?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck(e)),
        }
        let slot = pkcs11
            .get_slots_with_initialized_token()
            .map_err(ck)?
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .map(|info| info.label().trim_end() == settings.token_label)
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                MasterKeyError::Pkcs11(format!(
                    "no initialised token labelled `{}` (STRONGROOM_PKCS11_TOKEN_LABEL)",
                    settings.token_label
                ))
            })?;
        let pin = Zeroizing::new(std::fs::read_to_string(&settings.pin_file).map_err(|e| {
            MasterKeyError::Pkcs11(format!(
                "cannot read the PIN file {}: {e}",
                settings.pin_file.display()
            ))
        })?);
        let session = pkcs11.open_rw_session(slot).map_err(ck)?;
        match session.login(UserType::User, Some(&AuthPin::from(pin.trim().to_owned()))) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(MasterKeyError::Pkcs11(format!("login refused: {e}"))),
        }
        let provider = Self {
            settings: settings.clone(),
            session: Mutex::new(session),
            versions: RwLock::new(Vec::new()),
            lock_dir: lock_dir.to_owned(),
        };
        provider.reload()?;
        Ok(provider)
    }

    fn with_session<T>(&self, f: impl FnOnce(&Session) -> ProviderResult<T>) -> ProviderResult<T> {
        let guard = self
            .session
            .lock()
            .map_err(|_| MasterKeyError::Pkcs11("the session lock was poisoned".into()))?;
        f(&guard)
    }

    fn handle(&self, version: u32) -> ProviderResult<ObjectHandle> {
        let found = self
            .versions
            .read()
            .ok()
            .and_then(|v| v.iter().find(|(n, _)| *n == version).map(|(_, h)| *h));
        match found {
            Some(h) => Ok(h),
            None => {
                self.reload()?;
                self.versions
                    .read()
                    .ok()
                    .and_then(|v| v.iter().find(|(n, _)| *n == version).map(|(_, h)| *h))
                    .ok_or(MasterKeyError::UnknownVersion(version))
            }
        }
    }

    fn list(&self, session: &Session) -> ProviderResult<Vec<(u32, ObjectHandle)>> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(self.settings.key_label.as_bytes().to_vec()),
        ];
        let mut found = Vec::new();
        for handle in session.find_objects(&template).map_err(ck)? {
            let attrs = session
                .get_attributes(handle, &[AttributeType::Id])
                .map_err(ck)?;
            for attr in attrs {
                if let Attribute::Id(id) = attr {
                    if let Some(v) = std::str::from_utf8(&id)
                        .ok()
                        .and_then(|s| s.strip_prefix('v'))
                        .and_then(|s| s.parse::<u32>().ok())
                    {
                        found.push((v, handle));
                    }
                }
            }
        }
        found.sort_by_key(|(v, _)| *v);
        Ok(found)
    }

    fn generate(&self, version: u32) -> ProviderResult<()> {
        self.with_session(|session| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(self.settings.key_label.as_bytes().to_vec()),
                Attribute::Id(format!("v{version}").into_bytes()),
            ];
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(ck)?;
            Ok(())
        })?;
        self.reload()
    }
}

impl KeyProvider for Pkcs11Provider {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn describe(&self) -> String {
        format!(
            "token `{}`, key `{}`",
            self.settings.token_label, self.settings.key_label
        )
    }

    fn versions(&self) -> Vec<u32> {
        self.versions
            .read()
            .map(|v| v.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default()
    }

    /// A wrap and unwrap under the current version: a round trip to the HSM.
    fn check(&self) -> ProviderResult<()> {
        super::provider::self_check(self, self.current_version())
    }

    fn reload(&self) -> ProviderResult<()> {
        let found = self.with_session(|s| self.list(s))?;
        if let Ok(mut slot) = self.versions.write() {
            *slot = found;
        }
        Ok(())
    }

    fn wrap(&self, version: u32, aad: &[u8], key: &KeyBytes) -> ProviderResult<Vec<u8>> {
        let handle = self.handle(version)?;
        let mut iv = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut iv_param = iv;
        let ciphertext = self.with_session(|session| {
            let params = GcmParams::new(&mut iv_param, aad, 128.into()).map_err(ck)?;
            session
                .encrypt(&Mechanism::AesGcm(params), handle, key.as_ref())
                .map_err(ck)
        })?;
        Ok([&[FORMAT_V1][..], &iv, &ciphertext].concat())
    }

    fn unwrap(&self, version: u32, aad: &[u8], wrapped: &[u8]) -> ProviderResult<KeyBytes> {
        if wrapped.len() != 1 + NONCE_LEN + 32 + 16 || wrapped[0] != FORMAT_V1 {
            return Err(MasterKeyError::Integrity);
        }
        let handle = self.handle(version)?;
        let mut iv = [0u8; NONCE_LEN];
        iv.copy_from_slice(&wrapped[1..1 + NONCE_LEN]);
        let plain = Zeroizing::new(self.with_session(|session| {
            let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(ck)?;
            session
                .decrypt(
                    &Mechanism::AesGcm(params),
                    handle,
                    &wrapped[1 + NONCE_LEN..],
                )
                .map_err(|_| MasterKeyError::Integrity)
        })?);
        if plain.len() != 32 {
            return Err(MasterKeyError::Integrity);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    fn init(&self) -> ProviderResult<u32> {
        self.reload()?;
        if !self.versions().is_empty() {
            return Err(MasterKeyError::Refused(format!(
                "the HSM already holds the key `{}`; use `master-key rotate` to add a version",
                self.settings.key_label
            )));
        }
        self.generate(1)?;
        self_check(self, 1)?;
        Ok(1)
    }

    fn add_version(&self) -> ProviderResult<u32> {
        self.reload()?;
        let version = self.current_version() + 1;
        self.generate(version)?;
        if !self.versions().contains(&version) {
            return Err(MasterKeyError::Pkcs11(format!(
                "v{version} was not found after its creation"
            )));
        }
        self_check(self, version)?;
        Ok(version)
    }

    fn destroy_version(&self, version: u32) -> ProviderResult<()> {
        self.reload()?;
        if self.current_version() == version {
            return Err(MasterKeyError::Refused(format!(
                "v{version} is the current master key version; rotate first"
            )));
        }
        let handle = self.handle(version)?;
        self.with_session(|s| s.destroy_object(handle).map_err(ck))?;
        self.reload()?;
        if self.versions().contains(&version) {
            return Err(MasterKeyError::Pkcs11(format!(
                "v{version} is still in the token"
            )));
        }
        Ok(())
    }

    fn lock_file(&self) -> PathBuf {
        self.lock_dir.join(format!(
            "pkcs11-{}.lock",
            self.settings
                .key_label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        ))
    }
}
