//! Modifications a client asks for: capture, void and refunds. Each checks the payment's status
//! against the state machine, makes its move, and leaves the job that asks the processor, all in one
//! transaction; the answer shows the payment in its in-between status (or the refund `processing`).

use uuid::Uuid;

use super::input::RefundInput;
use super::jobs::{new_job, JobPayload, CAPTURE_JOB, REFUND_JOB, VOID_JOB};
use super::{change, next, set_status, state, status, PaymentError, Payments};
use crate::model::payment::{Payment, PaymentStatus, Refund};
use crate::store::{PaymentRecord, RefundRecord, Ts};

impl Payments {
    /// Starts a capture of `amount` (default: all that was authorized); once per payment.
    pub async fn capture(
        &self,
        account_id: Uuid,
        id: Uuid,
        amount: Option<i64>,
    ) -> Result<Payment, PaymentError> {
        let payment = self.record(account_id, id).await?;
        let from = status(&payment)?;
        if !state::can_move(from, PaymentStatus::Capturing) {
            return Err(PaymentError::Conflict(format!(
                "A payment that is {from} cannot be captured"
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
        set_status(&mut updated, PaymentStatus::Capturing);
        updated.capture_requested = Some(amount);
        self.save_with_job(&payment, updated, CAPTURE_JOB).await
    }

    pub async fn void(&self, account_id: Uuid, id: Uuid) -> Result<Payment, PaymentError> {
        let payment = self.record(account_id, id).await?;
        let from = status(&payment)?;
        if !state::can_move(from, PaymentStatus::Voiding) {
            return Err(PaymentError::Conflict(format!(
                "A payment that is {from} cannot be voided"
            )));
        }
        let mut updated = next(&payment);
        set_status(&mut updated, PaymentStatus::Voiding);
        self.save_with_job(&payment, updated, VOID_JOB).await
    }

    /// Accepts a refund of `amount` (default: all that is left) in the payment's currency, and
    /// reserves it against the payment.
    pub async fn refund(
        &self,
        account_id: Uuid,
        id: Uuid,
        input: RefundInput,
    ) -> Result<Refund, PaymentError> {
        let RefundInput {
            amount,
            reference,
            currency_code,
        } = input;
        let payment = self.record(account_id, id).await?;
        if currency_code.is_some_and(|c| c != payment.currency_code) {
            return Err(PaymentError::Invalid(
                "$.currency_code",
                format!(
                    "must be the currency of the payment, {}",
                    payment.currency_code
                ),
            ));
        }
        let from = status(&payment)?;
        if !state::refundable(from) {
            return Err(PaymentError::Conflict(format!(
                "A payment that is {from} cannot be refunded"
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
        let (start, _) = state::REFUND_START;
        let refund = RefundRecord {
            id: crate::new_id(),
            payment_id: payment.id,
            account_id,
            created_at: now,
            updated_at: now,
            amount,
            currency_code: payment.currency_code.clone(),
            status: start.as_str().to_owned(),
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
        Ok(refund.try_into()?)
    }

    /// Saves a move with the job that finishes it, and answers with the payment as saved.
    async fn save_with_job(
        &self,
        previous: &PaymentRecord,
        updated: PaymentRecord,
        kind: &str,
    ) -> Result<Payment, PaymentError> {
        let payload = JobPayload {
            account_id: previous.account_id,
            payment_id: previous.id,
            refund_id: None,
        };
        let mut step = change(previous, updated.clone());
        step.job = Some(new_job(kind, &payload, Ts::now()));
        if self.apply(&mut step).await? {
            Ok(updated.try_into()?)
        } else {
            Err(PaymentError::Conflict(
                "The payment changed while this request was handled; retry".into(),
            ))
        }
    }
}
