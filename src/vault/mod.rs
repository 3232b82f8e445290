//! The vault: master key → per-account data keys → each card sealed with AES-256-GCM under its account's
//! data key, with a random nonce and the token id as associated data. Every ciphertext names the version
//! of the key that sealed it. Also the keyed (HMAC-SHA256) fingerprints, with a per-account key of their own.

pub mod admin;
pub mod cvc;
pub mod file_provider;
pub mod master;
pub mod pkcs11;
pub mod provider;
pub mod rotate;
pub mod token_ids;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::model::card::CardData;
use crate::store::{AccountKeysRecord, DynStore, StoreError, Ts};
use master::KeyBytes;
use provider::KeyProvider;
use provider::{DynProvider, MasterKeyError};
use token_ids::TokenIds;

/// The format byte that starts every sealed card and wrapped key.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error("master key version {0} does not exist")]
    UnknownMasterVersion(i32),
    #[error("data key version {0} is not the account's")]
    UnknownDataKeyVersion(u32),
    /// Authentication of a ciphertext failed: wrong key, wrong associated data, or tampering.
    #[error("a ciphertext failed to open")]
    Integrity,
}

/// An account's unwrapped keys, kept in memory so that the hot path makes no call to the key provider
/// (an HSM). The ciphers and key bytes zero their memory when the entry is dropped from the cache.
struct AccountKeys {
    dek_version: u32,
    dek: Aes256Gcm,
    fingerprint: KeyBytes,
    /// The data key being rotated away from, until its rotation job destroys it.
    previous: Option<(u32, Aes256Gcm)>,
    /// The permutation that makes the account's token ids (`token_ids`); none until the account's
    /// record has an id key (records made before there were id keys get theirs when next loaded).
    ids: Option<TokenIds>,
    /// What the entry was unwrapped from, to tell whether the stored record changed.
    stamp: Stamp,
    checked_at: Instant,
}

/// How long a node trusts its cached account keys before it checks (one indexed read, no HSM call)
/// whether a data-key rotation on another node replaced them.
pub const KEY_CACHE_RECHECK: Duration = Duration::from_secs(2);

pub struct Vault {
    store: DynStore,
    provider: DynProvider,
    accounts: RwLock<HashMap<Uuid, Arc<AccountKeys>>>,
    /// Held while an account's first keys are made (`create_account_keys`).
    creating: tokio::sync::Mutex<()>,
}

impl Vault {
    /// Whether the key provider answers: the master key file still reads and holds the version in use,
    /// or the HSM wraps and unwraps under it.
    pub async fn check_key_provider(&self) -> Result<(), String> {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.check())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// A card sealed for storage, with its keyed fingerprint.
pub struct Sealed {
    pub sealed_card: Vec<u8>,
    pub fingerprint: Vec<u8>,
}

impl Vault {
    pub fn new(store: DynStore, provider: DynProvider) -> Self {
        Self {
            store,
            provider,
            accounts: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    fn cached(&self, account_id: Uuid) -> Option<Arc<AccountKeys>> {
        self.accounts
            .read()
            .ok()
            .and_then(|m| m.get(&account_id).cloned())
    }

    async fn account_keys(&self, account_id: Uuid) -> Result<Arc<AccountKeys>, VaultError> {
        match self.cached(account_id) {
            Some(keys) if keys.checked_at.elapsed() < KEY_CACHE_RECHECK => Ok(keys),
            cached => self.load_account_keys(account_id, cached).await,
        }
    }

    /// Reads the account's key record and unwraps it, unless it is the one `cached` came from.
    async fn load_account_keys(
        &self,
        account_id: Uuid,
        cached: Option<Arc<AccountKeys>>,
    ) -> Result<Arc<AccountKeys>, VaultError> {
        let record = match self.store.get_account_keys(account_id).await? {
            Some(record) if record.wrapped_id_key.is_none() => self.add_id_key(record).await?,
            Some(record) => record,
            None => self.create_account_keys(account_id).await?,
        };
        let keys = match cached {
            Some(keys) if keys.stamp == stamp(&record) => Arc::new(AccountKeys {
                dek_version: keys.dek_version,
                dek: keys.dek.clone(),
                fingerprint: keys.fingerprint.clone(),
                previous: keys.previous.clone(),
                ids: keys.ids.clone(),
                stamp: keys.stamp,
                checked_at: Instant::now(),
            }),
            _ => Arc::new(unwrap_account_keys(&record, &*self.provider)?),
        };
        if let Ok(mut cache) = self.accounts.write() {
            cache.insert(account_id, keys.clone());
        }
        Ok(keys)
    }

    /// Makes and stores the account's first keys, or reads the ones another request or node stored
    /// first. One request of this process at a time: the requests of a new account's first burst all
    /// find no keys at once, and each used to make its own and race to insert them; on SQLite the
    /// inserts from several connections met in its busy handler, whose sleeps (1, 2, 5, 10… ms) held
    /// some of those first requests 130–550 ms. Now one makes them and the others find them. (Keys are
    /// made once in an account's life, so one lock for every account costs nothing.)
    async fn create_account_keys(&self, account_id: Uuid) -> Result<AccountKeysRecord, VaultError> {
        let _one_at_a_time = self.creating.lock().await;
        if let Some(record) = self.store.get_account_keys(account_id).await? {
            return Ok(record);
        }
        // New keys are wrapped by the newest master key, which another process may have just added.
        self.provider.reload()?;
        let fresh = new_account_keys(account_id, &*self.provider)?;
        if self.store.insert_account_keys(&fresh).await? {
            Ok(fresh)
        } else {
            self.store
                .get_account_keys(account_id)
                .await?
                .ok_or(VaultError::Integrity)
        }
    }

    /// Gives a key record made before there were id keys one (wrapped by the record's master version),
    /// unless another request or node did first; the record as it now is.
    async fn add_id_key(&self, record: AccountKeysRecord) -> Result<AccountKeysRecord, VaultError> {
        let _one_at_a_time = self.creating.lock().await;
        let version = master_version(record.master_version)?;
        let wrapped =
            self.provider
                .wrap(version, &aad(ID_ROLE, record.account_id), &random_key())?;
        self.store
            .add_account_id_key(record.account_id, record.master_version, &wrapped)
            .await?;
        self.store
            .get_account_keys(record.account_id)
            .await?
            .ok_or(VaultError::Integrity)
    }

    /// A new token's id and `card` sealed for it, from one read of the account's keys. The id is made
    /// from `created_at` under the account's id key (see `token_ids`), so that the token can be found
    /// by the time it gives back; the second value says whether it was. Random (a plain UUIDv4) if the
    /// account has no id key.
    pub async fn seal_new_token(
        &self,
        account_id: Uuid,
        created_at: Ts,
        card: &CardData,
    ) -> Result<(Uuid, bool, Sealed), VaultError> {
        let keys = self.account_keys(account_id).await?;
        let (id, keyed) = match keys.ids.as_ref().and_then(|ids| ids.make(created_at)) {
            Some(id) => (id, true),
            None => (crate::new_id(), false),
        };
        Ok((id, keyed, seal_card(&keys, id, card)?))
    }

    /// The creation time token id `id` of the account was made from, if its id key made it.
    pub async fn token_created_at(
        &self,
        account_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Ts>, VaultError> {
        let keys = self.account_keys(account_id).await?;
        Ok(keys.ids.as_ref().and_then(|ids| ids.created_at(id)))
    }

    /// The account's keys able to open `version`, read again at once if the cache does not have it.
    async fn keys_for_version(
        &self,
        account_id: Uuid,
        version: u32,
    ) -> Result<(Arc<AccountKeys>, bool), VaultError> {
        let keys = self.account_keys(account_id).await?;
        if has_version(&keys, version) {
            return Ok((keys, true));
        }
        let keys = self.load_account_keys(account_id, None).await?;
        let found = has_version(&keys, version);
        Ok((keys, found))
    }

    /// Seals `card` for token `token_id` of `account_id` and computes its fingerprint.
    pub async fn seal(
        &self,
        account_id: Uuid,
        token_id: Uuid,
        card: &CardData,
    ) -> Result<Sealed, VaultError> {
        let keys = self.account_keys(account_id).await?;
        seal_card(&keys, token_id, card)
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
        let version = sealed_version(sealed).ok_or(VaultError::Integrity)?;
        let (keys, found) = self.keys_for_version(account_id, version).await?;
        if !found {
            return Err(VaultError::UnknownDataKeyVersion(version));
        }
        let dek = match &keys.previous {
            Some((v, dek)) if *v == version && keys.dek_version != version => dek,
            _ => &keys.dek,
        };
        let nonce = &sealed[5..5 + NONCE_LEN];
        let plaintext = dek
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

    /// Seals `plaintext` again under the account's current data key if `sealed` is under an older one;
    /// `None` if it already is current. Used by the data-key rotation job.
    pub async fn reseal_bytes(
        &self,
        account_id: Uuid,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let keys = self.account_keys(account_id).await?;
        if sealed_version(sealed) == Some(keys.dek_version) {
            return Ok(None);
        }
        let plaintext = self.open_bytes(account_id, aad, sealed).await?;
        Ok(Some(seal_under(&keys, aad, &plaintext)?))
    }

    /// The current data key version of the account (creating its keys if it has none yet).
    pub async fn data_key_version(&self, account_id: Uuid) -> Result<u32, VaultError> {
        Ok(self.load_account_keys(account_id, None).await?.dek_version)
    }

    /// Forgets the cached keys (after a rotation in this process, or in tests); they are zeroed as dropped.
    pub fn forget_cached_keys(&self) {
        if let Ok(mut cache) = self.accounts.write() {
            cache.clear();
        }
    }
}

/// `card` sealed for token `token_id` under `keys`, with its fingerprint.
fn seal_card(keys: &AccountKeys, token_id: Uuid, card: &CardData) -> Result<Sealed, VaultError> {
    let sealed_card = seal_under(keys, token_id.as_bytes(), &card.to_plaintext())?;
    let fingerprint = keyed_digest(&keys.fingerprint, b"pan", card.pan.peek().as_bytes());
    Ok(Sealed {
        sealed_card,
        fingerprint,
    })
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

/// Opens a card from a backup's rows alone (its account key record and the token's sealed card) with
/// whatever master keys `provider` still holds: what anyone restoring an old copy could do. Once the
/// master version that wrapped the record is destroyed, this fails.
pub fn open_from_backup(
    provider: &dyn KeyProvider,
    keys: &AccountKeysRecord,
    token_id: Uuid,
    sealed: &[u8],
) -> Result<CardData, VaultError> {
    let keys = unwrap_account_keys(keys, provider)?;
    let version = sealed_version(sealed).ok_or(VaultError::Integrity)?;
    let dek = match &keys.previous {
        Some((v, dek)) if *v == version => dek,
        _ if keys.dek_version == version => &keys.dek,
        _ => return Err(VaultError::UnknownDataKeyVersion(version)),
    };
    if sealed.len() < 5 + NONCE_LEN + 16 {
        return Err(VaultError::Integrity);
    }
    let plaintext = Zeroizing::new(
        dek.decrypt(
            Nonce::from_slice(&sealed[5..5 + NONCE_LEN]),
            Payload {
                msg: &sealed[5 + NONCE_LEN..],
                aad: token_id.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Integrity)?,
    );
    CardData::from_plaintext(&plaintext).ok_or(VaultError::Integrity)
}

/// The data key version a sealed blob names.
pub fn sealed_version(sealed: &[u8]) -> Option<u32> {
    (sealed.len() >= 5 && sealed[0] == FORMAT_V1)
        .then(|| u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]))
}

fn has_version(keys: &AccountKeys, version: u32) -> bool {
    keys.dek_version == version || matches!(keys.previous, Some((v, _)) if v == version)
}

/// Data key version, master version, previous data key version, and whether there is an id key.
type Stamp = (i32, i32, Option<i32>, bool);

fn stamp(record: &AccountKeysRecord) -> Stamp {
    (
        record.dek_version,
        record.master_version,
        record.previous_dek_version,
        record.wrapped_id_key.is_some(),
    )
}

fn keyed_digest(key: &KeyBytes, purpose: &[u8], data: &[u8]) -> Vec<u8> {
    // An HMAC key of 32 bytes is always accepted.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()) else {
        return Vec::new();
    };
    mac.update(purpose);
    mac.update(b"\0");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    // Built from the key bytes, which zero themselves when dropped; the cipher's own copy of the
    // expanded key is zeroed on drop too (the `zeroize` feature of aes-gcm).
    Aes256Gcm::new(key.as_ref().into())
}

const DEK_ROLE: &[u8] = b"strongroom/dek/";
const FPK_ROLE: &[u8] = b"strongroom/fingerprint-key/";
const ID_ROLE: &[u8] = b"strongroom/token-id-key/";

fn aad(role: &[u8], account_id: Uuid) -> Vec<u8> {
    [role, account_id.as_bytes()].concat()
}

fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

fn master_version(version: i32) -> Result<u32, VaultError> {
    u32::try_from(version).map_err(|_| VaultError::UnknownMasterVersion(version))
}

fn unwrap_with(
    provider: &dyn KeyProvider,
    version: i32,
    aad: &[u8],
    wrapped: &[u8],
) -> Result<KeyBytes, VaultError> {
    let v = master_version(version)?;
    match provider.unwrap(v, aad, wrapped) {
        Err(MasterKeyError::UnknownVersion(_)) => {
            // Another process may have rotated: read the versions again once.
            provider.reload()?;
            provider.unwrap(v, aad, wrapped).map_err(|e| match e {
                MasterKeyError::UnknownVersion(_) => VaultError::UnknownMasterVersion(version),
                e => e.into(),
            })
        }
        other => Ok(other?),
    }
}

fn new_account_keys(
    account_id: Uuid,
    provider: &dyn KeyProvider,
) -> Result<AccountKeysRecord, VaultError> {
    let version = provider.current_version();
    Ok(AccountKeysRecord {
        account_id,
        dek_version: 1,
        master_version: version as i32,
        wrapped_dek: provider.wrap(version, &aad(DEK_ROLE, account_id), &random_key())?,
        wrapped_fingerprint_key: provider.wrap(
            version,
            &aad(FPK_ROLE, account_id),
            &random_key(),
        )?,
        wrapped_id_key: Some(provider.wrap(version, &aad(ID_ROLE, account_id), &random_key())?),
        created_at: Ts::now(),
        rewrapped_at: None,
        previous_dek_version: None,
        previous_wrapped_dek: None,
    })
}

fn unwrap_account_keys(
    record: &AccountKeysRecord,
    provider: &dyn KeyProvider,
) -> Result<AccountKeys, VaultError> {
    let id = record.account_id;
    let dek = unwrap_with(
        provider,
        record.master_version,
        &aad(DEK_ROLE, id),
        &record.wrapped_dek,
    )?;
    let fingerprint = unwrap_with(
        provider,
        record.master_version,
        &aad(FPK_ROLE, id),
        &record.wrapped_fingerprint_key,
    )?;
    let previous = match (record.previous_dek_version, &record.previous_wrapped_dek) {
        (Some(v), Some(wrapped)) => {
            let key = unwrap_with(provider, record.master_version, &aad(DEK_ROLE, id), wrapped)?;
            Some((
                u32::try_from(v).map_err(|_| VaultError::Integrity)?,
                cipher(&key),
            ))
        }
        _ => None,
    };
    let ids = match &record.wrapped_id_key {
        Some(wrapped) => {
            let key = unwrap_with(provider, record.master_version, &aad(ID_ROLE, id), wrapped)?;
            Some(TokenIds::new(&key))
        }
        None => None,
    };
    Ok(AccountKeys {
        dek_version: u32::try_from(record.dek_version).map_err(|_| VaultError::Integrity)?,
        dek: cipher(&dek),
        fingerprint,
        previous,
        ids,
        stamp: stamp(record),
        checked_at: Instant::now(),
    })
}

/// Re-wraps an account's keys (the previous data key too, mid-rotation) under master `new_version`.
fn rewrap_account_keys(
    record: &AccountKeysRecord,
    provider: &dyn KeyProvider,
    new_version: u32,
) -> Result<AccountKeysRecord, VaultError> {
    let id = record.account_id;
    let rewrap = |role: &[u8], wrapped: &[u8]| -> Result<Vec<u8>, VaultError> {
        let key = unwrap_with(provider, record.master_version, &aad(role, id), wrapped)?;
        Ok(provider.wrap(new_version, &aad(role, id), &key)?)
    };
    Ok(AccountKeysRecord {
        master_version: new_version as i32,
        wrapped_dek: rewrap(DEK_ROLE, &record.wrapped_dek)?,
        wrapped_fingerprint_key: rewrap(FPK_ROLE, &record.wrapped_fingerprint_key)?,
        wrapped_id_key: match &record.wrapped_id_key {
            Some(w) => Some(rewrap(ID_ROLE, w)?),
            None => None,
        },
        previous_wrapped_dek: match &record.previous_wrapped_dek {
            Some(w) => Some(rewrap(DEK_ROLE, w)?),
            None => None,
        },
        rewrapped_at: Some(Ts::now()),
        ..record.clone()
    })
}

/// The account's next keys: a new data key and a new fingerprint key, the current data key kept as the
/// previous one until the rotation job has re-sealed everything under the new one. The id key stays:
/// the ids it made are the tokens' names.
fn rotated_account_keys(
    record: &AccountKeysRecord,
    provider: &dyn KeyProvider,
) -> Result<AccountKeysRecord, VaultError> {
    let version = provider.current_version();
    let rewrapped = rewrap_account_keys(record, provider, version)?;
    let id = record.account_id;
    Ok(AccountKeysRecord {
        dek_version: record.dek_version + 1,
        wrapped_dek: provider.wrap(version, &aad(DEK_ROLE, id), &random_key())?,
        wrapped_fingerprint_key: provider.wrap(version, &aad(FPK_ROLE, id), &random_key())?,
        previous_dek_version: Some(record.dek_version),
        previous_wrapped_dek: Some(rewrapped.wrapped_dek),
        ..rewrapped
    })
}
