//! Tokens: `TokenStore` and its SQL. A token is written with its audit event, and with the webhook
//! outbox rows of its events, in one commit; the batch writer itself is the backend's (`SqlBackend`).

use std::fmt;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{AuditEvent, OutboxRecord, StoreResult, Ts};

/// A token row. `sealed_card` is the only place the card number lives, sealed; `fingerprint` is keyed.
#[derive(Clone, sqlx::FromRow)]
pub struct TokenRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub created_at: Ts,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub cardholder_name: Option<String>,
    pub issuer_identification_number: String,
    pub masked_account_number: String,
    pub account_number_last_four: String,
    pub account_number_length: i32,
    pub scheme: String,
    pub status: String,
    pub fingerprint: Vec<u8>,
    pub sealed_card: Vec<u8>,
    pub business_key: Option<String>,
    pub import_provider: Option<String>,
    pub expires_at: Option<Ts>,
    /// Whether `id` was made under the account's id key (`vault::token_ids`), so that it gives back
    /// `created_at`; false for a random id, which only the index on random ids finds.
    pub keyed_id: bool,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("masked_account_number", &self.masked_account_number)
            .finish_non_exhaustive()
    }
}

/// What a token's public object shows, as a listing reads it: `TOKEN_LISTING_COLUMNS`, in that order,
/// decoded by position. A page of 500 reads neither the sealed card nor the fingerprint, and looks no
/// column up by its name.
#[derive(Clone)]
pub struct TokenListing {
    pub id: Uuid,
    pub created_at: Ts,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub cardholder_name: Option<String>,
    pub issuer_identification_number: String,
    pub masked_account_number: String,
    pub account_number_last_four: String,
    pub account_number_length: i32,
    pub scheme: String,
    pub status: String,
    pub business_key: Option<String>,
    pub import_provider: Option<String>,
    pub expires_at: Option<Ts>,
}

/// As `TokenRecord`'s: no cardholder name in a log line.
impl fmt::Debug for TokenListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenListing")
            .field("id", &self.id)
            .field("masked_account_number", &self.masked_account_number)
            .finish_non_exhaustive()
    }
}

impl From<TokenRecord> for TokenListing {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            created_at: t.created_at,
            expiry_month: t.expiry_month,
            expiry_year: t.expiry_year,
            cardholder_name: t.cardholder_name,
            issuer_identification_number: t.issuer_identification_number,
            masked_account_number: t.masked_account_number,
            account_number_last_four: t.account_number_last_four,
            account_number_length: t.account_number_length,
            scheme: t.scheme,
            status: t.status,
            business_key: t.business_key,
            import_provider: t.import_provider,
            expires_at: t.expires_at,
        }
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for TokenListing
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    Ts: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            created_at: row.try_get(1)?,
            expiry_month: row.try_get(2)?,
            expiry_year: row.try_get(3)?,
            cardholder_name: row.try_get(4)?,
            issuer_identification_number: row.try_get(5)?,
            masked_account_number: row.try_get(6)?,
            account_number_last_four: row.try_get(7)?,
            account_number_length: row.try_get(8)?,
            scheme: row.try_get(9)?,
            status: row.try_get(10)?,
            business_key: row.try_get(11)?,
            import_provider: row.try_get(12)?,
            expires_at: row.try_get(13)?,
        })
    }
}

/// Which tokens of an account to list: created in `[from, until)`, oldest or newest first.
#[derive(Clone, Copy, Debug)]
pub struct TokenQuery {
    pub account_id: Uuid,
    pub from: Option<Ts>,
    pub until: Option<Ts>,
    pub oldest_first: bool,
    pub limit: i64,
    pub offset: i64,
}

#[async_trait]
pub trait TokenStore {
    /// Inserts tokens with their audit events, and `outbox` (their `token.created` events), in one
    /// commit. The events are not written as rows but carried in the payload of one delivery job
    /// (`webhook_records::CarriedEvent`); each becomes a row when that job's run records what became of
    /// it, or when a later event of its token is written (`delete_token`, `touch_token`). So `outbox`
    /// may hold only first events of their objects. An empty `outbox` writes nothing more.
    async fn insert_tokens(
        &self,
        tokens: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()>;
    /// The token writer has nothing queued after a batch (see `SqlBackend::token_batches_idle`).
    fn token_batches_idle(&self);
    /// The account's token `id`. `created_at` is the creation time its id gives back, if it is one
    /// made under the account's id key: the token is then looked up by that time (and, if not found
    /// there, among the tokens with random ids, which an id from elsewhere almost surely is).
    async fn get_token(
        &self,
        account_id: Uuid,
        id: Uuid,
        created_at: Option<Ts>,
    ) -> StoreResult<Option<TokenRecord>>;
    async fn list_tokens(&self, query: &TokenQuery) -> StoreResult<Vec<TokenListing>>;
    /// The tokens `list_tokens` answers, as one JSON array (text) of their public objects
    /// (`model::token::Token`, card-art links starting with `public_url`), built by the database.
    async fn token_page_json(&self, query: &TokenQuery, public_url: &str) -> StoreResult<String>;
    async fn count_tokens(&self, query: &TokenQuery) -> StoreResult<u64>;
    /// The account's tokens per UTC day within the query's `from`/`until` taken as whole days (the
    /// days that hold them), in the query's order, from counts kept with every insert and delete.
    async fn token_day_counts(&self, query: &TokenQuery) -> StoreResult<Vec<(i64, i64)>>;
    /// Deletes the token row with its sealed card and writes `audit` and `outbox` in the same
    /// transaction, after the rows of the token's events still carried by their job (so that `outbox`
    /// waits for them); false (and nothing written) if there was no such token. `created_at` is the
    /// token's, as read: the row is found by it, whatever its id.
    async fn delete_token(
        &self,
        account_id: Uuid,
        id: Uuid,
        created_at: Ts,
        audit: &AuditEvent,
        outbox: &[OutboxRecord],
    ) -> StoreResult<bool>;
    /// Up to `limit` tokens whose expiry passed before `now`, soonest first, for the sweep to delete
    /// one by one (each with its audit row and `token.deleted` event).
    async fn expired_tokens(&self, now: Ts, limit: i64) -> StoreResult<Vec<TokenRecord>>;
    /// Records a change of a token's state that is not a column (its security code was dropped): locks
    /// the token's row, so that its events are ordered with its deletion, and writes `audit` and
    /// `outbox`, after the rows of the token's carried events as `delete_token` does; false (and
    /// nothing written) if there is no such token. `created_at` as for `delete_token`.
    async fn touch_token(
        &self,
        account_id: Uuid,
        id: Uuid,
        created_at: Ts,
        audit: &AuditEvent,
        outbox: &[OutboxRecord],
    ) -> StoreResult<bool>;
}

/// The columns of a `TokenListing`, in the order it decodes them.
pub(crate) const TOKEN_LISTING_COLUMNS: &str = "id, created_at, expiry_month, expiry_year, cardholder_name, \
     issuer_identification_number, masked_account_number, account_number_last_four, account_number_length, \
     scheme, status, business_key, import_provider, expires_at";

pub(crate) const TOKEN_COLUMNS: &str = "id, account_id, created_at, expiry_month, expiry_year, cardholder_name, \
     issuer_identification_number, masked_account_number, account_number_last_four, account_number_length, scheme, \
     status, fingerprint, sealed_card, business_key, import_provider, expires_at, keyed_id";

/// `WHERE` for a token listing; binds `$1` account, then `from` and `until` when present, in that order.
pub(crate) fn token_filter(query: &TokenQuery) -> (String, usize) {
    let mut sql = String::from(" WHERE account_id = $1");
    let mut next = 2;
    if query.from.is_some() {
        sql.push_str(&format!(" AND created_at >= ${next}"));
        next += 1;
    }
    if query.until.is_some() {
        sql.push_str(&format!(" AND created_at < ${next}"));
        next += 1;
    }
    (sql, next)
}

/// Appends `INSERT INTO tokens (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_token_insert<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    rows: &'a [(TokenRecord, AuditEvent)],
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    Option<Ts>: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    query.push(format!("INSERT INTO tokens ({TOKEN_COLUMNS}) "));
    query.push_values(rows, |mut row, (t, _)| {
        row.push_bind(t.id)
            .push_bind(t.account_id)
            .push_bind(t.created_at)
            .push_bind(t.expiry_month)
            .push_bind(t.expiry_year)
            .push_bind(t.cardholder_name.as_deref())
            .push_bind(t.issuer_identification_number.as_str())
            .push_bind(t.masked_account_number.as_str())
            .push_bind(t.account_number_last_four.as_str())
            .push_bind(t.account_number_length)
            .push_bind(t.scheme.as_str())
            .push_bind(t.status.as_str())
            .push_bind(t.fingerprint.as_slice())
            .push_bind(t.sealed_card.as_slice())
            .push_bind(t.business_key.as_deref())
            .push_bind(t.import_provider.as_deref())
            .push_bind(t.expires_at)
            .push_bind(t.keyed_id);
    });
}

/// The batch's tokens per account and UTC day, sorted by account and day: what the batch writers add
/// to `token_day_counts` in the batch's own commit (one row change per account and day, not per token;
/// deletions are counted out by a trigger). Sorted, so that concurrent batches lock count rows in
/// one order.
pub(crate) fn day_counts(batch: &[(TokenRecord, AuditEvent)]) -> Vec<(Uuid, i64, i64)> {
    let mut counts: Vec<(Uuid, i64, i64)> = Vec::new();
    for (token, _) in batch {
        let day = super::day_of(token.created_at);
        match counts
            .iter_mut()
            .find(|(account, d, _)| *account == token.account_id && *d == day)
        {
            Some((_, _, n)) => *n += 1,
            None => counts.push((token.account_id, day, 1)),
        }
    }
    counts.sort_unstable();
    counts
}

macro_rules! impl_token_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::backend::SqlBackend;
            use $crate::store::tokens::{token_filter, TOKEN_COLUMNS, TOKEN_LISTING_COLUMNS};
            use $crate::store::{day_of, AuditEvent, OutboxRecord, StoreResult, TokenListing, TokenQuery, TokenRecord, TokenStore, Ts};
            use $crate::store::payment_records::{day_counts_sql, parse_day_counts};

            type Db = <$store as SqlBackend>::DB;

            #[async_trait::async_trait]
            impl TokenStore for $store {
                async fn insert_tokens(&self, batch: &[(TokenRecord, AuditEvent)], outbox: &[OutboxRecord]) -> StoreResult<()> {
                    self.insert_token_batch(batch, outbox).await
                }

                fn token_batches_idle(&self) {
                    <$store as SqlBackend>::token_batches_idle(self)
                }

                async fn get_token(
                    &self,
                    account_id: Uuid,
                    id: Uuid,
                    created_at: Option<Ts>,
                ) -> StoreResult<Option<TokenRecord>> {
                    if let Some(created_at) = created_at {
                        let sql = format!(
                            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = $1 AND created_at = $2 AND id = $3"
                        );
                        let found = sqlx::query_as(&sql)
                            .bind(account_id)
                            .bind(created_at)
                            .bind(id)
                            .fetch_optional(self.pool())
                            .await?;
                        if found.is_some() {
                            return Ok(found);
                        }
                    }
                    // `keyed_id = FALSE` as the partial index on random ids says it (SQLite uses such an
                    // index only for a query whose terms imply its own).
                    let sql = format!(
                        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1 AND keyed_id = FALSE AND account_id = $2"
                    );
                    Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(self.pool()).await?)
                }

                async fn list_tokens(&self, q: &TokenQuery) -> StoreResult<Vec<TokenListing>> {
                    let (filter, next) = token_filter(q);
                    let order = if q.oldest_first { "ASC" } else { "DESC" };
                    let sql = format!(
                        "SELECT {TOKEN_LISTING_COLUMNS} FROM tokens{filter} ORDER BY created_at {order}, id {order} \
                         LIMIT ${next} OFFSET ${}",
                        next + 1
                    );
                    let mut query = sqlx::query_as(&sql).bind(q.account_id);
                    if let Some(from) = q.from {
                        query = query.bind(from);
                    }
                    if let Some(until) = q.until {
                        query = query.bind(until);
                    }
                    Ok(query.bind(q.limit).bind(q.offset).fetch_all(self.pool()).await?)
                }

                async fn token_page_json(&self, q: &TokenQuery, public_url: &str) -> StoreResult<String> {
                    let (filter, next) = token_filter(q);
                    let order = if q.oldest_first { "ASC" } else { "DESC" };
                    let sql = <$store as SqlBackend>::token_page_sql(&format!("tokens{filter}"), order, next);
                    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(q.account_id);
                    if let Some(from) = q.from {
                        query = query.bind(from);
                    }
                    if let Some(until) = q.until {
                        query = query.bind(until);
                    }
                    Ok(query.bind(q.limit).bind(q.offset).bind(public_url).fetch_one(self.pool()).await?)
                }

                async fn count_tokens(&self, q: &TokenQuery) -> StoreResult<u64> {
                    let (filter, _) = token_filter(q);
                    let sql = format!("SELECT COUNT(*) FROM tokens{filter}");
                    let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(q.account_id);
                    if let Some(from) = q.from {
                        query = query.bind(from);
                    }
                    if let Some(until) = q.until {
                        query = query.bind(until);
                    }
                    Ok(u64::try_from(query.fetch_one(self.pool()).await?).unwrap_or(0))
                }

                async fn token_day_counts(&self, q: &TokenQuery) -> StoreResult<Vec<(i64, i64)>> {
                    let mut sql = String::from("SELECT day, SUM(n) AS n FROM token_day_counts WHERE account_id = $1");
                    let mut next = 2;
                    if q.from.is_some() {
                        sql.push_str(&format!(" AND day >= ${next}"));
                        next += 1;
                    }
                    if q.until.is_some() {
                        sql.push_str(&format!(" AND day < ${next}"));
                    }
                    let order = if q.oldest_first { "ASC" } else { "DESC" };
                    sql.push_str(" GROUP BY day HAVING SUM(n) > 0");
                    let sql = day_counts_sql(&sql, order);
                    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(q.account_id);
                    if let Some(from) = q.from {
                        query = query.bind(day_of(from));
                    }
                    if let Some(until) = q.until {
                        query = query.bind(day_of(until));
                    }
                    parse_day_counts(&query.fetch_one(self.pool()).await?)
                }

                async fn delete_token(
                    &self,
                    account_id: Uuid,
                    id: Uuid,
                    created_at: Ts,
                    audit: &AuditEvent,
                    outbox: &[OutboxRecord],
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    let done = sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND created_at = $2 AND id = $3")
                        .bind(account_id)
                        .bind(created_at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 1 {
                        write_carried_rows(&mut tx, outbox, id).await?;
                    }
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), outbox).await?)
                }

                async fn expired_tokens(&self, now: Ts, limit: i64) -> StoreResult<Vec<TokenRecord>> {
                    let sql = format!(
                        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1 \
                         ORDER BY expires_at LIMIT $2"
                    );
                    Ok(sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(self.pool()).await?)
                }

                async fn touch_token(
                    &self,
                    account_id: Uuid,
                    id: Uuid,
                    created_at: Ts,
                    audit: &AuditEvent,
                    outbox: &[OutboxRecord],
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    // A write that changes nothing, for the row lock: a delete of the token waits for it.
                    let done = sqlx::query(
                        "UPDATE tokens SET status = status WHERE account_id = $1 AND created_at = $2 AND id = $3",
                    )
                    .bind(account_id)
                    .bind(created_at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        write_carried_rows(&mut tx, outbox, id).await?;
                    }
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), outbox).await?)
                }
            }

            /// Before `outbox` (later events of the token `id`) is written: the token's events still
            /// carried by their delivery job become rows first (see `webhook_records::carried_rows`).
            async fn write_carried_rows(
                tx: &mut sqlx::Transaction<'_, Db>,
                outbox: &[OutboxRecord],
                id: Uuid,
            ) -> Result<(), sqlx::Error> {
                use $crate::store::webhook_records::{
                    carried_pattern, carried_rows, push_delivery_rows, CARRIED_EVENTS_JOB, CARRIED_PAYLOADS_SQL,
                    PAYLOAD_EVENTS_JOB,
                };
                if outbox.is_empty() {
                    return Ok(());
                }
                let payloads: Vec<String> = sqlx::query_scalar(CARRIED_PAYLOADS_SQL)
                    .bind(CARRIED_EVENTS_JOB)
                    .bind(carried_pattern(id))
                    .bind(PAYLOAD_EVENTS_JOB)
                    .fetch_all(&mut **tx)
                    .await?;
                let rows = carried_rows(&payloads, id);
                if rows.is_empty() {
                    return Ok(());
                }
                let mut insert = sqlx::QueryBuilder::<Db>::new("");
                push_delivery_rows(&mut insert, &rows);
                insert.push(" ON CONFLICT (id) DO NOTHING");
                insert.build().execute(&mut **tx).await?;
                Ok(())
            }
        };
    };
}

pub(crate) use impl_token_store;
