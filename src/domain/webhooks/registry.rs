//! Registering webhooks: the signing key is generated here, shown once, and stored only sealed under
//! the account's data key (bound to the webhook id); adding and removing are audited admin actions.

use std::fmt;

use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::EventSet;
use crate::connectors::guard::check_destination;
use crate::store::{Action, AuditEvent, DynStore, StoreError, Ts, WebhookRecord};
use crate::vault::{Vault, VaultError};

/// A webhook's signing key, shown once when the webhook is added. HMAC-SHA256 is keyed with the key's
/// text exactly as shown.
pub struct SigningKey(Zeroizing<String>);

impl SigningKey {
    fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        SigningKey(Zeroizing::new(format!("whsec_{}", hex::encode(*bytes))))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(****)")
    }
}

/// What the signing key of webhook `id` is sealed to, so that it opens for no other.
pub(crate) fn key_aad(id: Uuid) -> Vec<u8> {
    [b"webhook-signing-key:".as_slice(), id.as_bytes()].concat()
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("no webhook with id {0}")]
    UnknownWebhook(Uuid),
    #[error("--url: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Registers a webhook: its signing key is generated, sealed under the account's data key and returned
/// once. The admin action is audited.
pub async fn add_webhook(
    store: &DynStore,
    vault: &Vault,
    account_id: Uuid,
    url: &str,
    events: EventSet,
    actor: &str,
) -> Result<(WebhookRecord, SigningKey), WebhookError> {
    let url = check_destination(url).map_err(WebhookError::InvalidUrl)?;
    if store.get_account(account_id).await?.is_none() {
        return Err(WebhookError::UnknownAccount(account_id));
    }
    let id = crate::new_id();
    let key = SigningKey::generate();
    let sealed_key = vault
        .seal_bytes(account_id, &key_aad(id), key.expose().as_bytes())
        .await?;
    let webhook = WebhookRecord {
        id,
        account_id,
        url: url.to_string(),
        events: events.to_db(),
        sealed_key,
        created_at: Ts::now(),
        removed_at: None,
    };
    let audit = AuditEvent::new(
        Some(account_id),
        actor,
        Action::WebhookAdd,
        Some(id.to_string()),
        "success",
    );
    store.insert_webhook(&webhook, &audit).await?;
    Ok((webhook, key))
}

/// Removes a webhook: its pending deliveries are cancelled when their turn comes.
pub async fn remove_webhook(
    store: &DynStore,
    id: Uuid,
    actor: &str,
) -> Result<WebhookRecord, WebhookError> {
    let webhook = store
        .get_webhook(id)
        .await?
        .filter(|w| w.removed_at.is_none())
        .ok_or(WebhookError::UnknownWebhook(id))?;
    let audit = AuditEvent::new(
        Some(webhook.account_id),
        actor,
        Action::WebhookRemove,
        Some(id.to_string()),
        "success",
    );
    if !store.remove_webhook(id, Ts::now(), &audit).await? {
        return Err(WebhookError::UnknownWebhook(id));
    }
    Ok(webhook)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_never_prints() {
        let key = SigningKey::generate();
        assert_eq!(format!("{key:?}"), "SigningKey(****)");
        assert_eq!(key.expose().len(), 6 + 64);
    }
}
