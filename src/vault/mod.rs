//! The vault: master key → per-account data keys → each card sealed with AES-256-GCM under its account's
//! data key, with a random nonce and the token id as associated data. Every ciphertext names the version
//! of the key that sealed it. Also the keyed (HMAC-SHA256) fingerprints, with a per-account key of their own.

pub mod cvc;
pub mod master;
pub mod rotate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::model::card::CardData;
use crate::store::{AccountKeysRecord, DynStore, StoreError, Ts};
use master::{KeyBytes, MasterKeyError, MasterKeys};

/// The format byte that starts every sealed card and wrapped key.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error("master key version {0} is not in the key file")]
    UnknownMasterVersion(i32),
    #[error("data key version {0} is not the account's")]
    UnknownDataKeyVersion(u32),
    /// Authentication of a ciphertext failed: wrong key, wrong associated data, or tampering.
    #[error("a ciphertext failed to open")]
    Integrity,
}

/// An account's unwrapped keys, kept in memory while the process runs.
struct AccountKeys {
    dek_version: u32,
    dek: Aes256Gcm,
    fingerprint: Hmac<Sha256>,
}

pub struct Vault {
    store: DynStore,
    key_file: PathBuf,
    master: RwLock<Arc<MasterKeys>>,
    accounts: RwLock<HashMap<Uuid, Arc<AccountKeys>>>,
}

impl Vault {
    /// Whether the key provider answers: the master key file still reads and holds the version in use.
    /// (Another provider, such as an HSM, answers here in its own way.)
    pub async fn check_key_provider(&self) -> Result<(), String> {
        let path = self.key_file.clone();
        let in_use = self
            .master
            .read()
            .map(|m| m.current_version())
            .map_err(|_| "the master key lock is poisoned".to_owned())?;
        let read = tokio::task::spawn_blocking(move || master::MasterKeys::read(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if read.get(in_use).is_none() {
            return Err(format!(
                "master key version {in_use} is no longer in the key file"
            ));
        }
        Ok(())
    }
}

/// A card sealed for storage, with its keyed fingerprint.
pub struct Sealed {
    pub sealed_card: Vec<u8>,
    pub fingerprint: Vec<u8>,
}

impl Vault {
    pub fn new(store: DynStore, key_file: PathBuf, master: MasterKeys) -> Self {
        Self {
            store,
            key_file,
            master: RwLock::new(Arc::new(master)),
            accounts: RwLock::new(HashMap::new()),
        }
    }

    pub fn master(&self) -> Arc<MasterKeys> {
        self.master
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Re-reads the key file, so that a rotation made by another process is seen without a restart.
    fn reload_master(&self) -> Result<Arc<MasterKeys>, VaultError> {
        let fresh = Arc::new(MasterKeys::read(&self.key_file)?);
        match self.master.write() {
            Ok(mut slot) => *slot = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    /// The master keys, reloaded once if `version` is not among them.
    fn master_with(&self, version: i32) -> Result<Arc<MasterKeys>, VaultError> {
        let current = self.master();
        let wanted =
            u32::try_from(version).map_err(|_| VaultError::UnknownMasterVersion(version))?;
        if current.get(wanted).is_some() {
            return Ok(current);
        }
        let fresh = self.reload_master()?;
        fresh
            .get(wanted)
            .map(|_| fresh.clone())
            .ok_or(VaultError::UnknownMasterVersion(version))
    }

    async fn account_keys(&self, account_id: Uuid) -> Result<Arc<AccountKeys>, VaultError> {
        if let Some(keys) = self
            .accounts
            .read()
            .ok()
            .and_then(|m| m.get(&account_id).cloned())
        {
            return Ok(keys);
        }
        let record = match self.store.get_account_keys(account_id).await? {
            Some(record) => record,
            None => {
                // New keys are wrapped by the newest master key, which another process may have just added.
                let master = self.reload_master()?;
                let fresh = new_account_keys(account_id, &master)?;
                if self.store.insert_account_keys(&fresh).await? {
                    fresh
                } else {
                    self.store
                        .get_account_keys(account_id)
                        .await?
                        .ok_or(VaultError::Integrity)?
                }
            }
        };
        let master = self.master_with(record.master_version)?;
        let keys = Arc::new(unwrap_account_keys(&record, &master)?);
        if let Ok(mut cache) = self.accounts.write() {
            cache.insert(account_id, keys.clone());
        }
        Ok(keys)
    }

    /// Seals `card` for token `token_id` of `account_id` and computes its fingerprint.
    pub async fn seal(
        &self,
        account_id: Uuid,
        token_id: Uuid,
        card: &CardData,
    ) -> Result<Sealed, VaultError> {
        let keys = self.account_keys(account_id).await?;
        let sealed_card = seal_under(&keys, token_id.as_bytes(), &card.to_plaintext())?;
        let fingerprint = keyed_digest(&keys.fingerprint, b"pan", card.pan.peek().as_bytes());
        Ok(Sealed {
            sealed_card,
            fingerprint,
        })
    }

    /// Opens the card sealed for `token_id`. Callers write the audit event for the access.
    pub async fn open(
        &self,
        account_id: Uuid,
        token_id: Uuid,
        sealed: &[u8],
    ) -> Result<CardData, VaultError> {
        let plaintext = self
            .open_bytes(account_id, token_id.as_bytes(), sealed)
            .await?;
        CardData::from_plaintext(&plaintext).ok_or(VaultError::Integrity)
    }

    /// `[format][data key version][nonce][AES-256-GCM]` of `plaintext` under the account's data key,
    /// bound to `aad`.
    pub async fn seal_bytes(
        &self,
        account_id: Uuid,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        seal_under(&*self.account_keys(account_id).await?, aad, plaintext)
    }

    /// Opens what `seal_bytes` sealed with the same `aad`.
    pub async fn open_bytes(
        &self,
        account_id: Uuid,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < 1 + 4 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
            return Err(VaultError::Integrity);
        }
        let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
        let keys = self.account_keys(account_id).await?;
        if version != keys.dek_version {
            return Err(VaultError::UnknownDataKeyVersion(version));
        }
        let nonce = &sealed[5..5 + NONCE_LEN];
        let plaintext = keys
            .dek
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &sealed[5 + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| VaultError::Integrity)?;
        Ok(Zeroizing::new(plaintext))
    }

    /// A keyed digest of `data` for `purpose` under the account's fingerprint key. Never an unkeyed hash.
    pub async fn fingerprint(
        &self,
        account_id: Uuid,
        purpose: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let keys = self.account_keys(account_id).await?;
        Ok(keyed_digest(&keys.fingerprint, purpose, data))
    }

    /// Forgets the cached keys (after a rotation in this process, or in tests).
    pub fn forget_cached_keys(&self) {
        if let Ok(mut cache) = self.accounts.write() {
            cache.clear();
        }
    }
}

/// `[format][data key version][nonce][AES-256-GCM]` of `plaintext` under `keys`' data key, bound to `aad`.
fn seal_under(keys: &AccountKeys, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = keys
        .dek
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Integrity)?;
    let mut sealed = Vec::with_capacity(1 + 4 + NONCE_LEN + ciphertext.len());
    sealed.push(FORMAT_V1);
    sealed.extend_from_slice(&keys.dek_version.to_be_bytes());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

fn keyed_digest(key: &Hmac<Sha256>, purpose: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = key.clone();
    mac.update(purpose);
    mac.update(b"\0");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    Aes256Gcm::new(key.as_ref().into())
}

/// `[format][nonce][AES-256-GCM(key)]` under the master key, bound to the account and the key's role.
fn wrap(
    master: &KeyBytes,
    account_id: Uuid,
    role: &[u8],
    key: &KeyBytes,
) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = [role, account_id.as_bytes()].concat();
    let ciphertext = cipher(master)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: key.as_ref(),
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Integrity)?;
    Ok([&[FORMAT_V1][..], &nonce, &ciphertext].concat())
}

fn unwrap(
    master: &KeyBytes,
    account_id: Uuid,
    role: &[u8],
    wrapped: &[u8],
) -> Result<KeyBytes, VaultError> {
    if wrapped.len() != 1 + NONCE_LEN + 32 + 16 || wrapped[0] != FORMAT_V1 {
        return Err(VaultError::Integrity);
    }
    let aad = [role, account_id.as_bytes()].concat();
    let plain = Zeroizing::new(
        cipher(master)
            .decrypt(
                Nonce::from_slice(&wrapped[1..1 + NONCE_LEN]),
                Payload {
                    msg: &wrapped[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Integrity)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain);
    Ok(key)
}

const DEK_ROLE: &[u8] = b"strongroom/dek/";
const FPK_ROLE: &[u8] = b"strongroom/fingerprint-key/";

fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

fn new_account_keys(
    account_id: Uuid,
    master: &MasterKeys,
) -> Result<AccountKeysRecord, VaultError> {
    let version = master.current_version();
    let kek = master
        .get(version)
        .ok_or(VaultError::UnknownMasterVersion(version as i32))?;
    Ok(AccountKeysRecord {
        account_id,
        dek_version: 1,
        master_version: version as i32,
        wrapped_dek: wrap(kek, account_id, DEK_ROLE, &random_key())?,
        wrapped_fingerprint_key: wrap(kek, account_id, FPK_ROLE, &random_key())?,
        created_at: Ts::now(),
        rewrapped_at: None,
    })
}

/// The data key and fingerprint key of `record`, unwrapped with the master key version it names.
fn unwrap_both(
    record: &AccountKeysRecord,
    master: &MasterKeys,
) -> Result<(KeyBytes, KeyBytes), VaultError> {
    let kek = u32::try_from(record.master_version)
        .ok()
        .and_then(|v| master.get(v))
        .ok_or(VaultError::UnknownMasterVersion(record.master_version))?;
    let dek = unwrap(kek, record.account_id, DEK_ROLE, &record.wrapped_dek)?;
    let fpk = unwrap(
        kek,
        record.account_id,
        FPK_ROLE,
        &record.wrapped_fingerprint_key,
    )?;
    Ok((dek, fpk))
}

fn unwrap_account_keys(
    record: &AccountKeysRecord,
    master: &MasterKeys,
) -> Result<AccountKeys, VaultError> {
    let (dek, fpk) = unwrap_both(record, master)?;
    Ok(AccountKeys {
        dek_version: u32::try_from(record.dek_version).map_err(|_| VaultError::Integrity)?,
        dek: cipher(&dek),
        fingerprint: <Hmac<Sha256> as Mac>::new_from_slice(fpk.as_ref())
            .map_err(|_| VaultError::Integrity)?,
    })
}

/// Re-wraps an account's keys from the master key they are under to `new_version`.
fn rewrap_account_keys(
    record: &AccountKeysRecord,
    master: &MasterKeys,
    new_version: u32,
) -> Result<AccountKeysRecord, VaultError> {
    let new = master
        .get(new_version)
        .ok_or(VaultError::UnknownMasterVersion(new_version as i32))?;
    let (dek, fpk) = unwrap_both(record, master)?;
    Ok(AccountKeysRecord {
        master_version: new_version as i32,
        wrapped_dek: wrap(new, record.account_id, DEK_ROLE, &dek)?,
        wrapped_fingerprint_key: wrap(new, record.account_id, FPK_ROLE, &fpk)?,
        rewrapped_at: Some(Ts::now()),
        ..record.clone()
    })
}
