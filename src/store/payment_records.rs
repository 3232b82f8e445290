//! Records of payments, refunds and processor transactions as stored, and the SQL text `PaymentStore`
//! builds from them: columns, the multi-row insert, listing filters and the day counts a write adds.

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::backend::{placeholders, SqlDb};
use super::{AuditEvent, NewJob, OutboxRecord, Ts};

/// A payment row. `version` grows with every change; changes are made only against the version read.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PaymentRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub version: i64,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub use_case: String,
    pub status: String,
    pub currency_code: String,
    pub reference: String,
    pub capture_mode: String,
    pub amount_requested: i64,
    pub amount_authorized: i64,
    pub amount_captured: i64,
    pub amount_voided: i64,
    pub amount_refunded: i64,
    /// Refunds accepted but not yet answered by the processor.
    pub amount_refund_reserved: i64,
    /// The amount of a capture in progress.
    pub capture_requested: Option<i64>,
    pub token_id: Uuid,
    /// JSON: the card's non-secret facts at the time of payment.
    pub source: String,
    pub flow_matrix_rule: String,
    pub processor: String,
    pub processor_reference: Option<String>,
    /// JSON array of `{classifier, message, source}`.
    pub failure_details: Option<String>,
    pub initial_payment_id: Option<Uuid>,
    pub recurring_frequency: Option<i32>,
    pub recurring_expiry: Option<String>,
    /// JSON object.
    pub metadata: Option<String>,
}

/// What a payment's public object shows, as a listing reads it: 18 of the 27 columns of a
/// `PaymentRecord` (`PAYMENT_LISTING_COLUMNS`, in that order), decoded by position. A page of 500 decodes
/// these and not the other nine, and looks no column up by its name.
#[derive(Clone, Debug)]
pub struct PaymentListing {
    pub id: Uuid,
    pub created_at: Ts,
    pub use_case: String,
    pub status: String,
    pub currency_code: String,
    pub reference: String,
    pub amount_requested: i64,
    pub amount_authorized: i64,
    pub amount_captured: i64,
    pub amount_voided: i64,
    pub amount_refunded: i64,
    pub source: String,
    pub flow_matrix_rule: String,
    pub failure_details: Option<String>,
    pub initial_payment_id: Option<Uuid>,
    pub recurring_frequency: Option<i32>,
    pub recurring_expiry: Option<String>,
    pub metadata: Option<String>,
}

impl From<PaymentRecord> for PaymentListing {
    fn from(p: PaymentRecord) -> Self {
        Self {
            id: p.id,
            created_at: p.created_at,
            use_case: p.use_case,
            status: p.status,
            currency_code: p.currency_code,
            reference: p.reference,
            amount_requested: p.amount_requested,
            amount_authorized: p.amount_authorized,
            amount_captured: p.amount_captured,
            amount_voided: p.amount_voided,
            amount_refunded: p.amount_refunded,
            source: p.source,
            flow_matrix_rule: p.flow_matrix_rule,
            failure_details: p.failure_details,
            initial_payment_id: p.initial_payment_id,
            recurring_frequency: p.recurring_frequency,
            recurring_expiry: p.recurring_expiry,
            metadata: p.metadata,
        }
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for PaymentListing
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    Ts: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            created_at: row.try_get(1)?,
            use_case: row.try_get(2)?,
            status: row.try_get(3)?,
            currency_code: row.try_get(4)?,
            reference: row.try_get(5)?,
            amount_requested: row.try_get(6)?,
            amount_authorized: row.try_get(7)?,
            amount_captured: row.try_get(8)?,
            amount_voided: row.try_get(9)?,
            amount_refunded: row.try_get(10)?,
            source: row.try_get(11)?,
            flow_matrix_rule: row.try_get(12)?,
            failure_details: row.try_get(13)?,
            initial_payment_id: row.try_get(14)?,
            recurring_frequency: row.try_get(15)?,
            recurring_expiry: row.try_get(16)?,
            metadata: row.try_get(17)?,
        })
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RefundRecord {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub account_id: Uuid,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub amount: i64,
    pub currency_code: String,
    pub status: String,
    pub reference: Option<String>,
    pub failure_details: Option<String>,
}

/// One call to the processor and its result.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TransactionRecord {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub created_at: Ts,
    pub kind: String,
    pub status: String,
    pub amount: i64,
    pub processor_reference: Option<String>,
    pub message: Option<String>,
    /// The processor the call went to (rows from before 0009 take their payment's).
    pub processor: Option<String>,
}

/// Everything one step of a payment's life writes, applied in one transaction: the payment (only if it
/// is still at `expected_version`), the day counts when its status moves, and the records and job that
/// go with the step.
#[derive(Clone, Debug)]
pub struct PaymentChange {
    pub payment: PaymentRecord,
    pub expected_version: i64,
    pub previous_status: String,
    pub transaction: Option<TransactionRecord>,
    pub new_refund: Option<RefundRecord>,
    /// A refund moving out of `processing`.
    pub finished_refund: Option<RefundRecord>,
    pub job: Option<NewJob>,
    /// The webhook events the step causes, written in its transaction.
    pub outbox: Vec<OutboxRecord>,
    /// The card network's id of the authorization this step records, kept on the payment for the
    /// merchant-initiated payments that continue it.
    pub network_transaction_id: Option<String>,
}

/// One write of a payment's life, as the group-commit payment writer hands them to the store: many
/// writes of many payments share one transaction (one durable commit).
// Each write is moved once, into the writer's channel: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum PaymentWrite {
    /// A new payment with its recovery job, its webhook rows and the audit of the card read it was
    /// made for.
    Insert {
        payment: PaymentRecord,
        job: Option<NewJob>,
        outbox: Vec<OutboxRecord>,
        audit: Option<AuditEvent>,
    },
    /// A step (answered `false` when the payment moved on since it was read), and a job it makes
    /// unneeded (the recovery job of an authorization now saved, held by the node that authorized),
    /// deleted in the same commit while it is queued or still held under that claim; a worker that
    /// took it over keeps it.
    Change {
        change: PaymentChange,
        retire_job: Option<super::Fence>,
    },
}

/// The steps of a batch of payment writes, with the job each retires, if every one is plain: no refund
/// in it and no other step of its payment in the batch (so that one guarded multi-row `UPDATE` tells
/// which went through). `None` otherwise: the shared path writes the batch. The rule of both backends'
/// `SqlBackend::write_payment_batch`.
pub(crate) fn plain_steps(
    writes: &[PaymentWrite],
) -> Option<Vec<(&PaymentChange, Option<&super::Fence>)>> {
    let mut seen = std::collections::HashSet::new();
    let mut steps = Vec::new();
    for write in writes {
        if let PaymentWrite::Change { change, retire_job } = write {
            let plain = change.finished_refund.is_none() && change.new_refund.is_none();
            if !plain || !seen.insert(change.payment.id) {
                return None;
            }
            steps.push((change, retire_job.as_ref()));
        }
    }
    Some(steps)
}

/// Net changes to the per-day counts of one transaction, added up so that each count row is written
/// once per commit however many payments of its account and day the commit holds.
#[derive(Default)]
pub(crate) struct DayDeltas {
    pub counts: std::collections::BTreeMap<(Uuid, i64, String, String), i64>,
    pub totals: std::collections::BTreeMap<(Uuid, i64), i64>,
}

impl DayDeltas {
    pub fn insert(&mut self, p: &PaymentRecord) {
        let day = day_of(p.created_at);
        self.count(p, &p.status, 1);
        *self.totals.entry((p.account_id, day)).or_insert(0) += 1;
    }

    pub fn count(&mut self, p: &PaymentRecord, status: &str, delta: i64) {
        let key = (
            p.account_id,
            day_of(p.created_at),
            status.to_owned(),
            p.currency_code.clone(),
        );
        *self.counts.entry(key).or_insert(0) += delta;
    }
}

/// The answer to each write of a batch whose steps' guarded `UPDATE` returned `updated`: every insert
/// was made, and a step only if its payment is among those updated.
pub(crate) fn batch_answers(
    writes: &[PaymentWrite],
    updated: &std::collections::HashSet<Uuid>,
) -> Vec<bool> {
    writes
        .iter()
        .map(|write| match write {
            PaymentWrite::Insert { .. } => true,
            PaymentWrite::Change { change, .. } => updated.contains(&change.payment.id),
        })
        .collect()
}

impl DayDeltas {
    /// Appends the counts and totals that moved as one multi-row upsert each, every statement followed
    /// by `; `, in the shard `shard` (an SQL expression): for a backend that sends a batch as one script.
    pub fn push_upserts<'a, DB>(&'a self, query: &mut QueryBuilder<'a, DB>, shard: &str)
    where
        DB: Database,
        Uuid: Encode<'a, DB> + Type<DB>,
        i64: Encode<'a, DB> + Type<DB>,
        &'a str: Encode<'a, DB> + Type<DB>,
    {
        let counts: Vec<_> = self.counts.iter().filter(|(_, n)| **n != 0).collect();
        for chunk in counts.chunks(super::backend::INSERT_CHUNK) {
            query.push("INSERT INTO payment_day_counts (account_id, day, status, currency_code, shard, n) ");
            query.push_values(chunk, |mut row, ((account, day, status, currency), n)| {
                row.push_bind(*account)
                    .push_bind(*day)
                    .push_bind(status.as_str())
                    .push_bind(currency.as_str())
                    .push(shard)
                    .push_bind(**n);
            });
            query.push(
                " ON CONFLICT (account_id, status, currency_code, day, shard) \
                 DO UPDATE SET n = payment_day_counts.n + excluded.n; ",
            );
        }
        let totals: Vec<_> = self.totals.iter().filter(|(_, n)| **n != 0).collect();
        for chunk in totals.chunks(super::backend::INSERT_CHUNK) {
            query.push("INSERT INTO payment_day_totals (account_id, day, shard, n) ");
            query.push_values(chunk, |mut row, ((account, day), n)| {
                row.push_bind(*account)
                    .push_bind(*day)
                    .push(shard)
                    .push_bind(**n);
            });
            query.push(
                " ON CONFLICT (account_id, day, shard) DO UPDATE SET n = payment_day_totals.n + excluded.n; ",
            );
        }
    }
}

/// Which payments of an account to list: created in `[from, until)`, with any of `statuses` and
/// `currencies` (empty: any).
#[derive(Clone, Debug, Default)]
pub struct PaymentFilter {
    pub account_id: Uuid,
    pub from: Option<Ts>,
    pub until: Option<Ts>,
    pub statuses: Vec<String>,
    pub currencies: Vec<String>,
}

/// The UTC day (days since 1970-01-01) of an instant.
pub fn day_of(at: Ts) -> i64 {
    at.micros().div_euclid(86_400_000_000)
}

/// The statement that answers the per-day counts `grouped` selects (`day` and its count `n`, one row a
/// day) as one text, `day n` pairs joined by commas in `order` of day (`parse_day_counts`): one value to
/// read where a row a day cost a trip through the driver each (a year of days is 365).
pub(crate) fn day_counts_sql(grouped: &str, order: &str) -> String {
    format!("SELECT COALESCE(string_agg(day || ' ' || n, ',' ORDER BY day {order}), '') FROM ({grouped}) AS d")
}

/// The `(day, count)` pairs of a `day_counts_sql` text.
pub(crate) fn parse_day_counts(text: &str) -> Result<Vec<(i64, i64)>, super::StoreError> {
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let mut parts = pair.split(' ');
            match (number(parts.next()), number(parts.next()), parts.next()) {
                (Some(day), Some(n), None) => Ok((day, n)),
                _ => Err(super::StoreError::Corrupt(format!("day count {pair:?}"))),
            }
        })
        .collect()
}

/// The first instant of a UTC day.
pub fn start_of_day(day: i64) -> Ts {
    Ts::from_micros(day.saturating_mul(86_400_000_000)).unwrap_or_else(Ts::now)
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, account_id, version, created_at, updated_at, use_case, status, \
     currency_code, reference, capture_mode, amount_requested, amount_authorized, amount_captured, amount_voided, \
     amount_refunded, amount_refund_reserved, capture_requested, token_id, source, flow_matrix_rule, processor, \
     processor_reference, failure_details, initial_payment_id, recurring_frequency, recurring_expiry, metadata";

/// The columns of a `PaymentListing`, in the order it decodes them.
pub(crate) const PAYMENT_LISTING_COLUMNS: &str = "id, created_at, use_case, status, currency_code, reference, \
     amount_requested, amount_authorized, amount_captured, amount_voided, amount_refunded, source, \
     flow_matrix_rule, failure_details, initial_payment_id, recurring_frequency, recurring_expiry, metadata";

pub(crate) const REFUND_COLUMNS: &str =
    "id, payment_id, account_id, created_at, updated_at, amount, currency_code, status, reference, failure_details";

pub(crate) const TRANSACTION_COLUMNS: &str =
    "id, payment_id, created_at, kind, status, amount, processor_reference, message, processor";

/// Adds to a day count, in the shard `shard` (an SQL expression: the backend's `SqlBackend::SHARD`).
pub(crate) fn count_add(shard: &str) -> String {
    format!(
        "INSERT INTO payment_day_counts (account_id, day, status, currency_code, shard, n) \
         VALUES ($1, $2, $3, $4, {shard}, $5) ON CONFLICT (account_id, status, currency_code, day, shard) \
         DO UPDATE SET n = payment_day_counts.n + excluded.n"
    )
}

/// Adds to a day's total, in the shard `shard`.
pub(crate) fn total_add(shard: &str) -> String {
    format!(
        "INSERT INTO payment_day_totals (account_id, day, shard, n) VALUES ($1, $2, {shard}, $3) \
         ON CONFLICT (account_id, day, shard) DO UPDATE SET n = payment_day_totals.n + excluded.n"
    )
}

/// Appends `INSERT INTO payments (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_payment_insert<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    rows: impl IntoIterator<Item = &'a PaymentRecord>,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Option<Uuid>: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    query.push(format!("INSERT INTO payments ({PAYMENT_COLUMNS}) "));
    query.push_values(rows, |mut row, p| {
        row.push_bind(p.id)
            .push_bind(p.account_id)
            .push_bind(p.version)
            .push_bind(p.created_at)
            .push_bind(p.updated_at)
            .push_bind(p.use_case.as_str())
            .push_bind(p.status.as_str())
            .push_bind(p.currency_code.as_str())
            .push_bind(p.reference.as_str())
            .push_bind(p.capture_mode.as_str())
            .push_bind(p.amount_requested)
            .push_bind(p.amount_authorized)
            .push_bind(p.amount_captured)
            .push_bind(p.amount_voided)
            .push_bind(p.amount_refunded)
            .push_bind(p.amount_refund_reserved)
            .push_bind(p.capture_requested)
            .push_bind(p.token_id)
            .push_bind(p.source.as_str())
            .push_bind(p.flow_matrix_rule.as_str())
            .push_bind(p.processor.as_str())
            .push_bind(p.processor_reference.as_deref())
            .push_bind(p.failure_details.as_deref())
            .push_bind(p.initial_payment_id)
            .push_bind(p.recurring_frequency)
            .push_bind(p.recurring_expiry.as_deref())
            .push_bind(p.metadata.as_deref());
    });
}

/// `WHERE` for a payment listing: `$1` account, then `from`, `until`, the statuses and the currencies, in
/// that order, each only when present; returns the next free placeholder number.
pub(crate) fn payment_filter(
    filter: &PaymentFilter,
    column: &str,
    first: usize,
) -> (String, usize) {
    let mut sql = String::from(" WHERE account_id = $1");
    let mut next = first;
    if filter.from.is_some() {
        sql.push_str(&format!(" AND {column} >= ${next}"));
        next += 1;
    }
    if filter.until.is_some() {
        sql.push_str(&format!(" AND {column} < ${next}"));
        next += 1;
    }
    if !filter.statuses.is_empty() {
        sql.push_str(&format!(
            " AND status IN ({})",
            placeholders(next, filter.statuses.len())
        ));
        next += filter.statuses.len();
    }
    if !filter.currencies.is_empty() {
        sql.push_str(&format!(
            " AND currency_code IN ({})",
            placeholders(next, filter.currencies.len())
        ));
        next += filter.currencies.len();
    }
    (sql, next)
}

/// Inserts one processor transaction of a payment, inside the transaction of the step that made it.
pub(crate) async fn write_transaction<DB>(
    conn: &mut DB::Connection,
    t: &TransactionRecord,
) -> Result<(), sqlx::Error>
where
    DB: SqlDb,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    write_transactions::<DB>(conn, &[t]).await
}

/// Inserts transaction rows in multi-row statements (a group commit's steps share them).
pub(crate) async fn write_transactions<DB>(
    conn: &mut DB::Connection,
    rows: &[&TransactionRecord],
) -> Result<(), sqlx::Error>
where
    DB: SqlDb,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    for chunk in rows.chunks(super::backend::INSERT_CHUNK) {
        let mut insert = QueryBuilder::<DB>::new("");
        push_transaction_insert(&mut insert, chunk.iter().copied());
        DB::execute_built(conn, &mut insert).await?;
    }
    Ok(())
}

/// Appends `INSERT INTO payment_transactions (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_transaction_insert<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    rows: impl IntoIterator<Item = &'a TransactionRecord>,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    query.push(format!(
        "INSERT INTO payment_transactions ({TRANSACTION_COLUMNS}) "
    ));
    query.push_values(rows, |mut row, t| {
        row.push_bind(t.id)
            .push_bind(t.payment_id)
            .push_bind(t.created_at)
            .push_bind(t.kind.as_str())
            .push_bind(t.status.as_str())
            .push_bind(t.amount)
            .push_bind(t.processor_reference.as_deref())
            .push_bind(t.message.as_deref())
            .push_bind(t.processor.as_deref());
    });
}

/// Appends one `UPDATE payments … FROM (VALUES …) … RETURNING payments.id` for the steps `steps` (each of
/// a different payment) to `query`: each payment row moves only from the version its step read, and
/// the ids returned are those that did.
pub(crate) fn push_payments_update<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    steps: impl IntoIterator<Item = &'a PaymentChange>,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "UPDATE payments SET version = v.column3, updated_at = v.column4, status = v.column5, \
         amount_authorized = v.column6, amount_captured = v.column7, amount_voided = v.column8, \
         amount_refunded = v.column9, amount_refund_reserved = v.column10, \
         capture_requested = v.column11, processor_reference = v.column12, \
         failure_details = v.column13, \
         network_transaction_id = COALESCE(v.column14, network_transaction_id) FROM (",
    );
    query.push_values(steps, |mut row, c| {
        let p = &c.payment;
        row.push_bind(p.id)
            .push_bind(c.expected_version)
            .push_bind(p.version)
            .push_bind(p.updated_at)
            .push_bind(p.status.as_str())
            .push_bind(p.amount_authorized)
            .push_bind(p.amount_captured)
            .push_bind(p.amount_voided)
            .push_bind(p.amount_refunded)
            .push_bind(p.amount_refund_reserved)
            .push_bind(p.capture_requested)
            .push_bind(p.processor_reference.as_deref())
            .push_bind(p.failure_details.as_deref())
            .push_bind(c.network_transaction_id.as_deref());
    });
    query.push(
        ") AS v WHERE payments.id = v.column1 AND payments.version = v.column2 \
         RETURNING payments.id",
    );
}

#[cfg(test)]
mod tests {
    use super::parse_day_counts;

    #[test]
    fn day_counts_read_back_from_their_text() {
        assert_eq!(parse_day_counts("").unwrap(), vec![]);
        assert_eq!(
            parse_day_counts("20600 3,20598 1200,-1 7").unwrap(),
            vec![(20600, 3), (20598, 1200), (-1, 7)]
        );
        for bad in ["20600", "20600 x", "20600 3 4", "20600 3,,1 2", ","] {
            assert!(parse_day_counts(bad).is_err(), "{bad}");
        }
    }
}
