//! Token imports from a processor (Stripe): starting one with its sealed key and its own ingest key,
//! reading, listing and aborting imports and their failures, and the ingest step that turns a forwarded
//! card into a token. The moves between statuses are `ImportStatus`'s; the job lives in `job.rs`.

pub mod job;
mod reads;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use super::tokens::{validate_card, NumberForm, Origin, TokenError, Tokens};
use super::webhooks::{EventError, ImportOutcome as EndOfImport, Webhooks};
use super::{objects, FieldError, InternalError};
use crate::connectors::stripe::StripeKey;
use crate::model::import::{Import, ImportFailure, ImportProvider, ImportStatus};
use crate::store::{
    Action, AuditEvent, DynStore, Fence, ImportFailure as FailureRecord, ImportRecord, JobStatus,
    NewJob, StoreError, TokenRecord, Ts,
};
use crate::vault::VaultError;

pub const IMPORT_JOB: &str = "import.run";
/// Ingest keys read `sri_<import id>_<secret>`: they name their import and open nothing else.
const INGEST_KEY_PREFIX: &str = "sri_";
/// The header that tells the ingest endpoint which payment method a forwarded card is.
pub const BUSINESS_KEY_HEADER: &str = "x-strongroom-business-key";
/// How often the job is retried (with backoff) when Stripe stays unavailable before the import is aborted.
const IMPORT_JOB_ATTEMPTS: i32 = 8;

/// What an import needs to know of the server's configuration.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    pub stripe_api_base: String,
    /// Where Stripe posts cards: `<public URL>/tokens/imports/ingest`.
    pub ingest_url: String,
    pub rate_limit: Option<u32>,
    pub retry_base: Duration,
    pub concurrency: usize,
    /// How long one run of the import job goes on before it records its position and gives its worker
    /// back (it finishes the batch under way first).
    pub step: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("another import of this account is preparing or running")]
    AlreadyActive,
    #[error("the import has already ended")]
    AlreadyEnded,
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

impl From<StoreError> for ImportError {
    fn from(err: StoreError) -> Self {
        ImportError::Store(err)
    }
}

impl From<EventError> for ImportError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Store(e) => ImportError::Store(e),
            EventError::Internal(e) => ImportError::Internal(e),
        }
    }
}

/// The typed status of a stored import; a status no table knows is a corrupt row.
pub(crate) fn status_of(import: &ImportRecord) -> Result<ImportStatus, StoreError> {
    import
        .status
        .parse()
        .map_err(|e: crate::model::UnknownValue| StoreError::Corrupt(e.to_string()))
}

/// Why a forwarded card did not become a token.
#[derive(Debug)]
pub enum IngestError {
    /// The card data failed validation; the paths and messages never repeat values.
    Invalid(Vec<FieldError>),
    Token(TokenError),
}

pub struct Imports {
    pub(crate) store: DynStore,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) settings: ImportSettings,
    pub(crate) http: reqwest::Client,
    webhooks: Arc<Webhooks>,
    reads: reads::ImportReads,
}

/// How many times an end is tried again when the counters moved between reading and ending.
const END_TRIES: usize = 20;

impl Imports {
    pub fn new(
        store: DynStore,
        tokens: Arc<Tokens>,
        settings: ImportSettings,
        webhooks: Arc<Webhooks>,
    ) -> reqwest::Result<Self> {
        Ok(Self {
            reads: reads::ImportReads::spawn(store.clone()),
            store,
            tokens,
            settings,
            http: crate::connectors::stripe::StripeClient::http_client()?,
            webhooks,
        })
    }

    /// Ends an active import as `finished` or `aborted` (as `ImportStatus` allows the move), destroying
    /// its keys, with its `import.finished|aborted` event written in the same transaction. The event shows
    /// the import as it ends, so the end is made against the counters it was built from and tried again
    /// if a batch of outcomes landed in between. False if the move is not allowed from where it stands.
    /// `audit`, when the end is an audited action, is written in the same transaction.
    pub(crate) async fn end(
        &self,
        id: Uuid,
        how: EndOfImport,
        failure: Option<&FailureRecord>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, ImportError> {
        self.end_as(id, None, how, failure, audit).await
    }

    /// `end` made by the import's job run, fenced on its claim: false (writing nothing) once the run
    /// lost its lease.
    pub(crate) async fn end_fenced(
        &self,
        id: Uuid,
        fence: &Fence,
        how: EndOfImport,
        failure: Option<&FailureRecord>,
    ) -> Result<bool, ImportError> {
        let Some(import) = self.store.get_import(id).await? else {
            return Ok(false);
        };
        // The system ended it (every card tried, or a fatal error): recorded in the end's commit.
        let outcome = match how {
            EndOfImport::Finished => "finished",
            EndOfImport::Aborted => "aborted",
        };
        let audit = AuditEvent::new(
            Some(import.account_id),
            "system",
            Action::ImportEnd,
            Some(id.to_string()),
            outcome,
        );
        self.end_as(id, Some(fence), how, failure, Some(&audit))
            .await
    }

    async fn end_as(
        &self,
        id: Uuid,
        fence: Option<&Fence>,
        how: EndOfImport,
        failure: Option<&FailureRecord>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, ImportError> {
        let next = match how {
            EndOfImport::Finished => ImportStatus::Finished,
            EndOfImport::Aborted => ImportStatus::Aborted,
        };
        for _ in 0..END_TRIES {
            let Some(current) = self.store.get_import(id).await? else {
                return Ok(false);
            };
            if !status_of(&current)?.can_move_to(next) {
                return Ok(false);
            }
            let now = Ts::now();
            let mut ended = current.clone();
            ended.status = next.as_str().to_owned();
            ended.finished_at = Some(now);
            // The store counts a fatal failure as an attempt that failed (it is in the failure list).
            if failure.is_some() {
                ended.attempts += 1;
                ended.failures += 1;
            }
            let outbox = self
                .webhooks
                .import_event(
                    current.account_id,
                    how,
                    (id, current.created_at),
                    &objects::import(ended)?,
                )
                .await?;
            if self
                .store
                .end_import(
                    id,
                    fence,
                    next.as_str(),
                    current.attempts,
                    failure,
                    &outbox,
                    audit,
                    now,
                )
                .await?
            {
                return Ok(true);
            }
            if let Some(fence) = fence {
                let job = self.store.get_job(fence.job).await?;
                let held =
                    job.is_some_and(|j| j.status == JobStatus::Running && &j.fence() == fence);
                if !held {
                    return Ok(false);
                }
            }
        }
        Err(InternalError::Unsettled("the import kept changing while it was being ended").into())
    }

    /// Creates an import in `preparing` with the job that runs it. The Stripe key and a fresh ingest key
    /// are stored sealed under the account's data key.
    pub async fn create(
        &self,
        account_id: Uuid,
        actor: &str,
        stripe_key: &StripeKey,
    ) -> Result<Import, ImportError> {
        let id = crate::new_id();
        let vault = &self.tokens.vault;
        let (ingest_key, digest) = mint_ingest_key(id);
        let now = Ts::now();
        let import = ImportRecord {
            id,
            account_id,
            provider: ImportProvider::Stripe.as_str().to_owned(),
            status: ImportStatus::Preparing.as_str().to_owned(),
            sealed_api_key: Some(
                vault
                    .seal_bytes(
                        account_id,
                        &sealing_aad(id, "stripe_key"),
                        stripe_key.expose().as_bytes(),
                    )
                    .await?,
            ),
            sealed_ingest_key: Some(
                vault
                    .seal_bytes(
                        account_id,
                        &sealing_aad(id, "ingest_key"),
                        ingest_key.as_bytes(),
                    )
                    .await?,
            ),
            ingest_key_digest: Some(digest),
            position: None,
            attempts: 0,
            successes: 0,
            failures: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        let job = NewJob {
            id: NewJob::new_id(),
            kind: IMPORT_JOB.to_owned(),
            payload: serde_json::json!({ "import_id": id }).to_string(),
            max_attempts: IMPORT_JOB_ATTEMPTS,
            run_at: now,
            lease: None,
        };
        let audit = success(account_id, actor, Action::ImportCreate, id);
        // The only constraint a new import can meet is `token_imports_one_active` (SQLite does not name
        // the index it was refused by).
        self.store
            .insert_import(&import, &job, &audit)
            .await
            .map_err(|err| match err {
                StoreError::Constraint(_) => ImportError::AlreadyActive,
                other => ImportError::Store(other),
            })?;
        Ok(objects::import(import)?)
    }

    /// The stored import if it belongs to `account_id`.
    async fn own(&self, account_id: Uuid, id: Uuid) -> Result<Option<ImportRecord>, StoreError> {
        Ok(self
            .store
            .get_import(id)
            .await?
            .filter(|i| i.account_id == account_id))
    }

    /// The import if it belongs to `account_id`.
    pub async fn get(&self, account_id: Uuid, id: Uuid) -> Result<Option<Import>, ImportError> {
        match self.own(account_id, id).await? {
            Some(import) => Ok(Some(objects::import(import)?)),
            None => Ok(None),
        }
    }

    /// A page of the account's imports, newest first, and how many it has in all.
    pub async fn list(
        &self,
        account_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Import>, u64), ImportError> {
        let rows = self.store.list_imports(account_id, limit, offset).await?;
        let total = self.store.count_imports(account_id).await?;
        let imports = rows
            .into_iter()
            .map(objects::import)
            .collect::<Result<_, _>>()?;
        Ok((imports, total))
    }

    /// A page of the failures of the account's import `id` in the order they happened, and how many
    /// there are in all; `None` if the account has no such import.
    pub async fn failures(
        &self,
        account_id: Uuid,
        id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<Option<(Vec<ImportFailure>, u64)>, ImportError> {
        if self.own(account_id, id).await?.is_none() {
            return Ok(None);
        }
        let rows = self.store.list_import_failures(id, limit, offset).await?;
        let total = self.store.count_import_failures(id).await?;
        let failures = rows
            .into_iter()
            .map(objects::import_failure)
            .collect::<Result<_, _>>()?;
        Ok(Some((failures, total)))
    }

    /// Moves an active import to `aborted`; its keys are destroyed and its ingest key dies with them.
    pub async fn abort(
        &self,
        account_id: Uuid,
        actor: &str,
        id: Uuid,
    ) -> Result<Option<Import>, ImportError> {
        if self.own(account_id, id).await?.is_none() {
            return Ok(None);
        }
        let audit = success(account_id, actor, Action::ImportAbort, id);
        if !self
            .end(id, EndOfImport::Aborted, None, Some(&audit))
            .await?
        {
            return Err(ImportError::AlreadyEnded);
        }
        self.get(account_id, id).await
    }

    /// The running import that `presented` is the ingest key of, if any.
    pub async fn authenticate_ingest(
        &self,
        presented: &str,
    ) -> Result<Option<ImportRecord>, StoreError> {
        let Some((id, secret)) = parse_ingest_key(presented) else {
            return Ok(None);
        };
        let Some(import) = self.reads.get(id).await? else {
            return Ok(None);
        };
        let matches = import
            .ingest_key_digest
            .as_deref()
            .is_some_and(|d| bool::from(Sha256::digest(secret.as_bytes()).ct_eq(d)));
        Ok((matches && status_of(&import)? == ImportStatus::Running).then_some(import))
    }

    /// Turns a card forwarded for `import` into a token with `business_key` (the payment method). A card
    /// already imported for the account under that key is not imported again: its token is returned.
    ///
    /// The token is written without looking for an earlier one first: the import job forwards only
    /// payment methods the account has no token for (`existing_business_keys`), so a card seen before
    /// comes only from a forward that was repeated, and the unique business key turns that insert
    /// away (`Constraint`), after which the earlier token is the answer. On PostgreSQL the lookup first
    /// was one more statement for every card, about a fifth of the database's CPU per imported card.
    pub async fn ingest(
        &self,
        import: &ImportRecord,
        business_key: &str,
        mut body: Value,
    ) -> Result<TokenRecord, IngestError> {
        let account_id = import.account_id;
        // Stripe leaves the placeholder empty when it holds no name or security code for the card.
        if let Some(object) = body.as_object_mut() {
            for optional in ["security_code", "cardholder_name"] {
                if object.get(optional).and_then(Value::as_str) == Some("") {
                    object.remove(optional);
                }
            }
        }
        let valid = match validate_card(&body, chrono::Utc::now(), NumberForm::Forwarded) {
            Ok(valid) => valid,
            // A card imported before answers with its token even if it would not pass today (it
            // expired since, say).
            Err(invalid) => {
                return match self.existing(account_id, business_key).await? {
                    Some(existing) => Ok(existing),
                    None => Err(IngestError::Invalid(invalid)),
                }
            }
        };
        let origin = Origin {
            business_key: Some(business_key.to_owned()),
            import_provider: Some(import.provider.clone()),
        };
        let actor = format!("import:{}", import.id);
        match self.tokens.create(account_id, &actor, valid, origin).await {
            Ok(token) => Ok(token),
            // Another forward of the same card won the race: its token is the answer.
            Err(TokenError::Store(StoreError::Constraint(_))) => self
                .existing(account_id, business_key)
                .await?
                .ok_or(IngestError::Token(TokenError::Internal(
                    InternalError::Unsettled("a token with this business key vanished"),
                ))),
            Err(err) => Err(IngestError::Token(err)),
        }
    }

    async fn existing(
        &self,
        account_id: Uuid,
        business_key: &str,
    ) -> Result<Option<TokenRecord>, IngestError> {
        self.store
            .get_token_by_business_key(account_id, ImportProvider::Stripe.as_str(), business_key)
            .await
            .map_err(|e| IngestError::Token(TokenError::Store(e)))
    }

    /// Opens the Stripe key and the ingest key of an active import.
    pub(crate) async fn open_keys(
        &self,
        import: &ImportRecord,
    ) -> Result<Option<(StripeKey, Zeroizing<String>)>, VaultError> {
        let (Some(api), Some(ingest)) = (&import.sealed_api_key, &import.sealed_ingest_key) else {
            return Ok(None);
        };
        let vault = &self.tokens.vault;
        let api = vault
            .open_bytes(
                import.account_id,
                &sealing_aad(import.id, "stripe_key"),
                api,
            )
            .await;
        // Every opening of the merchant's Stripe secret is on the trail, whether it opened or not.
        let opened = AuditEvent::new(
            Some(import.account_id),
            "system",
            Action::ImportOpenStripeKey,
            Some(import.id.to_string()),
            if api.is_ok() { "success" } else { "failure" },
        );
        // Not recorded, not used.
        self.store.insert_audit_event(&opened).await?;
        let api = api?;
        let ingest = vault
            .open_bytes(
                import.account_id,
                &sealing_aad(import.id, "ingest_key"),
                ingest,
            )
            .await?;
        let text =
            |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| VaultError::Integrity);
        Ok(Some((
            StripeKey::new(text(&api)?),
            Zeroizing::new(text(&ingest)?),
        )))
    }
}

/// The audit event of a successful action of `actor` on import `id`.
fn success(account_id: Uuid, actor: &str, action: Action, id: Uuid) -> AuditEvent {
    AuditEvent::new(
        Some(account_id),
        actor,
        action,
        Some(id.to_string()),
        "success",
    )
}

impl From<StoreError> for IngestError {
    fn from(err: StoreError) -> Self {
        IngestError::Token(TokenError::Store(err))
    }
}

/// What a sealed key of an import is bound to: the import and the key's role.
pub(crate) fn sealing_aad(import_id: Uuid, role: &str) -> Vec<u8> {
    format!("import:{import_id}:{role}").into_bytes()
}

/// A new ingest key for `import_id` and the digest of its secret.
fn mint_ingest_key(import_id: Uuid) -> (Zeroizing<String>, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw));
    raw.zeroize();
    let digest = Sha256::digest(secret.as_bytes()).to_vec();
    let key = Zeroizing::new(format!(
        "{INGEST_KEY_PREFIX}{}_{}",
        import_id.simple(),
        secret.as_str()
    ));
    (key, digest)
}

fn parse_ingest_key(presented: &str) -> Option<(Uuid, &str)> {
    let (id, secret) = presented.strip_prefix(INGEST_KEY_PREFIX)?.split_once('_')?;
    if id.len() != 32 || secret.is_empty() {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ingest_key_names_its_import_and_checks_against_its_digest() {
        let id = crate::new_id();
        let (key, digest) = mint_ingest_key(id);
        let (parsed, secret) = parse_ingest_key(&key).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(Sha256::digest(secret.as_bytes()).to_vec(), digest);
        assert!(parse_ingest_key("sr_abc_def").is_none());
        assert!(parse_ingest_key(&format!("sri_{}_", id.simple())).is_none());
    }

    /// The store's SQL guards repeat the moves in SQL; they must allow exactly what `ImportStatus` does.
    #[test]
    fn the_stores_end_guards_allow_exactly_the_moves_of_import_status() {
        for next in [ImportStatus::Finished, ImportStatus::Aborted] {
            let guard = crate::store::imports::end_import_guard(next.as_str());
            for from in ImportStatus::ALL {
                let named = guard.contains(from);
                assert_eq!(named, from.can_move_to(next), "{from} -> {next}: {guard:?}");
            }
        }
    }
}
