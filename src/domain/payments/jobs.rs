//! The durable jobs that finish a payment's moves with the processor: recovery of an authorization,
//! capture, void, settlement and refunds. Each job acts only if the payment is still where the job
//! expects it, so a retry after a crash, or a second node, does nothing twice.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    change, failure_details, next, refund_status, set_status, state, status, transaction,
    InternalError, PaymentError, Payments,
};
use crate::connectors::processor::{Outcome, Processor};
use crate::jobs::{JobError, JobHandler, Ran};
use crate::model::payment::{PaymentStatus, RefundStatus, TransactionKind};
use crate::store::{Job, NewJob, PaymentRecord, RefundRecord, Ts};

/// What a payment job works on.
#[derive(Serialize, Deserialize)]
pub(super) struct JobPayload {
    pub account_id: Uuid,
    pub payment_id: Uuid,
    pub refund_id: Option<Uuid>,
}

pub const AUTHORIZE_JOB: &str = "payment.authorize";
pub const CAPTURE_JOB: &str = "payment.capture";
pub const VOID_JOB: &str = "payment.void";
pub const SETTLE_JOB: &str = "payment.settle";
pub const REFUND_JOB: &str = "refund.process";
pub const ABANDON_JOB: &str = "payment.abandon";
const JOB_ATTEMPTS: i32 = 10;

pub(super) fn new_job(kind: &str, payload: &JobPayload, run_at: Ts) -> NewJob {
    NewJob {
        id: NewJob::new_id(),
        kind: kind.to_owned(),
        payload: serde_json::to_string(payload).unwrap_or_default(),
        max_attempts: JOB_ATTEMPTS,
        run_at,
        lease: None,
    }
}

impl Payments {
    pub(super) fn settle_job(&self, payment: &PaymentRecord) -> NewJob {
        let payload = JobPayload {
            account_id: payment.account_id,
            payment_id: payment.id,
            refund_id: None,
        };
        new_job(SETTLE_JOB, &payload, Ts::now().plus(self.settle_after))
    }

    /// Runs one step of a payment job.
    async fn run_job(&self, kind: &str, job: &Job) -> Result<(), JobError> {
        use PaymentStatus as P;
        if kind == ABANDON_JOB {
            return self.run_abandon(job).await;
        }
        let payload: JobPayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad payload: {e}")))?;
        let Some(payment) = self
            .store
            .get_payment(payload.account_id, payload.payment_id)
            .await?
        else {
            return Ok(());
        };
        // Capture, void and refunds go to the processor that authorized the payment, and no other.
        let processor = match kind {
            AUTHORIZE_JOB | SETTLE_JOB => None,
            _ => Some(
                self.router
                    .processor(payment.account_id, &payment.processor)
                    .await
                    .ok_or_else(|| {
                        JobError::Retry("the processor of this payment is not available".into())
                    })?,
            ),
        };
        let processor = || {
            processor
                .clone()
                .ok_or_else(|| JobError::Fatal("no processor for this step".into()))
        };
        let reference = payment.processor_reference.clone().unwrap_or_default();
        let mut updated = next(&payment);
        let mut step_job = None;
        let (transaction_kind, amount, outcome) = match (kind, status(&payment)?) {
            (AUTHORIZE_JOB, P::Processing) => {
                self.authorize(&payment, "job:recovery", false)
                    .await
                    .map_err(|e| JobError::Retry(e.to_string()))?;
                return Ok(());
            }
            (CAPTURE_JOB, P::Capturing) => {
                let amount = payment
                    .capture_requested
                    .unwrap_or(payment.amount_authorized);
                let outcome = processor()?
                    .capture(
                        payment.id,
                        payment.version,
                        &reference,
                        amount,
                        &payment.currency_code,
                    )
                    .await;
                match &outcome {
                    Outcome::Approved { .. } => {
                        set_status(&mut updated, P::Captured);
                        updated.amount_captured = amount;
                        updated.capture_requested = None;
                        step_job = Some(self.settle_job(&payment));
                    }
                    Outcome::Declined { .. } => {
                        set_status(&mut updated, P::Authorized);
                        updated.capture_requested = None;
                    }
                    Outcome::Error { message } => return Err(JobError::Retry((*message).into())),
                    // Accepted: the payment stays `capturing` until the processor's notification.
                    Outcome::Pending { .. } => {
                        let pending =
                            transaction(&payment, TransactionKind::Capture, amount, &outcome);
                        self.store
                            .record_pending(&pending, None, Some(P::Capturing.as_str()))
                            .await?;
                        return Ok(());
                    }
                }
                (TransactionKind::Capture, amount, outcome)
            }
            (VOID_JOB, P::Voiding) => {
                let outcome = processor()?
                    .void(payment.id, payment.version, &reference)
                    .await;
                match &outcome {
                    Outcome::Approved { .. } => {
                        set_status(&mut updated, P::Voided);
                        updated.amount_voided = payment.amount_authorized;
                    }
                    Outcome::Declined { .. } => set_status(&mut updated, P::Authorized),
                    Outcome::Error { message } => return Err(JobError::Retry((*message).into())),
                    // Accepted: the payment stays `voiding` until the processor's notification.
                    Outcome::Pending { .. } => {
                        let amount = payment.amount_authorized;
                        let pending =
                            transaction(&payment, TransactionKind::Void, amount, &outcome);
                        self.store
                            .record_pending(&pending, None, Some(P::Voiding.as_str()))
                            .await?;
                        return Ok(());
                    }
                }
                (TransactionKind::Void, payment.amount_authorized, outcome)
            }
            (SETTLE_JOB, P::Captured) => {
                // Only a status move: the settlement transaction is recorded once, when it completes.
                set_status(&mut updated, P::Settling);
                let mut step = change(&payment, updated);
                step.job = Some(new_job(SETTLE_JOB, &payload, Ts::now()));
                return match self.apply(&mut step).await? {
                    true => Ok(()),
                    false => Err(JobError::Retry("the payment changed meanwhile".into())),
                };
            }
            (SETTLE_JOB, P::Settling) => {
                set_status(&mut updated, P::Settled);
                (
                    TransactionKind::Settlement,
                    payment.amount_captured,
                    Outcome::Approved {
                        reference: reference.clone(),
                        network_transaction_id: None,
                    },
                )
            }
            (REFUND_JOB, _) => return self.run_refund(&payment, &payload, &*processor()?).await,
            // Already moved on (a retry after a crash, or another node): nothing left to do.
            _ => return Ok(()),
        };
        let mut step = change(&payment, updated);
        step.transaction = Some(transaction(&payment, transaction_kind, amount, &outcome));
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
        processor: &dyn Processor,
    ) -> Result<(), JobError> {
        let Some(refund_id) = payload.refund_id else {
            return Err(JobError::Fatal("refund job without a refund".into()));
        };
        let Some(refund) = self.store.get_refund(payment.account_id, refund_id).await? else {
            return Ok(());
        };
        let (processing, _) = state::REFUND_START;
        if refund_status(&refund)? != processing {
            return Ok(());
        }
        let outcome = processor
            .refund(
                refund.id,
                payment.processor_reference.as_deref().unwrap_or(""),
                refund.amount,
                &refund.currency_code,
            )
            .await;
        if let Outcome::Error { message } = &outcome {
            return Err(JobError::Retry((*message).into()));
        }
        if let Outcome::Pending { .. } = &outcome {
            // Accepted: the refund stays `processing` until the processor's notification, which
            // finds it by the reference recorded here.
            let pending = transaction(payment, TransactionKind::Refund, refund.amount, &outcome);
            self.store
                .record_pending(&pending, Some(refund.id), None)
                .await?;
            return Ok(());
        }
        // The processor has answered: record that answer, and never ask the processor again for this
        // refund if it cannot be recorded.
        self.finish_refund(payment, &refund, &outcome)
            .await
            .map_err(|e| match e {
                PaymentError::Internal(InternalError::Unsettled(why)) => {
                    JobError::Fatal(why.into())
                }
                other => JobError::Retry(other.to_string()),
            })
    }

    /// Records the processor's final answer to a refund still `processing` (from the refund job or a
    /// notification): the refund's end, the payment's amounts and the transaction, re-reading the
    /// payment if another refund moved it meanwhile. Nothing happens if the refund has moved on.
    pub(super) async fn finish_refund(
        &self,
        payment: &PaymentRecord,
        refund: &RefundRecord,
        outcome: &Outcome,
    ) -> Result<(), PaymentError> {
        let (processing, _) = state::REFUND_START;
        let mut finished = RefundRecord {
            updated_at: Ts::now(),
            ..refund.clone()
        };
        let to = match outcome {
            Outcome::Approved { .. } => RefundStatus::Completed,
            _ => {
                finished.failure_details = failure_details(outcome);
                RefundStatus::Failed
            }
        };
        finished.status = to.as_str().to_owned();
        let mut current = payment.clone();
        for _ in 0..20 {
            let mut updated = next(&current);
            updated.amount_refund_reserved -= refund.amount;
            if to == RefundStatus::Completed {
                updated.amount_refunded += refund.amount;
            }
            let mut step = change(&current, updated);
            step.transaction = Some(transaction(
                payment,
                TransactionKind::Refund,
                refund.amount,
                outcome,
            ));
            step.finished_refund = Some(finished.clone());
            if self.apply(&mut step).await? {
                return Ok(());
            }
            match self.store.get_refund(payment.account_id, refund.id).await? {
                Some(r) if refund_status(&r)? == processing => {}
                _ => return Ok(()),
            }
            current = self
                .store
                .get_payment(payment.account_id, payment.id)
                .await?
                .ok_or(InternalError::Unsettled("the payment disappeared"))?;
        }
        Err(InternalError::Unsettled("the refund's answer could not be recorded").into())
    }
}

/// A job handler for one kind of payment step.
pub struct PaymentStep {
    kind: &'static str,
    payments: Arc<Payments>,
}

impl PaymentStep {
    pub fn all(payments: &Arc<Payments>) -> Vec<Arc<dyn JobHandler>> {
        [
            AUTHORIZE_JOB,
            CAPTURE_JOB,
            VOID_JOB,
            SETTLE_JOB,
            REFUND_JOB,
            ABANDON_JOB,
        ]
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

    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        self.payments
            .run_job(self.kind, job)
            .await
            .map(|()| Ran::Done)
    }
}
