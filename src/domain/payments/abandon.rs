//! Undoing an authorization whose answer never came: the processor may have approved it (a timeout
//! after the call was sent), so before the payment fails over, or fails, a durable job written in the
//! same transaction asks that processor to find it by our ids and cancel it (or refund it, if it was
//! captured). What was undone is recorded in the payment's transactions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jobs::ABANDON_JOB;
use super::{change, next, transaction, Payments};
use crate::connectors::processor::Outcome;
use crate::jobs::JobError;
use crate::model::payment::TransactionKind;
use crate::store::{Job, NewJob, Ts};

/// What the job undoes: the authorization of a payment at one processor.
#[derive(Serialize, Deserialize)]
struct AbandonPayload {
    account_id: Uuid,
    payment_id: Uuid,
    /// The processor's key as recorded on payments (`sandbox` or a processor id).
    processor: String,
}

/// Tries over about nine minutes (the job backoff doubles from a second), as a processor's
/// search may lag its writes by a minute.
const ATTEMPTS: i32 = 10;
const GAVE_UP: &str =
    "Could not find or undo what an authorization whose answer never came may have \
                       done; look for this payment's id in the processor's records";

/// The job that undoes at `processor` whatever an unanswered authorization of `payment_id` did.
pub(super) fn abandon_job(account_id: Uuid, payment_id: Uuid, processor: &str) -> NewJob {
    let payload = AbandonPayload {
        account_id,
        payment_id,
        processor: processor.to_owned(),
    };
    NewJob {
        id: NewJob::new_id(),
        kind: ABANDON_JOB.to_owned(),
        payload: serde_json::to_string(&payload).unwrap_or_default(),
        max_attempts: ATTEMPTS,
        run_at: Ts::now(),
        lease: None,
    }
}

impl Payments {
    pub(super) async fn run_abandon(&self, job: &Job) -> Result<(), JobError> {
        let payload: AbandonPayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad payload: {e}")))?;
        let processor = self
            .router
            .processor(payload.account_id, &payload.processor)
            .await
            .ok_or_else(|| JobError::Retry("the processor is not available".into()))?;
        let name = processor.name().to_owned();
        let outcome = processor.abandon(payload.payment_id).await;
        let (record, message) = match outcome {
            Outcome::Approved { reference, .. } => (
                Outcome::Approved {
                    reference,
                    network_transaction_id: None,
                },
                format!("Undid the authorization whose answer never came (processor {name})"),
            ),
            // Asked and accepted; the processor says later how it ended (Adyen's `received`).
            Outcome::Pending { reference } => (
                Outcome::Pending { reference },
                format!(
                    "Asked to undo the authorization whose answer never came (processor {name}); \
                     it confirms later"
                ),
            ),
            Outcome::Declined { message, .. } => {
                tracing::info!(payment = %payload.payment_id, processor = %name, why = message, "nothing to undo");
                return Ok(());
            }
            Outcome::Error { message } if job.attempts < job.max_attempts => {
                return Err(JobError::Retry(message.into()))
            }
            Outcome::Error { message } => {
                tracing::warn!(payment = %payload.payment_id, processor = %name, why = message, "gave up undoing an unanswered authorization");
                (
                    Outcome::Error { message: GAVE_UP },
                    format!("{GAVE_UP} (processor {name}: {message})"),
                )
            }
        };
        self.record_undo(&payload, &record, message).await
    }

    /// Adds the undo's transaction (at the processor undone, not the payment's current one) to the
    /// payment without moving it, re-reading the payment if it moved meanwhile.
    async fn record_undo(
        &self,
        payload: &AbandonPayload,
        outcome: &Outcome,
        message: String,
    ) -> Result<(), JobError> {
        for _ in 0..20 {
            let Some(payment) = self
                .store
                .get_payment(payload.account_id, payload.payment_id)
                .await?
            else {
                return Ok(());
            };
            let mut attempt = transaction(
                &payment,
                TransactionKind::Void,
                payment.amount_requested,
                outcome,
            );
            attempt.message = Some(message.clone());
            attempt.processor = Some(payload.processor.clone());
            let mut step = change(&payment, next(&payment));
            step.transaction = Some(attempt);
            if self.apply(&mut step).await? {
                return Ok(());
            }
        }
        Err(JobError::Retry("the payment kept changing".into()))
    }
}
