//! `strongroom master-key rotate`: adds a new master key version to the provider, then re-wraps every
//! account's keys under it. Card ciphertexts are untouched (they are sealed by the data keys), so the
//! server keeps serving throughout; servers read the provider's versions again when they meet a new one.

use serde::Serialize;

use super::provider::KeyProvider;
use super::{rewrap_account_keys, VaultError};
use crate::store::{Action, AuditEvent, DynStore};

#[derive(Debug, Serialize)]
pub struct RotationReport {
    pub new_version: u32,
    pub rewrapped_accounts: u64,
}

/// Account keys read (and rewrapped) per batch.
const REWRAP_BATCH: i64 = 200;

/// Adds a master key version and re-wraps every account's keys under it. The caller holds the admin lock.
pub async fn rotate_master_key(
    store: &DynStore,
    provider: &dyn KeyProvider,
    actor: &str,
) -> Result<RotationReport, VaultError> {
    let new_version = provider.add_version()?;
    let audit = AuditEvent::new(
        None,
        actor,
        Action::MasterKeyRotate,
        Some(format!("v{new_version}")),
        "success",
    );
    let rewrapped = rewrap_all(store, provider, new_version, Some(&audit)).await?;
    Ok(RotationReport {
        new_version,
        rewrapped_accounts: rewrapped,
    })
}

/// Re-wraps every account's keys wrapped before `new_version`. With `audit`, the event is written in the
/// transaction of the last rewrap (or alone when nothing needed one), so a run cut short leaves none.
pub(crate) async fn rewrap_all(
    store: &DynStore,
    provider: &dyn KeyProvider,
    new_version: u32,
    audit: Option<&AuditEvent>,
) -> Result<u64, VaultError> {
    // So that the last batch is never empty while anything is left, a full batch leaves its last account
    // to the next one.
    let mut rewrapped = 0u64;
    let mut audited = false;
    loop {
        let mut batch = store
            .list_account_keys_wrapped_before(new_version as i32, REWRAP_BATCH)
            .await?;
        let last_batch = batch.len() < REWRAP_BATCH as usize;
        if !last_batch {
            batch.pop();
        }
        let n = batch.len();
        for (i, record) in batch.into_iter().enumerate() {
            let with_audit = audit.filter(|_| last_batch && i + 1 == n);
            // A record that changed since it was listed (another node rewrapped it, or gave it its
            // id key) is read again, once, and rewrapped if it still needs it.
            let mut current = record;
            for attempt in 1..=2 {
                let fresh = rewrap_account_keys(&current, provider, new_version)?;
                if store
                    .rewrap_account_keys(&fresh, current.master_version, with_audit)
                    .await?
                {
                    rewrapped += 1;
                    audited |= with_audit.is_some();
                    break;
                }
                match store.get_account_keys(current.account_id).await? {
                    Some(now) if attempt == 1 && now.master_version < new_version as i32 => {
                        current = now
                    }
                    _ => break,
                }
            }
        }
        if last_batch {
            break;
        }
    }
    if let (Some(audit), false) = (audit, audited) {
        store.insert_audit_event(audit).await?;
    }
    Ok(rewrapped)
}
