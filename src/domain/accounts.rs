//! Accounts and their API keys. A key reads `sr_<key id>_<secret>`: the id finds the stored record, and the
//! secret is checked against its SHA-256 digest in constant time. Only the digest is ever stored.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::store::{
    Account, Action, ApiKeyRecord, AuditEvent, DynStore, FeatureSet, StoreError, StoreResult, Ts,
};

const KEY_PREFIX: &str = "sr_";

/// A freshly made API key secret, shown to its owner once. Never printed by `Debug`; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// The full key, for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(****)")
    }
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Makes a new key record for `account_id` and the secret to hand out.
pub fn generate_api_key(account_id: Uuid, label: &str) -> (ApiKeyRecord, ApiKeySecret) {
    let id = crate::new_id();
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let mut secret = URL_SAFE_NO_PAD.encode(raw);
    raw.zeroize();
    let record = ApiKeyRecord {
        id,
        account_id,
        label: label.to_owned(),
        secret_digest: digest(&secret),
        created_at: Ts::now(),
        revoked_at: None,
    };
    let full = ApiKeySecret(format!("{KEY_PREFIX}{}_{secret}", id.simple()));
    secret.zeroize();
    (record, full)
}

/// Splits a presented key into its id and secret; `None` if it is not shaped like one of ours.
pub fn parse_presented_key(presented: &str) -> Option<(Uuid, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.is_empty() {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// Whether `secret` matches the stored digest, compared in constant time.
pub fn secret_matches(secret: &str, stored_digest: &[u8]) -> bool {
    digest(secret).ct_eq(stored_digest).into()
}

/// Who performs an admin action, for the audit trail.
pub const ADMIN_CLI: &str = "admin-cli";

/// The account `account_id` as `GET /account` shows it; `None` if there is no such account.
pub async fn describe(
    store: &DynStore,
    account_id: Uuid,
) -> StoreResult<Option<crate::model::account::Account>> {
    Ok(store
        .get_account(account_id)
        .await?
        .map(super::objects::account))
}

/// Creates an account with its first key, both audited, in one commit.
pub async fn create_account(
    store: &DynStore,
    name: &str,
    features: FeatureSet,
    actor: &str,
) -> StoreResult<(Account, ApiKeyRecord, ApiKeySecret)> {
    let account = Account {
        id: crate::new_id(),
        name: name.to_owned(),
        features,
        created_at: Ts::now(),
    };
    let (key, secret) = generate_api_key(account.id, "initial");
    let audit = [
        success(account.id, actor, Action::AccountCreate, account.id),
        success(account.id, actor, Action::ApiKeyCreate, key.id),
    ];
    store.insert_account(&account, &key, &audit).await?;
    Ok((account, key, secret))
}

/// Creates the `default` account with every feature on the first start of an empty database.
/// Returns its key, to be shown once, or `None` if the database was not empty.
pub async fn bootstrap_default_account(
    store: &DynStore,
) -> StoreResult<Option<(Account, ApiKeySecret)>> {
    let account = Account {
        id: crate::new_id(),
        name: "default".to_owned(),
        features: FeatureSet::all(),
        created_at: Ts::now(),
    };
    let (key, secret) = generate_api_key(account.id, "default");
    let audit = [
        success(
            account.id,
            "server-bootstrap",
            Action::AccountCreate,
            account.id,
        ),
        success(account.id, "server-bootstrap", Action::ApiKeyCreate, key.id),
    ];
    if !store
        .bootstrap_default_account(&account, &key, &audit)
        .await?
    {
        return Ok(None);
    }
    Ok(Some((account, secret)))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("no active API key with id {0}")]
    UnknownKey(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn create_key(
    store: &DynStore,
    account_id: Uuid,
    label: &str,
    actor: &str,
) -> Result<(ApiKeyRecord, ApiKeySecret), KeyError> {
    if store.get_account(account_id).await?.is_none() {
        return Err(KeyError::UnknownAccount(account_id));
    }
    let (key, secret) = generate_api_key(account_id, label);
    let audit = success(account_id, actor, Action::ApiKeyCreate, key.id);
    store.insert_api_key(&key, &audit).await?;
    Ok((key, secret))
}

/// Revokes a key, audited with the revocation. A refused revoke (the key was revoked already) changes
/// nothing, and is audited on its own.
pub async fn revoke_key(
    store: &DynStore,
    key_id: Uuid,
    actor: &str,
) -> Result<ApiKeyRecord, KeyError> {
    let key = store
        .get_api_key(key_id)
        .await?
        .ok_or(KeyError::UnknownKey(key_id))?;
    let audit = success(key.account_id, actor, Action::ApiKeyRevoke, key_id);
    if !store.revoke_api_key(key_id, Ts::now(), &audit).await? {
        store
            .insert_audit_event(&AuditEvent::new(
                Some(key.account_id),
                actor,
                Action::ApiKeyRevoke,
                Some(key_id.to_string()),
                "already_revoked",
            ))
            .await?;
        return Err(KeyError::UnknownKey(key_id));
    }
    Ok(key)
}

/// The audit event of a successful admin action on `target`.
fn success(account: Uuid, actor: &str, action: Action, target: Uuid) -> AuditEvent {
    AuditEvent::new(
        Some(account),
        actor,
        action,
        Some(target.to_string()),
        "success",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_matches_its_digest() {
        let account = crate::new_id();
        let (record, secret) = generate_api_key(account, "test");
        let (id, presented_secret) = parse_presented_key(secret.expose()).unwrap();
        assert_eq!(id, record.id);
        assert!(secret_matches(presented_secret, &record.secret_digest));
        assert!(!secret_matches("wrong", &record.secret_digest));
    }

    #[test]
    fn malformed_keys_are_not_parsed() {
        for bad in [
            "",
            "sr_",
            "sk_test_123",
            "sr_nothex_secret",
            "sr_0123456789abcdef0123456789abcdef_",
        ] {
            assert!(parse_presented_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let (_, secret) = generate_api_key(crate::new_id(), "test");
        assert_eq!(format!("{secret:?}"), "ApiKeySecret(****)");
    }
}
