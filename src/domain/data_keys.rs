//! Data-key rotation: `strongroom data-key rotate` gives each chosen account a new data key (and a new
//! fingerprint key) and queues one durable job that re-seals, in batches, every card, import key,
//! webhook signing key and processor credential of those accounts under it. Every step is idempotent (a
//! value already under the new key is skipped; a replacement only lands on the value it read), so a kill
//! at any point resumes. At the end it destroys the previous wrapped data key and moves every account's
//! keys to a new master key version, destroying the versions nothing uses any more: a copy of the
//! database made before the rotation then holds data keys wrapped only by master keys that no longer
//! exist, so what was deleted before the rotation cannot be read from it.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobError, JobHandler, Ran};
use crate::store::{Action, AuditEvent, DynStore, Job, Reseal, SealedColumn, StoreResult};
use crate::vault::{sealed_version, Vault, KEY_CACHE_RECHECK};

pub const KIND: &str = "data_key_rotate";

#[derive(Debug, Serialize, Deserialize)]
pub struct RotatePayload {
    /// Each account with the data key version its rotation installed.
    pub accounts: Vec<(Uuid, i32)>,
    pub actor: String,
}

const TOKENS: SealedColumn = SealedColumn {
    table: "tokens",
    id: "id",
    column: "sealed_card",
    account: "account_id",
};
const OTHERS: [(SealedColumn, Aad); 4] = [
    (
        SealedColumn {
            table: "token_imports",
            id: "id",
            column: "sealed_api_key",
            account: "account_id",
        },
        |id| crate::domain::imports::sealing_aad(id, "stripe_key"),
    ),
    (
        SealedColumn {
            table: "token_imports",
            id: "id",
            column: "sealed_ingest_key",
            account: "account_id",
        },
        |id| crate::domain::imports::sealing_aad(id, "ingest_key"),
    ),
    (
        SealedColumn {
            table: "webhooks",
            id: "id",
            column: "sealed_key",
            account: "account_id",
        },
        crate::domain::webhooks::registry::key_aad,
    ),
    (
        SealedColumn {
            table: "processors",
            id: "id",
            column: "sealed_secrets",
            account: "account_id",
        },
        crate::domain::processors::secrets_aad,
    ),
];
type Aad = fn(Uuid) -> Vec<u8>;

/// How far a rotation has come, for the command's progress bar: of every sealed value of `accounts`
/// (each with the data key version its rotation installed), how many are already sealed under that
/// version, and how many there are. It reads each sealed value once, in pages, so poll it sparingly.
pub async fn rotation_progress(
    store: &DynStore,
    accounts: &[(Uuid, i32)],
) -> StoreResult<(u64, u64)> {
    const PAGE: i64 = 1000;
    let (mut done, mut total) = (0, 0);
    for (account_id, version) in accounts {
        let version = u32::try_from(*version).ok();
        for at in std::iter::once(TOKENS).chain(OTHERS.iter().map(|(at, _)| *at)) {
            let mut after = None;
            loop {
                let rows = store.list_sealed(at, *account_id, after, PAGE).await?;
                total += rows.len() as u64;
                done += rows
                    .iter()
                    .filter(|(_, _, sealed)| version.is_some() && sealed_version(sealed) == version)
                    .count() as u64;
                match rows.last() {
                    Some((id, created_at, _)) if rows.len() as i64 == PAGE => {
                        after = Some((*created_at, *id))
                    }
                    _ => break,
                }
            }
        }
    }
    Ok((done, total))
}

pub struct DataKeyRotation {
    vault: Arc<Vault>,
    batch: i64,
}

impl DataKeyRotation {
    pub fn new(vault: Arc<Vault>, batch: i64) -> Self {
        Self {
            vault,
            batch: batch.max(1),
        }
    }

    fn store(&self) -> &DynStore {
        self.vault.store()
    }

    /// Re-seals one kind of sealed value of the account; how many were replaced.
    async fn reseal_column(
        &self,
        account_id: Uuid,
        at: SealedColumn,
        aad: Option<Aad>,
        new_version: u32,
    ) -> Result<u64, JobError> {
        let mut after = None;
        let mut replaced = 0;
        loop {
            let rows = self
                .store()
                .list_sealed(at, account_id, after, self.batch)
                .await?;
            let Some((last, last_created_at, _)) = rows.last() else {
                return Ok(replaced);
            };
            after = Some((*last_created_at, *last));
            let mut updates = Vec::new();
            for (id, created_at, old) in rows {
                if sealed_version(&old) == Some(new_version) {
                    continue;
                }
                let update = match aad {
                    None => {
                        let card = self
                            .vault
                            .open(account_id, id, &old)
                            .await
                            .map_err(|e| JobError::Retry(e.to_string()))?;
                        let sealed = self
                            .vault
                            .seal(account_id, id, &card)
                            .await
                            .map_err(|e| JobError::Retry(e.to_string()))?;
                        Reseal {
                            id,
                            created_at,
                            old,
                            new: sealed.sealed_card,
                            fingerprint: Some(sealed.fingerprint),
                        }
                    }
                    Some(aad) => match self
                        .vault
                        .reseal_bytes(account_id, &aad(id), &old)
                        .await
                        .map_err(|e| JobError::Retry(e.to_string()))?
                    {
                        Some(new) => Reseal {
                            id,
                            created_at,
                            old,
                            new,
                            fingerprint: None,
                        },
                        None => continue,
                    },
                };
                updates.push(update);
            }
            if !updates.is_empty() {
                replaced += self
                    .store()
                    .replace_sealed(at, account_id, &updates)
                    .await?;
            }
        }
    }

    async fn reseal_account(&self, account_id: Uuid, version: u32) -> Result<u64, JobError> {
        let mut n = self
            .reseal_column(account_id, TOKENS, None, version)
            .await?;
        for (at, aad) in OTHERS {
            n += self
                .reseal_column(account_id, at, Some(aad), version)
                .await?;
        }
        Ok(n)
    }
}

#[async_trait]
impl JobHandler for DataKeyRotation {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        let payload: RotatePayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad payload: {e}")))?;
        // Nodes that cached the old keys seal under them until they look again: wait that long once.
        tokio::time::sleep(KEY_CACHE_RECHECK * 2).await;
        for (account_id, version) in &payload.accounts {
            let Some(record) = self.store().get_account_keys(*account_id).await? else {
                continue;
            };
            if record.dek_version != *version || record.previous_dek_version.is_none() {
                continue; // finished by an earlier run
            }
            let v = u32::try_from(*version).map_err(|_| JobError::Fatal("bad version".into()))?;
            let replaced = self.reseal_account(*account_id, v).await?;
            // A second pass finds what a node with stale keys sealed during the first (normally nothing).
            let late = self.reseal_account(*account_id, v).await?;
            let audit = AuditEvent::new(
                Some(*account_id),
                payload.actor.clone(),
                Action::DataKeyRotateEnd,
                Some(format!("v{version}: {} values re-sealed", replaced + late)),
                "success",
            );
            self.store()
                .finish_data_key_rotation(*account_id, *version, &audit)
                .await?;
        }
        // Old copies of the database hold the destroyed data keys wrapped by today's master key: a new
        // master version, and the retirement of every version nothing uses, put them out of reach.
        crate::vault::admin::shred_old_master_versions(
            self.store(),
            &**self.vault.provider(),
            &payload.actor,
        )
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
        let _ = self.store().checkpoint_after_delete().await;
        Ok(Ran::Done)
    }
}
