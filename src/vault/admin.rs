//! The admin key operations (`master-key init | rotate | retire`, the start of a data-key rotation),
//! each under an exclusive lock: a lock file beside the key (held with `flock`, so that a crashed holder
//! releases it) and a lock row in the database (so that admin commands on other machines wait too).

use std::fs::File;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::provider::{KeyProvider, MasterKeyError};
use super::rotate::{rewrap_all, rotate_master_key, RotationReport};
use super::{rotated_account_keys, VaultError};
use crate::store::{Action, AuditEvent, DynStore, Ts};

const LOCK_ROW: &str = "master-key";
/// A lock row older than this belongs to a holder that died.
const LOCK_ROW_TTL: Duration = Duration::from_secs(300);
/// How long an admin command waits for the lock before it gives up cleanly.
const LOCK_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("another key operation holds the lock; try again later")]
    Busy,
    #[error("cannot lock {0}: {1}")]
    LockFile(String, String),
    #[error("master key v{version} still wraps {count} account key set(s); run `master-key rotate` first")]
    StillInUse { version: u32, count: i64 },
}

impl From<MasterKeyError> for AdminError {
    fn from(e: MasterKeyError) -> Self {
        AdminError::Vault(e.into())
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        AdminError::Vault(e.into())
    }
}

/// Both locks, released on drop (the file lock) and by `release` (the row).
pub struct KeyLock {
    _file: File,
    holder: String,
}

impl KeyLock {
    pub async fn acquire(store: &DynStore, provider: &dyn KeyProvider) -> Result<Self, AdminError> {
        let path = provider.lock_file();
        if let Some(dir) = path.parent() {
            super::file_provider::create_private_dir(dir)
                .map_err(|e| AdminError::LockFile(path.display().to_string(), e.to_string()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| AdminError::LockFile(path.display().to_string(), e.to_string()))?;
        let started = std::time::Instant::now();
        let file = tokio::task::spawn_blocking(move || {
            // Blocking lock in a thread of its own: waits for the other holders on this machine.
            fs4::FileExt::lock(&file).map(|()| file)
        })
        .await
        .map_err(|e| AdminError::LockFile(path.display().to_string(), e.to_string()))?
        .map_err(|e| AdminError::LockFile(path.display().to_string(), e.to_string()))?;
        let holder = format!("{}:{}", std::process::id(), crate::new_id());
        loop {
            let until = Ts::now().plus(LOCK_ROW_TTL);
            if store.try_key_lock(LOCK_ROW, &holder, until).await? {
                return Ok(Self {
                    _file: file,
                    holder,
                });
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(AdminError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn release(self, store: &DynStore) {
        let _ = store.release_key_lock(LOCK_ROW, &self.holder).await;
    }
}

async fn locked<T>(
    store: &DynStore,
    provider: &dyn KeyProvider,
    op: impl std::future::Future<Output = Result<T, AdminError>>,
) -> Result<T, AdminError> {
    let lock = KeyLock::acquire(store, provider).await?;
    let result = op.await;
    lock.release(store).await;
    result
}

#[derive(Debug, Serialize)]
pub struct InitReport {
    pub provider: &'static str,
    pub location: String,
    pub version: u32,
}

pub async fn init(
    store: &DynStore,
    provider: &dyn KeyProvider,
    actor: &str,
) -> Result<InitReport, AdminError> {
    locked(store, provider, async {
        let version = provider.init()?;
        store
            .insert_audit_event(&AuditEvent::new(
                None,
                actor,
                Action::MasterKeyInit,
                Some(format!("{} v{version}", provider.kind())),
                "success",
            ))
            .await?;
        Ok(InitReport {
            provider: provider.kind(),
            location: provider.describe(),
            version,
        })
    })
    .await
}

pub async fn rotate(
    store: &DynStore,
    provider: &dyn KeyProvider,
    actor: &str,
) -> Result<RotationReport, AdminError> {
    locked(store, provider, async {
        let report = rotate_master_key(store, provider, actor).await?;
        // Checked before success is reported: no account key set is left under an older version.
        let left = store
            .list_account_keys_wrapped_before(report.new_version as i32, 1)
            .await?;
        if !left.is_empty() {
            rewrap_all(store, provider, report.new_version, None).await?;
        }
        Ok(report)
    })
    .await
}

#[derive(Debug, Serialize)]
pub struct RetireReport {
    pub retired_version: u32,
    pub remaining_versions: Vec<u32>,
}

pub async fn retire(
    store: &DynStore,
    provider: &dyn KeyProvider,
    version: u32,
    actor: &str,
) -> Result<RetireReport, AdminError> {
    locked(store, provider, async {
        provider.reload()?;
        let count = store.count_account_keys_under(version as i32).await?;
        if count > 0 {
            store
                .insert_audit_event(&AuditEvent::new(
                    None,
                    actor,
                    Action::MasterKeyRetire,
                    Some(format!("v{version}")),
                    "refused: still in use",
                ))
                .await?;
            return Err(AdminError::StillInUse { version, count });
        }
        destroy_version(store, provider, version, actor).await?;
        Ok(RetireReport {
            retired_version: version,
            remaining_versions: provider.versions(),
        })
    })
    .await
}

/// Gives the account a new data key (and fingerprint key), keeping the current one as previous until the
/// rotation job destroys it. Refused (false) while the account is already mid-rotation.
pub async fn begin_data_key_rotation(
    store: &DynStore,
    provider: &dyn KeyProvider,
    account_id: Uuid,
    actor: &str,
) -> Result<Option<i32>, AdminError> {
    provider.reload()?;
    let Some(record) = store.get_account_keys(account_id).await? else {
        return Ok(None);
    };
    if record.previous_dek_version.is_some() {
        return Ok(None);
    }
    let next = rotated_account_keys(&record, provider)?;
    let audit = AuditEvent::new(
        Some(account_id),
        actor,
        Action::DataKeyRotateStart,
        Some(format!("v{}", next.dek_version)),
        "started",
    );
    Ok(store
        .begin_data_key_rotation(&next, record.dek_version, &audit)
        .await?
        .then_some(next.dek_version))
}

/// Moves every account's keys to a new master key version and destroys each older version that no
/// account key set uses any more (the last step of a data-key rotation).
pub async fn shred_old_master_versions(
    store: &DynStore,
    provider: &dyn KeyProvider,
    actor: &str,
) -> Result<(), AdminError> {
    locked(store, provider, async {
        let report = rotate_master_key(store, provider, actor).await?;
        rewrap_all(store, provider, report.new_version, None).await?;
        for version in provider.versions() {
            if version < report.new_version
                && store.count_account_keys_under(version as i32).await? == 0
            {
                destroy_version(store, provider, version, actor).await?;
            }
        }
        Ok(())
    })
    .await
}

/// Destroys one master key version for good, and records it.
async fn destroy_version(
    store: &DynStore,
    provider: &dyn KeyProvider,
    version: u32,
    actor: &str,
) -> Result<(), AdminError> {
    provider.destroy_version(version)?;
    store
        .insert_audit_event(&AuditEvent::new(
            None,
            actor,
            Action::MasterKeyRetire,
            Some(format!("v{version}")),
            "success",
        ))
        .await?;
    Ok(())
}
