//! Failover of an authorization along the processors of the payment's rule: a processor error (not the
//! card's fault) hands the payment to the next processor, at most once each, and every attempt is a
//! transaction; a decline or an approval is final. No processors at all: the payment fails routing. An
//! attempt whose answer never came is undone at its processor by a job written with the failover.

use super::abandon::abandon_job;
use super::{transaction, PaymentError, Payments};
use crate::connectors::processor::{Authorization, Outcome};
use crate::model::payment::TransactionKind;
use crate::store::{PaymentRecord, Ts};

impl Payments {
    /// Authorizes `payment` at its processor, failing over along its rule; returns the final answer and
    /// the payment as now stored (a version further for each failover).
    pub(super) async fn authorize_routed(
        &self,
        payment: &PaymentRecord,
        request: &Authorization<'_>,
    ) -> Result<(Outcome, PaymentRecord), PaymentError> {
        let account_id = payment.account_id;
        let chain = self
            .router
            .remaining(account_id, &payment.flow_matrix_rule, &payment.processor)
            .await?;
        if chain.is_empty() {
            let outcome = Outcome::Declined {
                classifier: "ROUTING_ERROR",
                message: "No routing rule matches this payment",
            };
            return Ok((outcome, payment.clone()));
        }
        let mut current = payment.clone();
        for (at, key) in chain.iter().enumerate() {
            let (name, outcome) = match self.router.processor(account_id, key).await {
                Some(processor) => (
                    processor.name().to_owned(),
                    processor.authorize(request).await,
                ),
                None => (
                    key.clone(),
                    Outcome::Error {
                        message: "The processor is not configured",
                    },
                ),
            };
            let next = match (&outcome, chain.get(at + 1)) {
                (Outcome::Error { message }, Some(next)) => {
                    tracing::info!(payment = %payment.id, processor = %name, why = message, "failing over");
                    next
                }
                _ => return Ok((outcome, current)),
            };
            let mut attempt = transaction(
                &current,
                TransactionKind::Authorization,
                payment.amount_requested,
                &outcome,
            );
            attempt.message = attempt
                .message
                .map(|m| format!("{m} (processor {name}; tried the next one)"));
            // The processor may have approved although no answer came: undo that there, durably, before
            // the next one is asked.
            let undo = outcome
                .unanswered()
                .then(|| abandon_job(account_id, payment.id, key));
            let now = Ts::now();
            if !self
                .store
                .record_failover(
                    current.id,
                    current.version,
                    next,
                    &attempt,
                    undo.as_ref(),
                    now,
                )
                .await?
            {
                // Recovery took the payment over; it answers for it.
                return Err(PaymentError::Conflict(
                    "The payment changed during its authorization".into(),
                ));
            }
            current.version += 1;
            current.updated_at = now;
            current.processor = next.clone();
        }
        Err(PaymentError::Internal(super::InternalError::Unsettled(
            "the failover ended without an answer",
        )))
    }
}
