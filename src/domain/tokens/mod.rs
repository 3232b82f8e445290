//! Tokens: the token service (create, read, list, delete, consume, open) over the vault and the
//! store, with the webhook events each change causes. Checking card data lives in `validate`, the
//! group-commit writer in `writer`.

mod validate;
mod writer;

use std::sync::Arc;

use uuid::Uuid;

pub use validate::{validate_card, NumberForm, ValidCard, MAX_EXPIRATION_SECONDS};
pub use writer::TokenWriter;

use super::webhooks::{EventError, EventType, Webhooks};
use super::InternalError;
use crate::model::card::CardData;
use crate::model::token::TokenStatus;
use crate::store::{
    day_of, start_of_day, Action, AuditEvent, Backend, DynStore, StoreError, TokenQuery,
    TokenRecord, Ts,
};
use crate::vault::cvc::{CacheUnavailable, CvcCache};
use crate::vault::{Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] InternalError),
    #[error(transparent)]
    CodeCache(#[from] CacheUnavailable),
}

impl From<EventError> for TokenError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Store(e) => TokenError::Store(e),
            EventError::Internal(e) => TokenError::Internal(e),
        }
    }
}

/// Who deletes an ephemeral token when its time is up, in the audit trail.
pub const EXPIRY_ACTOR: &str = "system:expiry";

/// Whether an ephemeral token's time is up: from the instant of its `expires_at` on.
pub fn has_expired(token: &TokenRecord, now: Ts) -> bool {
    token.expires_at.is_some_and(|at| at <= now)
}

/// Where a page of `limit` from `offset` lies in `days` (per-day counts in listing order): its first
/// day, how many rows of that day come before it, and its last day (`None`: it runs to the end).
fn page_days(days: &[(i64, i64)], offset: i64, limit: i64) -> (i64, i64, Option<i64>) {
    let (mut first, mut skipped, mut seen) = (None, 0, 0i64);
    for (day, n) in days {
        if first.is_none() && seen + n > offset {
            first = Some(*day);
            skipped = offset - seen;
        }
        seen += n;
        if let Some(first) = first {
            if seen >= offset + limit {
                return (first, skipped, Some(*day));
            }
        }
    }
    (first.unwrap_or_default(), skipped, None)
}

/// Where a token came from, for tokens made by an import.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub business_key: Option<String>,
    pub import_provider: Option<String>,
}

/// The token service: what the API and the import job call.
pub struct Tokens {
    store: DynStore,
    pub vault: Arc<Vault>,
    pub cvc: Arc<CvcCache>,
    writer: TokenWriter,
    webhooks: Arc<Webhooks>,
    checkpoint_pending: Arc<std::sync::atomic::AtomicBool>,
}

impl Tokens {
    pub fn new(
        store: DynStore,
        vault: Arc<Vault>,
        cvc: Arc<CvcCache>,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        let writer = TokenWriter::spawn(store.clone());
        Self {
            store,
            vault,
            cvc,
            writer,
            webhooks,
            checkpoint_pending: Arc::default(),
        }
    }

    /// Seals the card, stores the token durably (with its audit event) and keeps the security code in memory.
    pub async fn create(
        &self,
        account_id: Uuid,
        actor: &str,
        valid: ValidCard,
        origin: Origin,
    ) -> Result<TokenRecord, TokenError> {
        let now = Ts::now();
        let (id, keyed_id, sealed) = self
            .vault
            .seal_new_token(account_id, now, &valid.card)
            .await?;
        let card = &valid.card;
        let record = TokenRecord {
            id,
            account_id,
            created_at: now,
            expiry_month: i32::from(card.expiry_month),
            expiry_year: i32::from(card.expiry_year),
            cardholder_name: card.cardholder_name.clone(),
            issuer_identification_number: card.pan.issuer_identification_number(),
            masked_account_number: card.pan.masked(),
            account_number_last_four: card.pan.last_four(),
            account_number_length: card.pan.len() as i32,
            scheme: card.pan.scheme().as_str().to_owned(),
            status: TokenStatus::Active.as_str().to_owned(),
            fingerprint: sealed.fingerprint,
            sealed_card: sealed.sealed_card,
            business_key: origin.business_key,
            import_provider: origin.import_provider,
            expires_at: valid.expires_in.map(|life| now.plus(life)),
            keyed_id,
        };
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenCreate,
            Some(id.to_string()),
            "success",
        );
        let outbox = self
            .webhooks
            .token_event(EventType::TokenCreated, &record)
            .await?;
        // The code is cached before the token is committed: a token is never acknowledged without
        // the code its client sent, and a cache that is down fails the request (503) with nothing made.
        let cached = valid.security_code.is_some();
        let metric_origin = if record.import_provider.is_some() {
            "import"
        } else {
            "api"
        };
        if let Some(code) = valid.security_code {
            self.cvc.put(account_id, id, code).await?;
        }
        match self.writer.insert_notified(record, audit, outbox).await {
            Ok(record) => {
                crate::metrics::metrics().token_created(metric_origin, 1);
                Ok(record)
            }
            Err(err) => {
                if cached {
                    self.cvc.drop_code(id).await;
                }
                Err(err.into())
            }
        }
    }

    /// The token, unless there is none or it has expired (gone from that moment, swept or not).
    pub async fn get(&self, account_id: Uuid, id: Uuid) -> Result<Option<TokenRecord>, TokenError> {
        let created_at = self.vault.token_created_at(account_id, id).await?;
        let token = self.store.get_token(account_id, id, created_at).await?;
        Ok(token.filter(|t| !has_expired(t, Ts::now())))
    }

    /// A page of the account's tokens as one JSON array of their public objects (card-art links
    /// starting with `public_url`), built by the database, and the exact total.
    pub async fn list(
        &self,
        query: &TokenQuery,
        public_url: &str,
    ) -> Result<(String, u64), TokenError> {
        let whole_days = [query.from, query.until]
            .iter()
            .flatten()
            .all(|at| start_of_day(day_of(*at)) == *at);
        if !whole_days {
            let rows = self.page(query, public_url).await?;
            let total = self.store.count_tokens(query).await?;
            return Ok((rows, total));
        }
        // The per-day counts give the total and the days the page lies in, so the database reads
        // only those days, however deep the page.
        let days = self.store.token_day_counts(query).await?;
        let total: i64 = days.iter().map(|(_, n)| n).sum();
        if query.offset >= total {
            return Ok(("[]".to_owned(), total as u64));
        }
        let (first, skipped, last) = page_days(&days, query.offset, query.limit);
        let (near, far) = (Some(first), last);
        // Newest first: the page runs from the end of its first day back to the start of its last;
        // oldest first, the other way round.
        let window = if query.oldest_first {
            TokenQuery {
                from: near.map(start_of_day),
                until: far.map(|d| start_of_day(d + 1)).or(query.until),
                offset: skipped,
                ..*query
            }
        } else {
            TokenQuery {
                from: far.map(start_of_day).or(query.from),
                until: near.map(|d| start_of_day(d + 1)),
                offset: skipped,
                ..*query
            }
        };
        let rows = self.page(&window, public_url).await?;
        Ok((rows, total as u64))
    }

    /// The tokens `query` selects as one JSON array of their public objects. SQLite builds it (the
    /// rows mapped here come through sqlx's SQLite channel with a copy per column, and measured no
    /// faster); on PostgreSQL the rows are mapped here, as `GET /payments` does there: building the
    /// text in the database measured 1.6 times slower (bench/tokens-list.sh, page 1000 x 500).
    async fn page(&self, query: &TokenQuery, public_url: &str) -> Result<String, TokenError> {
        if self.store.backend() != Backend::Postgres {
            return Ok(self.store.token_page_json(query, public_url).await?);
        }
        let tokens = self
            .store
            .list_tokens(query)
            .await?
            .into_iter()
            .map(|t| super::objects::token(t, public_url))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(serde_json::to_string(&tokens)
            .map_err(|e| InternalError::Encode("a page of tokens", e))?)
    }

    /// Destroys the token's card data and security code; false if there was no such token (or it has
    /// expired: the sweep deletes it).
    pub async fn delete(
        &self,
        account_id: Uuid,
        actor: &str,
        id: Uuid,
    ) -> Result<bool, TokenError> {
        match self.get(account_id, id).await? {
            None => Ok(false),
            Some(token) => self.remove(actor, &token).await,
        }
    }

    /// Checkpoints and truncates SQLite's WAL shortly after deletes (one run for a burst of them), so the
    /// deleted card's old pages do not stay in the log.
    fn checkpoint_soon(&self) {
        use std::sync::atomic::Ordering;
        if self.checkpoint_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.store.clone();
        let pending = self.checkpoint_pending.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            pending.store(false, Ordering::Release);
            if let Err(err) = store.checkpoint_after_delete().await {
                tracing::warn!(error = %err, "WAL checkpoint after a delete failed");
            }
        });
    }

    /// Deletes `token` with its audit row, its `token.deleted` event (if someone listens; it shows the
    /// token as it was) and its cached security code.
    async fn remove(&self, actor: &str, token: &TokenRecord) -> Result<bool, TokenError> {
        let (account_id, id) = (token.account_id, token.id);
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenDelete,
            Some(id.to_string()),
            "success",
        );
        let outbox = self
            .webhooks
            .token_event(EventType::TokenDeleted, token)
            .await?;
        let deleted = self
            .store
            .delete_token(account_id, id, token.created_at, &audit, &outbox)
            .await?;
        if deleted {
            self.cvc.drop_code(id).await;
            self.checkpoint_soon();
        }
        Ok(deleted)
    }

    /// Deletes every ephemeral token whose expiry passed before `now`, a batch at a time, each as a
    /// deletion of its own (audit row, `token.deleted`, security code dropped). Returns how many.
    pub async fn sweep_expired(&self, now: Ts) -> Result<u64, TokenError> {
        const BATCH: i64 = 200;
        let mut deleted = 0;
        loop {
            let expired = self.store.expired_tokens(now, BATCH).await?;
            let full = expired.len() as i64 == BATCH;
            let mut progressed = false;
            for token in &expired {
                if self.remove(EXPIRY_ACTOR, token).await? {
                    deleted += 1;
                    progressed = true;
                }
            }
            if !full || !progressed {
                return Ok(deleted);
            }
        }
    }

    /// Drops the cached security code of an existing token; false if there is no such token.
    pub async fn consume(
        &self,
        account_id: Uuid,
        actor: &str,
        id: Uuid,
    ) -> Result<bool, TokenError> {
        let Some(token) = self.get(account_id, id).await? else {
            return Ok(false);
        };
        let dropped = self.cvc.drop_code(id).await;
        let outcome = if dropped {
            "success"
        } else {
            "no_security_code"
        };
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenConsume,
            Some(id.to_string()),
            outcome,
        );
        // Dropping the code is the one change a token undergoes short of deletion: `token.updated`.
        let outbox = match dropped {
            true => {
                self.webhooks
                    .token_event(EventType::TokenUpdated, &token)
                    .await?
            }
            false => Vec::new(),
        };
        if outbox.is_empty() {
            self.store.insert_audit_event(&audit).await?;
            return Ok(true);
        }
        Ok(self
            .store
            .touch_token(account_id, id, token.created_at, &audit, &outbox)
            .await?)
    }

    /// Opens a token's card data for use; every such access is audited.
    pub async fn open(
        &self,
        account_id: Uuid,
        actor: &str,
        token: &TokenRecord,
    ) -> Result<CardData, TokenError> {
        let (opened, audit) = self.open_for_commit(account_id, actor, token).await;
        self.store.insert_audit_event(&audit).await?;
        opened
    }

    /// Opens a token's card data and hands back the audit event of the access, which the caller
    /// writes in the commit that records what the card was opened for, before using the card.
    pub async fn open_for_commit(
        &self,
        account_id: Uuid,
        actor: &str,
        token: &TokenRecord,
    ) -> (Result<CardData, TokenError>, AuditEvent) {
        let opened = self
            .vault
            .open(account_id, token.id, &token.sealed_card)
            .await;
        let outcome = if opened.is_ok() { "success" } else { "failure" };
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenReadCard,
            Some(token.id.to_string()),
            outcome,
        );
        (opened.map_err(TokenError::from), audit)
    }
}
