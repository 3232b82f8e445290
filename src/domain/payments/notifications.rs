//! Processor notifications (Adyen's standard notifications): every item's signature is checked with the
//! processor's HMAC key before anything is read, a bad one refuses the whole batch and is audited; then
//! captures, cancels and refunds the processor accepted earlier reach their end through the same moves
//! (and webhooks) as the jobs. A notification about something that has already moved on changes nothing.
//! A `TECHNICAL_CANCEL` (the outcome of undoing an authorization whose answer never came, `abandon.rs`)
//! ends the pending `void` transaction the undo recorded and never moves the payment, which may have
//! been authorized by another processor since.

use uuid::Uuid;

use super::{change, next, refund_status, set_status, state, status, transaction, PaymentError};
use super::{Payments, TransactionKind};
use crate::connectors::adyen_notifications::{NotificationBatch, NotificationItem};
use crate::connectors::processor::{Outcome, ANSWER_LOST, NO_ANSWER};
use crate::model::payment::{PaymentStatus, TransactionStatus};
use crate::store::{Action, AuditEvent, PaymentRecord, ProcessorRecord, TransactionRecord, Ts};

/// What an item asks of a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Capture,
    Cancel,
    Refund,
}

impl Event {
    /// The item's event and whether it reports success; `None` for events this server does not act on.
    fn of(item: &NotificationItem) -> Option<(Event, bool)> {
        Some(match item.event_code.as_str() {
            "CAPTURE" => (Event::Capture, item.succeeded()),
            "CAPTURE_FAILED" => (Event::Capture, false),
            "CANCELLATION" => (Event::Cancel, item.succeeded()),
            "REFUND" => (Event::Refund, item.succeeded()),
            "REFUND_FAILED" => (Event::Refund, false),
            _ => return None,
        })
    }

    fn refusal(self) -> Outcome {
        let (classifier, message) = match self {
            Event::Capture => (
                "PROCESSOR_REFUSED",
                "The processor could not capture the payment",
            ),
            Event::Cancel => (
                "PROCESSOR_REFUSED",
                "The processor could not void the payment",
            ),
            Event::Refund => (
                "REFUND_FAILED",
                "The processor could not refund the payment",
            ),
        };
        Outcome::Declined {
            classifier,
            message,
        }
    }
}

/// How many times a notification re-reads a payment that another writer moved meanwhile.
const ATTEMPTS: usize = 10;

impl Payments {
    /// Takes a batch of notifications from processor `processor_id` (any account's: the processor id
    /// scopes everything found). `NotFound`: no such live processor that sends notifications.
    pub async fn processor_notification(
        &self,
        processor_id: Uuid,
        body: &[u8],
    ) -> Result<(), PaymentError> {
        let Some((record, key)) = self.router.notification_key(processor_id).await? else {
            return Err(PaymentError::NotFound);
        };
        let batch: NotificationBatch = serde_json::from_slice(body).map_err(|_| {
            PaymentError::Invalid(
                "$.notificationItems",
                "must be Adyen's notification items (NotificationRequestItem)".into(),
            )
        })?;
        if !batch
            .items
            .iter()
            .all(|w| w.item.signed_with(&key.hmac_key))
        {
            let audit = AuditEvent::new(
                Some(record.account_id),
                format!("processor:{}", record.id),
                Action::ProcessorNotificationRefuse,
                Some(record.id.to_string()),
                "refused: bad signature",
            );
            self.store.insert_audit_event(&audit).await?;
            tracing::warn!(processor = %record.id, "a notification with a bad signature was refused");
            return Err(PaymentError::BadSignature);
        }
        for wrapped in &batch.items {
            let item = &wrapped.item;
            if item.merchant_account_code != key.merchant_account {
                tracing::info!(processor = %record.id, "notification for another merchant account ignored");
                continue;
            }
            self.notification_item(&record, item).await?;
        }
        Ok(())
    }

    async fn notification_item(
        &self,
        processor: &ProcessorRecord,
        item: &NotificationItem,
    ) -> Result<(), PaymentError> {
        if item.event_code == "TECHNICAL_CANCEL" {
            return self.notified_abandon(processor, item).await;
        }
        let Some((event, success)) = Event::of(item) else {
            return Ok(());
        };
        let Some(mut payment) = self.notified_payment(processor, item).await? else {
            tracing::info!(processor = %processor.id, event = %item.event_code, "notification about no payment of this processor");
            return Ok(());
        };
        let outcome = if success {
            Outcome::Approved {
                reference: item.psp_reference.clone(),
                network_transaction_id: None,
            }
        } else {
            event.refusal()
        };
        if event == Event::Refund {
            return self.notified_refund(&payment, item, &outcome).await;
        }
        for _ in 0..ATTEMPTS {
            let Some(mut step) = self.notified_move(&payment, event, &outcome)? else {
                // Already where the notification would take it (a repeat), or moved on otherwise.
                return Ok(());
            };
            if self.apply(&mut step).await? {
                return Ok(());
            }
            payment = self.record(payment.account_id, payment.id).await?;
        }
        Err(super::InternalError::Unsettled("the notification could not be recorded").into())
    }

    /// The payment an item is about: ours by `merchantReference` (the payment id we sent), in the
    /// processor's account, authorized by this processor under the item's original reference.
    async fn notified_payment(
        &self,
        processor: &ProcessorRecord,
        item: &NotificationItem,
    ) -> Result<Option<PaymentRecord>, PaymentError> {
        let Ok(id) = item.merchant_reference.parse::<Uuid>() else {
            return Ok(None);
        };
        let found = self.store.get_payment(processor.account_id, id).await?;
        Ok(found.filter(|p| {
            p.processor == processor.id.to_string()
                && item
                    .original_reference
                    .as_deref()
                    .map_or(true, |o| p.processor_reference.as_deref() == Some(o))
        }))
    }

    /// The move a capture or cancel notification makes, if the payment still waits for it.
    fn notified_move(
        &self,
        payment: &PaymentRecord,
        event: Event,
        outcome: &Outcome,
    ) -> Result<Option<crate::store::PaymentChange>, PaymentError> {
        use PaymentStatus as P;
        let approved = matches!(outcome, Outcome::Approved { .. });
        let mut updated = next(payment);
        let mut job = None;
        let (kind, amount) = match (event, status(payment)?) {
            (Event::Capture, P::Capturing) => {
                let amount = payment
                    .capture_requested
                    .unwrap_or(payment.amount_authorized);
                updated.capture_requested = None;
                if approved {
                    set_status(&mut updated, P::Captured);
                    updated.amount_captured = amount;
                    job = Some(self.settle_job(payment));
                } else {
                    set_status(&mut updated, P::Authorized);
                }
                (TransactionKind::Capture, amount)
            }
            (Event::Cancel, P::Voiding) => {
                if approved {
                    set_status(&mut updated, P::Voided);
                    updated.amount_voided = payment.amount_authorized;
                } else {
                    set_status(&mut updated, P::Authorized);
                }
                (TransactionKind::Void, payment.amount_authorized)
            }
            _ => return Ok(None),
        };
        let mut step = change(payment, updated);
        step.transaction = Some(transaction(payment, kind, amount, outcome));
        step.job = job;
        Ok(Some(step))
    }

    /// The outcome of a cancel by merchant reference that the undo of an unanswered authorization asked
    /// for: recorded as the end of the pending `void` transaction with the item's PSP reference (the
    /// cancel's), once, without moving the payment. Its status is whatever the processor that answered
    /// made it; the money this processor may hold is what the transaction tells an operator about.
    async fn notified_abandon(
        &self,
        processor: &ProcessorRecord,
        item: &NotificationItem,
    ) -> Result<(), PaymentError> {
        let Ok(id) = item.merchant_reference.parse::<Uuid>() else {
            return Ok(());
        };
        let Some(mut payment) = self.store.get_payment(processor.account_id, id).await? else {
            return Ok(());
        };
        let transactions = self.store.list_transactions(payment.id).await?;
        let void = TransactionKind::Void.as_str();
        let pending = TransactionStatus::Pending.as_str();
        let same = |t: &&TransactionRecord| {
            t.kind == void && t.processor_reference.as_deref() == Some(&item.psp_reference)
        };
        if transactions
            .iter()
            .filter(same)
            .any(|t| t.status != pending)
        {
            return Ok(()); // Its end is recorded already (a repeat).
        }
        if !transactions
            .iter()
            .filter(same)
            .any(|t| t.status == pending)
        {
            if undo_unrecorded(&payment, &transactions, processor) {
                // The undo job has not recorded the processor's answer yet: ask for this again later.
                return Err(PaymentError::NotYet(
                    "the cancel of this payment is not recorded yet".into(),
                ));
            }
            tracing::info!(processor = %processor.id, payment = %payment.id, "cancel notification about no cancel asked by Strongroom");
            return Ok(());
        }
        let tag = format!("(processor {})", processor.name);
        let (status, message) = if item.succeeded() {
            (
                TransactionStatus::Succeeded,
                format!("The processor cancelled the authorization whose answer never came {tag}"),
            )
        } else {
            (
                TransactionStatus::Failed,
                format!(
                    "The processor did not cancel the authorization whose answer never came {tag}: \
                     nothing was authorized there, or it was already captured; look for this \
                     payment's id at the processor and refund it there if it was charged"
                ),
            )
        };
        if !item.succeeded() {
            tracing::warn!(processor = %processor.id, payment = %payment.id, "an unanswered authorization was not cancelled");
        }
        let record = TransactionRecord {
            id: crate::new_id(),
            payment_id: payment.id,
            created_at: Ts::now(),
            kind: void.to_owned(),
            status: status.as_str().to_owned(),
            amount: 0,
            processor_reference: Some(item.psp_reference.clone()),
            message: Some(message),
            // The processor undone, whichever took the payment over.
            processor: Some(processor.id.to_string()),
        };
        for _ in 0..ATTEMPTS {
            let mut step = change(&payment, next(&payment));
            let mut ended = record.clone();
            ended.amount = payment.amount_requested;
            step.transaction = Some(ended);
            if self.apply(&mut step).await? {
                return Ok(());
            }
            payment = self.record(payment.account_id, payment.id).await?;
            // The payment's version guards its transactions: a copy of this item taken at the same
            // time that got there first is seen here, and this one records nothing.
            let now = self.store.list_transactions(payment.id).await?;
            if now.iter().filter(same).any(|t| t.status != pending) {
                return Ok(());
            }
        }
        Err(super::InternalError::Unsettled("the notification could not be recorded").into())
    }

    /// A refund notification: the refund the processor knows by the item's PSP reference, if it is
    /// still `processing`.
    async fn notified_refund(
        &self,
        payment: &PaymentRecord,
        item: &NotificationItem,
        outcome: &Outcome,
    ) -> Result<(), PaymentError> {
        let found = self
            .store
            .refund_by_processor_reference(payment.id, &item.psp_reference)
            .await?;
        let Some(refund_id) = found else {
            if payment.amount_refund_reserved > 0 {
                // The refund job may not have recorded the processor's reference yet: ask the
                // processor to send this notification again later.
                return Err(PaymentError::NotYet(
                    "a refund of this payment is not recorded yet".into(),
                ));
            }
            tracing::info!(payment = %payment.id, "refund notification about no refund of this payment");
            return Ok(());
        };
        let Some(refund) = self.store.get_refund(payment.account_id, refund_id).await? else {
            return Ok(());
        };
        if refund_status(&refund)? != state::REFUND_START.0 {
            return Ok(());
        }
        self.finish_refund(payment, &refund, outcome).await
    }
}

/// Whether an authorization of `payment` at `processor` went unanswered and the job undoing it has not
/// recorded its answer yet. Failed-over attempts name their processor; the last attempt of a payment
/// that failed names none and was made by the payment's processor.
fn undo_unrecorded(
    payment: &PaymentRecord,
    transactions: &[TransactionRecord],
    processor: &ProcessorRecord,
) -> bool {
    let here = payment.processor == processor.id.to_string();
    let unanswered = transactions.iter().any(|t| {
        t.kind == TransactionKind::Authorization.as_str()
            && t.message.as_deref().is_some_and(|m| {
                (m.starts_with(NO_ANSWER) || m.starts_with(ANSWER_LOST))
                    && (names(m, &processor.name) || (here && !m.contains("(processor ")))
            })
    });
    let recorded = transactions.iter().any(|t| {
        t.kind == TransactionKind::Void.as_str()
            && t.message
                .as_deref()
                .is_some_and(|m| m.contains("answer never came") && names(m, &processor.name))
    });
    unanswered && !recorded
}

/// Whether a transaction's message names processor `name` as `(processor NAME;`, `(processor NAME)` or
/// `(processor NAME:` — whole, so that `adyen` is not found in `adyen-eu`'s messages.
fn names(message: &str, name: &str) -> bool {
    [';', ')', ':']
        .iter()
        .any(|end| message.contains(&format!("(processor {name}{end}")))
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn a_message_names_a_processor_whole() {
        let failover =
            "The processor did not answer in time (processor adyen-eu; tried the next one)";
        assert!(names(failover, "adyen-eu"));
        assert!(!names(failover, "adyen"));
        assert!(names(
            "Asked to undo it (processor adyen); it confirms later",
            "adyen"
        ));
        assert!(names(
            "Could not undo it (processor adyen: failed)",
            "adyen"
        ));
        assert!(!names("Asked to undo it (processor adyen.eu)", "adyen"));
    }
}
