//! `strongroom master-key rotate`: adds a new master key version to the key file, then re-wraps every
//! account's keys under it. Card ciphertexts are untouched (they are sealed by the data keys), so the
//! server keeps serving throughout; servers re-read the key file when they meet the new version.

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use serde::Serialize;
use zeroize::Zeroizing;

use super::{rewrap_account_keys, VaultError};
use crate::store::{Action, AuditEvent, DynStore};
use crate::vault::master::{MasterKeyError, MasterKeys};

#[derive(Debug, Serialize)]
pub struct RotationReport {
    pub new_version: u32,
    pub rewrapped_accounts: u64,
}

/// Account keys read (and rewrapped) per batch.
const REWRAP_BATCH: i64 = 200;

pub async fn rotate_master_key(
    store: &DynStore,
    key_file: &Path,
    actor: &str,
) -> Result<RotationReport, VaultError> {
    let new_version = append_new_version(key_file)?;
    let master = MasterKeys::read(key_file)?;
    let audit = AuditEvent::new(
        None,
        actor,
        Action::MasterKeyRotate,
        Some(format!("v{new_version}")),
        "success",
    );
    // The rotation is audited in the transaction of its last rewrap: the row says every account's keys
    // were wrapped anew, and a run cut short leaves none. So that the last batch is never empty while
    // anything is left, a full batch leaves its last account to the next one. A run with nothing to
    // rewrap changed nothing in the database (only the key file): its row is written on its own. So is
    // it, after the run, in the one race left: another rotation rewrapped this run's last account first.
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
            let fresh = rewrap_account_keys(&record, &master, new_version)?;
            let with_audit = (last_batch && i + 1 == n).then_some(&audit);
            if store
                .rewrap_account_keys(&fresh, record.master_version, with_audit)
                .await?
            {
                rewrapped += 1;
                audited |= with_audit.is_some();
            }
        }
        if last_batch {
            break;
        }
    }
    if !audited {
        store.insert_audit_event(&audit).await?;
    }
    Ok(RotationReport {
        new_version,
        rewrapped_accounts: rewrapped,
    })
}

/// Writes the key file anew with one more version, atomically (temp file, fsync, rename).
fn append_new_version(key_file: &Path) -> Result<u32, MasterKeyError> {
    let fail = |e: std::io::Error| MasterKeyError::File(key_file.to_owned(), e.to_string());
    let current = MasterKeys::read(key_file)?;
    let new_version = current.current_version() + 1;
    let existing = Zeroizing::new(std::fs::read_to_string(key_file).map_err(fail)?);
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let separator = if existing.ends_with('\n') || existing.is_empty() {
        ""
    } else {
        "\n"
    };
    let text = Zeroizing::new(format!(
        "{}{separator}v{new_version}:{}\n",
        existing.as_str(),
        hex::encode(key.as_ref())
    ));

    let tmp = key_file.with_extension("rotating");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, key_file).map_err(fail)?;
    if let Some(dir) = key_file.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(new_version)
}
