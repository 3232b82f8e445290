//! The processor registry: an account's processors, their settings, and their credentials, which are
//! checked per kind, sealed under the account's data key (bound to the processor id) and opened only to
//! build a connector. Adding and removing are audited admin actions; removal wipes the credentials.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::connectors::adyen::{Adyen, AdyenCredentials};
use crate::connectors::guard::check_secure_url;
use crate::connectors::processor::Processor;
use crate::connectors::stripe::StripeKey;
use crate::connectors::stripe_payments::StripePayments;
use crate::model::string_enum;
use crate::store::{Action, AuditEvent, DynStore, ProcessorRecord, StoreError, Ts};
use crate::vault::{Vault, VaultError};

/// The name of the built-in processor, always there for every account.
pub const SANDBOX: &str = "sandbox";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

string_enum! {
    /// The kinds of processor an account may add.
    pub enum ProcessorKind {
        Stripe = "stripe",
        Adyen = "adyen",
    }
}

impl ProcessorKind {
    /// The secret fields this kind takes, all required.
    pub fn secret_fields(self) -> &'static [&'static str] {
        match self {
            ProcessorKind::Stripe => &["api_key"],
            ProcessorKind::Adyen => &["api_key", "merchant_account", "hmac_key"],
        }
    }

    fn default_api_base(self) -> &'static str {
        match self {
            ProcessorKind::Stripe => "https://api.stripe.com",
            ProcessorKind::Adyen => "https://checkout-test.adyen.com",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("no processor with id {0}")]
    UnknownProcessor(Uuid),
    #[error("--name: {0}")]
    InvalidName(String),
    #[error("--api-base: must be an https:// URL (http:// only for a loopback host: localhost, 127.0.0.0/8, ::1)")]
    InvalidApiBase,
    /// The message names the field, never its value.
    #[error("secrets on standard input: {0}")]
    InvalidSecrets(String),
    #[error("the account already has a processor named {0:?}")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// What processor `id`'s secrets are sealed to, so that they open for no other.
pub(crate) fn secrets_aad(id: Uuid) -> Vec<u8> {
    [b"processor-secrets:".as_slice(), id.as_bytes()].concat()
}

/// Checks the secrets document of `kind`: an object of exactly its fields, each a non-empty string.
/// Returns it re-encoded (the only copy that is sealed).
fn check_secrets(kind: ProcessorKind, text: &str) -> Result<Zeroizing<String>, ProcessorError> {
    let bad = |m: String| ProcessorError::InvalidSecrets(m);
    let mut object: Map<String, Value> = serde_json::from_str(text)
        .map_err(|_| bad("must be one JSON object (its text is not repeated here)".into()))?;
    let checked = check_fields(kind, &object);
    let encoded = Zeroizing::new(Value::Object(object.clone()).to_string());
    wipe(&mut object);
    checked.map(|()| encoded)
}

/// Zeroes the strings of a secrets object before it is dropped.
fn wipe(object: &mut Map<String, Value>) {
    for value in object.values_mut() {
        if let Value::String(s) = value {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

fn check_fields(kind: ProcessorKind, object: &Map<String, Value>) -> Result<(), ProcessorError> {
    let bad = |m: String| ProcessorError::InvalidSecrets(m);
    let fields = kind.secret_fields();
    for name in object.keys() {
        if !fields.contains(&name.as_str()) {
            return Err(bad(format!(
                "{name:?} is not a {kind} secret (expected {})",
                fields.join(", ")
            )));
        }
    }
    for field in fields {
        match object.get(*field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => return Err(bad(format!("{field:?} must be a non-empty string"))),
            None => return Err(bad(format!("{field:?} is required for {kind}"))),
        }
    }
    // Adyen's HMAC key is the hex string its Customer Area shows; anything else could never verify.
    if let Some(Value::String(key)) = object.get("hmac_key") {
        if hex::decode(key).map(Zeroizing::new).is_err() {
            return Err(bad(
                "\"hmac_key\" must be the hexadecimal key Adyen's Customer Area shows".into(),
            ));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ProcessorError> {
    let fits = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !fits {
        return Err(ProcessorError::InvalidName(
            "1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    if name == SANDBOX {
        return Err(ProcessorError::InvalidName(
            "`sandbox` is the built-in processor's name".into(),
        ));
    }
    Ok(())
}

/// What `processor add` is given besides the secrets.
pub struct NewProcessor<'a> {
    pub account_id: Uuid,
    pub name: &'a str,
    pub kind: ProcessorKind,
    pub api_base: Option<&'a str>,
    pub timeout: Option<Duration>,
}

/// Adds a processor with its secrets sealed under the account's data key; the secrets are not kept
/// anywhere else, nor shown again.
pub async fn add_processor(
    store: &DynStore,
    vault: &Vault,
    new: &NewProcessor<'_>,
    secrets: &str,
    actor: &str,
) -> Result<ProcessorRecord, ProcessorError> {
    check_name(new.name)?;
    let api_base = new.api_base.unwrap_or(new.kind.default_api_base());
    // Credentials and card data go there: clear text only to this machine.
    if check_secure_url(api_base).is_err() {
        return Err(ProcessorError::InvalidApiBase);
    }
    let secrets = check_secrets(new.kind, secrets)?;
    if store.get_account(new.account_id).await?.is_none() {
        return Err(ProcessorError::UnknownAccount(new.account_id));
    }
    let id = crate::new_id();
    let timeout = new.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let record = ProcessorRecord {
        id,
        account_id: new.account_id,
        name: new.name.to_owned(),
        kind: new.kind.as_str().to_owned(),
        settings: json!({"api_base": api_base, "timeout_ms": timeout.as_millis() as u64})
            .to_string(),
        sealed_secrets: Some(
            vault
                .seal_bytes(new.account_id, &secrets_aad(id), secrets.as_bytes())
                .await?,
        ),
        created_at: Ts::now(),
        removed_at: None,
    };
    let audit = audit(&record, actor, Action::ProcessorAdd);
    store
        .insert_processor(&record, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Constraint(_) => ProcessorError::NameTaken(new.name.to_owned()),
            other => other.into(),
        })?;
    Ok(record)
}

/// Removes a processor: its secrets are wiped; payments it authorized can no longer be modified
/// through it.
pub async fn remove_processor(
    store: &DynStore,
    id: Uuid,
    actor: &str,
) -> Result<ProcessorRecord, ProcessorError> {
    let record = store
        .get_processor(id)
        .await?
        .filter(|p| p.removed_at.is_none())
        .ok_or(ProcessorError::UnknownProcessor(id))?;
    let audit = audit(&record, actor, Action::ProcessorRemove);
    if !store.remove_processor(id, Ts::now(), &audit).await? {
        return Err(ProcessorError::UnknownProcessor(id));
    }
    Ok(record)
}

/// The audit row of an admin action on `record`, written with the change.
fn audit(record: &ProcessorRecord, actor: &str, action: Action) -> AuditEvent {
    AuditEvent::new(
        Some(record.account_id),
        actor,
        action,
        Some(record.id.to_string()),
        "success",
    )
}

/// The non-secret settings of a stored processor.
pub struct Settings {
    pub api_base: String,
    pub timeout: Duration,
}

pub fn settings(record: &ProcessorRecord) -> Settings {
    let value: Value = serde_json::from_str(&record.settings).unwrap_or_default();
    Settings {
        api_base: value["api_base"].as_str().unwrap_or_default().to_owned(),
        timeout: value["timeout_ms"]
            .as_u64()
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
    }
}

/// Opens a live processor's secrets (the plain JSON object; the caller wipes it with `wipe`).
async fn open_secrets(
    vault: &Vault,
    record: &ProcessorRecord,
) -> Result<Map<String, Value>, String> {
    let sealed = record
        .sealed_secrets
        .as_deref()
        .ok_or("the processor was removed")?;
    let plain = vault
        .open_bytes(record.account_id, &secrets_aad(record.id), sealed)
        .await
        .map_err(|e| format!("secrets do not open: {e}"))?;
    serde_json::from_slice(&plain).map_err(|_| "secrets are malformed".to_owned())
}

/// One secret field, copied into memory that is zeroed on drop.
fn secret(secrets: &Map<String, Value>, field: &str) -> Result<Zeroizing<String>, String> {
    secrets
        .get(field)
        .and_then(Value::as_str)
        .map(|s| Zeroizing::new(s.to_owned()))
        .ok_or_else(|| format!("secrets lack the {field}"))
}

/// What checks an Adyen processor's notifications: its merchant account and HMAC key (hex).
pub struct NotificationKey {
    pub merchant_account: String,
    pub hmac_key: Zeroizing<String>,
}

/// The notification key of a live Adyen processor; `Err` when it is not one or its secrets do not open.
pub async fn notification_key(
    vault: &Vault,
    record: &ProcessorRecord,
) -> Result<NotificationKey, String> {
    if record.kind.parse::<ProcessorKind>() != Ok(ProcessorKind::Adyen) {
        return Err("not an Adyen processor".into());
    }
    let mut secrets = open_secrets(vault, record).await?;
    let key = secret(&secrets, "hmac_key").and_then(|hmac_key| {
        Ok(NotificationKey {
            merchant_account: secret(&secrets, "merchant_account")?.to_string(),
            hmac_key,
        })
    });
    wipe(&mut secrets);
    key
}

/// Opens a live processor's secrets and builds its connector. `public_url`: where this server is
/// reached (Adyen requires a return URL on every payment).
pub async fn connector(
    vault: &Vault,
    record: &ProcessorRecord,
    public_url: &str,
) -> Result<Arc<dyn Processor>, String> {
    let kind: ProcessorKind = record
        .kind
        .parse()
        .map_err(|_| "unknown processor kind".to_owned())?;
    let mut secrets = open_secrets(vault, record).await?;
    let settings = settings(record);
    let built: Result<Arc<dyn Processor>, String> = match kind {
        ProcessorKind::Stripe => secret(&secrets, "api_key").and_then(|key| {
            let key = StripeKey::new(key.to_string());
            StripePayments::new(&record.name, &settings.api_base, key, settings.timeout)
                .map(|c| Arc::new(c) as Arc<dyn Processor>)
                .map_err(|_| "no HTTP client".to_owned())
        }),
        ProcessorKind::Adyen => secret(&secrets, "api_key").and_then(|api_key| {
            let credentials = AdyenCredentials {
                api_key,
                merchant_account: secret(&secrets, "merchant_account")?.to_string(),
            };
            Adyen::new(
                &record.name,
                &settings.api_base,
                credentials,
                public_url,
                settings.timeout,
            )
            .map(|c| Arc::new(c) as Arc<dyn Processor>)
            .map_err(|_| "no HTTP client".to_owned())
        }),
    };
    wipe(&mut secrets);
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_per_kind_without_repeating_values() {
        assert!(check_secrets(ProcessorKind::Stripe, r#"{"api_key":"sk_test_1"}"#).is_ok());
        let err = check_secrets(ProcessorKind::Stripe, r#"{"api_key":"sk_test_1","x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"x\"") && !err.contains("sk_test_1"), "{err}");
        let err = check_secrets(ProcessorKind::Adyen, r#"{"api_key":"k","hmac_key":"h"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("merchant_account"), "{err}");
        let err = check_secrets(
            ProcessorKind::Adyen,
            r#"{"api_key":"k","merchant_account":"m","hmac_key":"not-hex-secret"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("hexadecimal") && !err.contains("not-hex-secret"),
            "{err}"
        );
        let err = check_secrets(ProcessorKind::Stripe, "sk_live_oops")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("sk_live_oops"), "{err}");
        assert!(check_name("sandbox").is_err());
        assert!(check_name("stripe-eu").is_ok());
    }
}
