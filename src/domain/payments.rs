//! Payments: creation on a token through the routed processor, and the status machine
//! `processing → authorized | captured | failed`, `authorized → capturing → captured`,
//! `authorized → voiding → voided`, `captured → settling → settled`, with refunds as objects of their own
//! (`processing → completed | failed`). Every move is one atomic change made against the version read;
//! moves that talk to the processor after the answer (capture, void, refund, settlement) run as durable
//! jobs, written in the same transaction as the move that asks for them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::payment_input::PaymentInput;
use super::processor::{Authorization, Outcome, Router};
use super::tokens::{TokenError, Tokens};
use super::webhooks::Webhooks;
use crate::jobs::{JobError, JobHandler};
use crate::store::{
    start_of_day, DynStore, Job, NewJob, PaymentChange, PaymentFilter, PaymentRecord, RefundRecord,
    StoreError, TransactionRecord, Ts,
};

pub const STATUSES: [&str; 10] = [
    "open",
    "processing",
    "failed",
    "authorized",
    "capturing",
    "captured",
    "settling",
    "settled",
    "voiding",
    "voided",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseCase {
    OneOff,
    Unscheduled,
    SubsequentUnscheduled,
    Recurring,
    SubsequentRecurring,
}

impl UseCase {
    pub fn as_str(&self) -> &'static str {
        match self {
            UseCase::OneOff => "ONE_OFF",
            UseCase::Unscheduled => "UNSCHEDULED",
            UseCase::SubsequentUnscheduled => "SUBSEQUENT_UNSCHEDULED",
            UseCase::Recurring => "RECURRING",
            UseCase::SubsequentRecurring => "SUBSEQUENT_RECURRING",
        }
    }

    /// Whether the cardholder takes part (and so the security code may be used).
    fn customer_initiated(&self) -> bool {
        matches!(
            self,
            UseCase::OneOff | UseCase::Unscheduled | UseCase::Recurring
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("not found")]
    NotFound,
    /// The request names something that does not fit: a JSON path and a message.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The payment is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a payment job works on.
#[derive(Serialize, Deserialize)]
struct JobPayload {
    account_id: Uuid,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
}

pub const AUTHORIZE_JOB: &str = "payment.authorize";
pub const CAPTURE_JOB: &str = "payment.capture";
pub const VOID_JOB: &str = "payment.void";
pub const SETTLE_JOB: &str = "payment.settle";
pub const REFUND_JOB: &str = "refund.process";
const JOB_ATTEMPTS: i32 = 10;
/// When the authorization of a new payment is picked up again if the node that took it died.
const AUTHORIZE_RECOVERY_AFTER: Duration = Duration::from_secs(60);

pub struct Payments {
    store: DynStore,
    tokens: Arc<Tokens>,
    router: Router,
    settle_after: Duration,
    webhooks: Arc<Webhooks>,
}

fn new_job(kind: &str, payload: &JobPayload, run_at: Ts) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        kind: kind.to_owned(),
        payload: serde_json::to_string(payload).unwrap_or_default(),
        max_attempts: JOB_ATTEMPTS,
        run_at,
    }
}

fn transaction(payment_id: Uuid, kind: &str, amount: i64, outcome: &Outcome) -> TransactionRecord {
    let (status, reference, message) = match outcome {
        Outcome::Approved { reference } => ("success", Some(reference.clone()), None),
        Outcome::Declined { message, .. } => ("failure", None, Some((*message).to_owned())),
        Outcome::Error { message } => ("failure", None, Some((*message).to_owned())),
    };
    TransactionRecord {
        id: Uuid::new_v4(),
        payment_id,
        created_at: Ts::now(),
        kind: kind.to_owned(),
        status: status.to_owned(),
        amount,
        processor_reference: reference,
        message,
    }
}

fn failure_details(outcome: &Outcome) -> Option<String> {
    let (classifier, message) = match outcome {
        Outcome::Approved { .. } => return None,
        Outcome::Declined {
            classifier,
            message,
        } => (*classifier, *message),
        Outcome::Error { message } => ("PROCESSOR_ERROR", *message),
    };
    Some(json!([{"classifier": classifier, "message": message, "source": "processor"}]).to_string())
}

/// The next version of a payment, to be changed and saved against `previous`.
fn next(previous: &PaymentRecord) -> PaymentRecord {
    PaymentRecord {
        version: previous.version + 1,
        updated_at: Ts::now(),
        ..previous.clone()
    }
}

fn change(previous: &PaymentRecord, payment: PaymentRecord) -> PaymentChange {
    PaymentChange {
        expected_version: previous.version,
        previous_status: previous.status.clone(),
        payment,
        transaction: None,
        new_refund: None,
        finished_refund: None,
        job: None,
        outbox: Vec::new(),
    }
}

impl Payments {
    pub fn new(
        store: DynStore,
        tokens: Arc<Tokens>,
        router: Router,
        settle_after: Duration,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        Self {
            store,
            tokens,
            router,
            settle_after,
            webhooks,
        }
    }

    /// Saves one step with the webhook events it causes, in one transaction.
    async fn apply(&self, step: &mut PaymentChange) -> Result<bool, StoreError> {
        step.outbox = self.webhooks.payment_change(step).await?;
        self.store.apply_payment_change(step).await
    }

    pub async fn get(&self, account_id: Uuid, id: Uuid) -> Result<PaymentRecord, PaymentError> {
        self.store
            .get_payment(account_id, id)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    /// Creates a payment and authorizes it through the routed processor before answering. `initial` is the
    /// earlier payment of a merchant-initiated one.
    pub async fn create(
        &self,
        account_id: Uuid,
        actor: &str,
        use_case: UseCase,
        input: PaymentInput,
        initial: Option<Uuid>,
    ) -> Result<PaymentRecord, PaymentError> {
        let (token_id, currency_code, initial_id) = match initial {
            None => (
                input.token_id.ok_or(PaymentError::Invalid(
                    "$.source.token_id",
                    "is required".into(),
                ))?,
                input.currency_code.clone().ok_or(PaymentError::Invalid(
                    "$.currency_code",
                    "is required".into(),
                ))?,
                None,
            ),
            Some(initial_id) => {
                let initial = self.get(account_id, initial_id).await?;
                self.check_initial(&initial, use_case, &input)?;
                (
                    initial.token_id,
                    initial.currency_code.clone(),
                    Some(initial.id),
                )
            }
        };
        let token = self
            .tokens
            .get(account_id, token_id)
            .await?
            .ok_or_else(|| {
                PaymentError::Invalid(
                    "$.source.token_id",
                    "no token of this account has this id".into(),
                )
            })?;
        let (rule, processor) = self.router.route(&currency_code);
        let now = Ts::now();
        let source = card_source(&token);
        let payment = PaymentRecord {
            id: Uuid::new_v4(),
            account_id,
            version: 1,
            created_at: now,
            updated_at: now,
            use_case: use_case.as_str().to_owned(),
            status: "processing".to_owned(),
            currency_code,
            reference: input.reference,
            capture_mode: if input.manual_capture {
                "manual"
            } else {
                "automatic"
            }
            .to_owned(),
            amount_requested: input.amount,
            amount_authorized: 0,
            amount_captured: 0,
            amount_voided: 0,
            amount_refunded: 0,
            amount_refund_reserved: 0,
            capture_requested: None,
            token_id,
            source,
            flow_matrix_rule: rule.to_owned(),
            processor: processor.name().to_owned(),
            processor_reference: None,
            failure_details: None,
            initial_payment_id: initial_id,
            recurring_frequency: input.recurring_frequency,
            recurring_expiry: input.recurring_expiry,
            metadata: input
                .metadata
                .map(|m| serde_json::Value::Object(m).to_string()),
        };
        // The recovery job runs only if this node dies before the authorization is saved.
        let payload = JobPayload {
            account_id,
            payment_id: payment.id,
            refund_id: None,
        };
        let recovery = new_job(AUTHORIZE_JOB, &payload, now.plus(AUTHORIZE_RECOVERY_AFTER));
        let outbox = self.webhooks.payment_created(&payment).await?;
        self.store
            .insert_payment(&payment, Some(&recovery), &outbox)
            .await?;
        // From here on the payment exists: a failure must not answer 5xx (the client would retry with
        // its idempotency key and make a second payment), since the recovery job finishes this one.
        match self
            .authorize(&payment, actor, use_case.customer_initiated())
            .await
        {
            Ok(authorized) => Ok(authorized),
            Err(err) => {
                tracing::warn!(payment = %payment.id, error = %err, "authorization not saved; recovery will finish it");
                Ok(self
                    .store
                    .get_payment(account_id, payment.id)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(payment))
            }
        }
    }

    fn check_initial(
        &self,
        initial: &PaymentRecord,
        use_case: UseCase,
        input: &PaymentInput,
    ) -> Result<(), PaymentError> {
        let expected = match use_case {
            UseCase::SubsequentUnscheduled => UseCase::Unscheduled,
            _ => UseCase::Recurring,
        };
        if initial.use_case != expected.as_str() {
            return Err(PaymentError::NotFound);
        }
        if initial.amount_authorized == 0 {
            return Err(PaymentError::Conflict(
                "The initial payment was never authorized".into(),
            ));
        }
        if input.amount > initial.amount_requested {
            return Err(PaymentError::Invalid(
                "$.amount",
                "must not exceed the amount of the initial payment".into(),
            ));
        }
        if input
            .currency_code
            .as_deref()
            .is_some_and(|c| c != initial.currency_code)
        {
            return Err(PaymentError::Invalid(
                "$.currency_code",
                "must be the currency of the initial payment".into(),
            ));
        }
        Ok(())
    }

    /// Authorizes a payment still `processing` and saves the outcome; used at creation and by recovery.
    async fn authorize(
        &self,
        payment: &PaymentRecord,
        actor: &str,
        customer_present: bool,
    ) -> Result<PaymentRecord, PaymentError> {
        let token = self
            .tokens
            .get(payment.account_id, payment.token_id)
            .await?;
        let processor = self.router.processor(&payment.processor);
        let outcome = match (token, processor) {
            (Some(token), Some(processor)) => {
                let card = self.tokens.open(payment.account_id, actor, &token).await?;
                let code = if customer_present {
                    self.tokens.cvc.take(payment.account_id, token.id).await
                } else {
                    None
                };
                let capture = payment.capture_mode == "automatic";
                let request = Authorization {
                    payment_id: payment.id,
                    amount: payment.amount_requested,
                    currency_code: &payment.currency_code,
                    card: &card,
                    security_code: code.as_ref(),
                    capture,
                };
                processor.authorize(&request).await
            }
            (None, _) => Outcome::Declined {
                classifier: "TOKEN_DELETED",
                message: "The token was deleted",
            },
            (_, None) => Outcome::Error {
                message: "The processor of this payment is not configured",
            },
        };
        let mut updated = next(payment);
        let mut settle = None;
        match &outcome {
            Outcome::Approved { reference } => {
                updated.amount_authorized = payment.amount_requested;
                updated.processor_reference = Some(reference.clone());
                if payment.capture_mode == "automatic" {
                    updated.status = "captured".into();
                    updated.amount_captured = payment.amount_requested;
                    settle = Some(self.settle_job(payment));
                } else {
                    updated.status = "authorized".into();
                }
            }
            _ => {
                updated.status = "failed".into();
                updated.failure_details = failure_details(&outcome);
            }
        }
        let mut step = change(payment, updated.clone());
        step.transaction = Some(transaction(
            payment.id,
            "authorization",
            payment.amount_requested,
            &outcome,
        ));
        step.job = settle;
        if self.apply(&mut step).await? {
            Ok(updated)
        } else {
            // Recovery got there first: answer with what is stored.
            self.get(payment.account_id, payment.id).await
        }
    }

    fn settle_job(&self, payment: &PaymentRecord) -> NewJob {
        let payload = JobPayload {
            account_id: payment.account_id,
            payment_id: payment.id,
            refund_id: None,
        };
        new_job(SETTLE_JOB, &payload, Ts::now().plus(self.settle_after))
    }

    /// Starts a capture of `amount` (default: all that was authorized); once per payment.
    pub async fn capture(
        &self,
        account_id: Uuid,
        id: Uuid,
        amount: Option<i64>,
    ) -> Result<PaymentRecord, PaymentError> {
        let payment = self.get(account_id, id).await?;
        if payment.status != "authorized" {
            return Err(PaymentError::Conflict(format!(
                "A payment that is {} cannot be captured",
                payment.status
            )));
        }
        let amount = amount.unwrap_or(payment.amount_authorized);
        if amount > payment.amount_authorized {
            return Err(PaymentError::Invalid(
                "$.amount",
                "must not exceed the authorized amount".into(),
            ));
        }
        let mut updated = next(&payment);
        updated.status = "capturing".into();
        updated.capture_requested = Some(amount);
        self.save_with_job(&payment, updated, CAPTURE_JOB, None)
            .await
    }

    pub async fn void(&self, account_id: Uuid, id: Uuid) -> Result<PaymentRecord, PaymentError> {
        let payment = self.get(account_id, id).await?;
        if payment.status != "authorized" {
            return Err(PaymentError::Conflict(format!(
                "A payment that is {} cannot be voided",
                payment.status
            )));
        }
        let mut updated = next(&payment);
        updated.status = "voiding".into();
        self.save_with_job(&payment, updated, VOID_JOB, None).await
    }

    /// Accepts a refund of `amount` (default: all that is left) and reserves it against the payment.
    pub async fn refund(
        &self,
        account_id: Uuid,
        id: Uuid,
        amount: Option<i64>,
        reference: Option<String>,
    ) -> Result<RefundRecord, PaymentError> {
        let payment = self.get(account_id, id).await?;
        if !["captured", "settling", "settled"].contains(&payment.status.as_str()) {
            return Err(PaymentError::Conflict(format!(
                "A payment that is {} cannot be refunded",
                payment.status
            )));
        }
        let refundable =
            payment.amount_captured - payment.amount_refunded - payment.amount_refund_reserved;
        let amount = amount.unwrap_or(refundable);
        if refundable <= 0 {
            return Err(PaymentError::Conflict(
                "The payment has been refunded in full".into(),
            ));
        }
        if amount > refundable {
            return Err(PaymentError::Invalid(
                "$.amount",
                format!("must not exceed the refundable amount of {refundable}"),
            ));
        }
        let now = Ts::now();
        let refund = RefundRecord {
            id: Uuid::new_v4(),
            payment_id: payment.id,
            account_id,
            created_at: now,
            updated_at: now,
            amount,
            currency_code: payment.currency_code.clone(),
            status: "processing".into(),
            reference,
            failure_details: None,
        };
        let mut updated = next(&payment);
        updated.amount_refund_reserved += amount;
        let payload = JobPayload {
            account_id,
            payment_id: payment.id,
            refund_id: Some(refund.id),
        };
        let mut step = change(&payment, updated);
        step.new_refund = Some(refund.clone());
        step.job = Some(new_job(REFUND_JOB, &payload, now));
        if !self.apply(&mut step).await? {
            return Err(PaymentError::Conflict(
                "The payment changed while the refund was made; retry".into(),
            ));
        }
        Ok(refund)
    }

    async fn save_with_job(
        &self,
        previous: &PaymentRecord,
        updated: PaymentRecord,
        kind: &str,
        refund_id: Option<Uuid>,
    ) -> Result<PaymentRecord, PaymentError> {
        let payload = JobPayload {
            account_id: previous.account_id,
            payment_id: previous.id,
            refund_id,
        };
        let mut step = change(previous, updated.clone());
        step.job = Some(new_job(kind, &payload, Ts::now()));
        if self.apply(&mut step).await? {
            Ok(updated)
        } else {
            Err(PaymentError::Conflict(
                "The payment changed while this request was handled; retry".into(),
            ))
        }
    }

    pub async fn get_refund(
        &self,
        account_id: Uuid,
        id: Uuid,
    ) -> Result<RefundRecord, PaymentError> {
        self.store
            .get_refund(account_id, id)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    pub async fn refunds(
        &self,
        account_id: Uuid,
        id: Uuid,
    ) -> Result<Vec<RefundRecord>, PaymentError> {
        let payment = self.get(account_id, id).await?;
        Ok(self.store.list_refunds(payment.id).await?)
    }

    pub async fn transactions(
        &self,
        account_id: Uuid,
        id: Uuid,
    ) -> Result<Vec<TransactionRecord>, PaymentError> {
        let payment = self.get(account_id, id).await?;
        Ok(self.store.list_transactions(payment.id).await?)
    }

    /// One page of matching payments, newest first, and the total. The per-day counts give the total and
    /// tell which days the page lies in, so the database reads only those days, however deep the page.
    pub async fn list(
        &self,
        filter: &PaymentFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<PaymentRecord>, u64), PaymentError> {
        let days = self.store.payment_day_counts(filter).await?;
        let total: i64 = days.iter().map(|(_, n)| n).sum();
        if offset >= total {
            return Ok((Vec::new(), total as u64));
        }
        let (mut skipped, mut start, mut end) = (0i64, None, None);
        let mut seen = 0i64;
        for (day, n) in &days {
            if start.is_none() && seen + n > offset {
                start = Some(*day);
                skipped = offset - seen;
            }
            seen += n;
            if start.is_some() && seen >= offset + limit {
                end = Some(*day);
                break;
            }
        }
        let upper = start.map(|d| start_of_day(d + 1));
        let lower = end.map(start_of_day).or(filter.from);
        let rows = self
            .store
            .list_payments_between(filter, lower, upper, limit, skipped)
            .await?;
        Ok((rows, total as u64))
    }

    /// Runs one step of a payment job.
    async fn run_job(&self, kind: &str, job: &Job) -> Result<(), JobError> {
        let payload: JobPayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad payload: {e}")))?;
        let Some(payment) = self
            .store
            .get_payment(payload.account_id, payload.payment_id)
            .await?
        else {
            return Ok(());
        };
        let processor = self.router.processor(&payment.processor).ok_or_else(|| {
            JobError::Fatal("the processor of this payment is not configured".into())
        })?;
        let reference = payment.processor_reference.clone().unwrap_or_default();
        let mut updated = next(&payment);
        let mut step_job = None;
        let (transaction_kind, amount, outcome) = match (kind, payment.status.as_str()) {
            (AUTHORIZE_JOB, "processing") => {
                self.authorize(&payment, "job:recovery", false)
                    .await
                    .map_err(|e| JobError::Retry(e.to_string()))?;
                return Ok(());
            }
            (CAPTURE_JOB, "capturing") => {
                let amount = payment
                    .capture_requested
                    .unwrap_or(payment.amount_authorized);
                let outcome = processor.capture(payment.id, &reference, amount).await;
                match &outcome {
                    Outcome::Approved { .. } => {
                        updated.status = "captured".into();
                        updated.amount_captured = amount;
                        updated.capture_requested = None;
                        step_job = Some(self.settle_job(&payment));
                    }
                    Outcome::Declined { .. } => {
                        updated.status = "authorized".into();
                        updated.capture_requested = None;
                    }
                    Outcome::Error { message } => return Err(JobError::Retry((*message).into())),
                }
                ("capture", amount, outcome)
            }
            (VOID_JOB, "voiding") => {
                let outcome = processor.void(payment.id, &reference).await;
                match &outcome {
                    Outcome::Approved { .. } => {
                        updated.status = "voided".into();
                        updated.amount_voided = payment.amount_authorized;
                    }
                    Outcome::Declined { .. } => updated.status = "authorized".into(),
                    Outcome::Error { message } => return Err(JobError::Retry((*message).into())),
                }
                ("void", payment.amount_authorized, outcome)
            }
            (SETTLE_JOB, "captured") => {
                // Only a status move: the settlement transaction is recorded once, when it completes.
                updated.status = "settling".into();
                let mut step = change(&payment, updated);
                step.job = Some(new_job(SETTLE_JOB, &payload, Ts::now()));
                return match self.apply(&mut step).await? {
                    true => Ok(()),
                    false => Err(JobError::Retry("the payment changed meanwhile".into())),
                };
            }
            (SETTLE_JOB, "settling") => {
                updated.status = "settled".into();
                (
                    "settlement",
                    payment.amount_captured,
                    Outcome::Approved {
                        reference: reference.clone(),
                    },
                )
            }
            (REFUND_JOB, _) => return self.run_refund(&payment, &payload, &*processor).await,
            // Already moved on (a retry after a crash, or another node): nothing left to do.
            _ => return Ok(()),
        };
        let mut step = change(&payment, updated);
        step.transaction = Some(transaction(payment.id, transaction_kind, amount, &outcome));
        step.job = step_job;
        if self.apply(&mut step).await? {
            Ok(())
        } else {
            Err(JobError::Retry("the payment changed meanwhile".into()))
        }
    }

    async fn run_refund(
        &self,
        payment: &PaymentRecord,
        payload: &JobPayload,
        processor: &dyn super::processor::Processor,
    ) -> Result<(), JobError> {
        let Some(refund_id) = payload.refund_id else {
            return Err(JobError::Fatal("refund job without a refund".into()));
        };
        let Some(refund) = self.store.get_refund(payment.account_id, refund_id).await? else {
            return Ok(());
        };
        if refund.status != "processing" {
            return Ok(());
        }
        let outcome = processor
            .refund(
                refund.id,
                payment.processor_reference.as_deref().unwrap_or(""),
                refund.amount,
            )
            .await;
        let mut finished = RefundRecord {
            updated_at: Ts::now(),
            ..refund.clone()
        };
        match &outcome {
            Outcome::Approved { .. } => finished.status = "completed".into(),
            Outcome::Declined { .. } => {
                finished.status = "failed".into();
                finished.failure_details = failure_details(&outcome);
            }
            Outcome::Error { message } => return Err(JobError::Retry((*message).into())),
        }
        // The processor has answered: record that answer, re-reading the payment if another refund moved
        // it meanwhile, and never ask the processor again for this refund.
        let mut current = payment.clone();
        for _ in 0..20 {
            let mut updated = next(&current);
            updated.amount_refund_reserved -= refund.amount;
            if finished.status == "completed" {
                updated.amount_refunded += refund.amount;
            }
            let mut step = change(&current, updated);
            step.transaction = Some(transaction(payment.id, "refund", refund.amount, &outcome));
            step.finished_refund = Some(finished.clone());
            if self.apply(&mut step).await? {
                return Ok(());
            }
            match self.store.get_refund(payment.account_id, refund.id).await? {
                Some(r) if r.status == "processing" => {}
                _ => return Ok(()),
            }
            current = self
                .store
                .get_payment(payment.account_id, payment.id)
                .await?
                .ok_or_else(|| JobError::Fatal("the payment disappeared".into()))?;
        }
        Err(JobError::Fatal(
            "the refund's answer could not be recorded".into(),
        ))
    }
}

/// A job handler for one kind of payment step.
pub struct PaymentStep {
    kind: &'static str,
    payments: Arc<Payments>,
}

impl PaymentStep {
    pub fn all(payments: &Arc<Payments>) -> Vec<Arc<dyn JobHandler>> {
        [AUTHORIZE_JOB, CAPTURE_JOB, VOID_JOB, SETTLE_JOB, REFUND_JOB]
            .into_iter()
            .map(|kind| {
                Arc::new(PaymentStep {
                    kind,
                    payments: payments.clone(),
                }) as Arc<dyn JobHandler>
            })
            .collect()
    }
}

#[async_trait]
impl JobHandler for PaymentStep {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn run(&self, job: &Job) -> Result<(), JobError> {
        self.payments.run_job(self.kind, job).await
    }
}

/// The `source` of a payment on `token`: the card's non-secret facts as JSON, without empty fields.
fn card_source(token: &crate::store::TokenRecord) -> String {
    let mut source = json!({
        "type": "card",
        "expiry_month": token.expiry_month,
        "expiry_year": token.expiry_year,
        "masked_account_number": token.masked_account_number,
        "pan_type": "FPAN",
        "issuer": {"identification_number": token.issuer_identification_number, "scheme": token.scheme},
    });
    if let Some(name) = &token.cardholder_name {
        source["cardholder_name"] = json!(name);
    }
    source.to_string()
}

/// Realistic payments for demos and benchmarks: spread over the `days` before `now`, in several
/// currencies and every status, on one token of the account.
pub fn synthetic_payments(
    rng: &mut impl rand::Rng,
    account_id: Uuid,
    token: &crate::store::TokenRecord,
    now: Ts,
    days: u32,
    count: usize,
) -> Vec<PaymentRecord> {
    const CURRENCIES: [(&str, u32); 5] = [
        ("EUR", 40),
        ("USD", 30),
        ("GBP", 15),
        ("CHF", 10),
        ("JPY", 5),
    ];
    const STATUSES: [(&str, u32); 9] = [
        ("captured", 35),
        ("settled", 25),
        ("authorized", 14),
        ("failed", 10),
        ("voided", 8),
        ("settling", 3),
        ("processing", 2),
        ("capturing", 2),
        ("voiding", 1),
    ];
    fn pick<'a>(rng: &mut impl rand::Rng, weighted: &[(&'a str, u32)]) -> &'a str {
        let mut n = rng.gen_range(0..weighted.iter().map(|(_, w)| w).sum::<u32>());
        for (value, weight) in weighted {
            if n < *weight {
                return value;
            }
            n -= weight;
        }
        weighted[0].0
    }
    let source = card_source(token);
    let span_micros = i64::from(days.max(1)) * 86_400_000_000;
    (0..count)
        .map(|_| {
            let created_at = Ts::from_micros(now.micros() - rng.gen_range(0..span_micros)).unwrap_or(now);
            let status = pick(rng, &STATUSES);
            let amount = rng.gen_range(100..200_000i64);
            let authorized = if ["failed", "processing"].contains(&status) { 0 } else { amount };
            let captured = if ["captured", "settled", "settling"].contains(&status) { amount } else { 0 };
            let refunded = if captured > 0 && rng.gen_ratio(1, 10) { captured / 2 } else { 0 };
            PaymentRecord {
                id: Uuid::new_v4(),
                account_id,
                version: 1,
                created_at,
                updated_at: created_at,
                use_case: ["ONE_OFF", "UNSCHEDULED", "RECURRING"][rng.gen_range(0..3)].to_owned(),
                status: status.to_owned(),
                currency_code: pick(rng, &CURRENCIES).to_owned(),
                reference: format!("Order #{}", rng.gen_range(100_000..999_999)),
                capture_mode: if captured > 0 { "automatic" } else { "manual" }.to_owned(),
                amount_requested: amount,
                amount_authorized: authorized,
                amount_captured: captured,
                amount_voided: if status == "voided" { amount } else { 0 },
                amount_refunded: refunded,
                amount_refund_reserved: 0,
                capture_requested: (status == "capturing").then_some(amount),
                token_id: token.id,
                source: source.clone(),
                flow_matrix_rule: "default: all payments to sandbox".to_owned(),
                processor: "sandbox".to_owned(),
                processor_reference: (authorized > 0).then(|| format!("sbx_seed_{}", rng.gen::<u64>())),
                failure_details: (status == "failed").then(|| {
                    json!([{"classifier": "DECLINED", "message": "The issuer declined the payment", "source": "processor"}])
                        .to_string()
                }),
                initial_payment_id: None,
                recurring_frequency: None,
                recurring_expiry: None,
                metadata: None,
            }
        })
        .collect()
}
