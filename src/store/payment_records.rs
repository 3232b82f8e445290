//! Records of payments, refunds and processor transactions as stored.

use uuid::Uuid;

use super::{NewJob, OutboxRecord, Ts};

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

/// The first instant of a UTC day.
pub fn start_of_day(day: i64) -> Ts {
    Ts::from_micros(day.saturating_mul(86_400_000_000)).unwrap_or_else(Ts::now)
}
