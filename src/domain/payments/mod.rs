//! Payments: creation on a token through the routed processor, modifications (capture, void, refunds),
//! the durable jobs that finish them, and `GET /payments`. This file holds the service, its error, and
//! the one way a step is saved: checked against the state machine (`state`), with the events it emits.
//!
//! Every move is one atomic change made against the version read; moves that talk to the processor
//! after the answer (capture, void, refund, settlement) run as durable jobs, written in the same
//! transaction as the move that asks for them.

mod abandon;
mod create;
mod failover;
pub mod input;
mod jobs;
mod list;
mod modify;
mod notifications;
mod seed;
pub mod state;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

pub use jobs::{
    PaymentStep, ABANDON_JOB, AUTHORIZE_JOB, CAPTURE_JOB, REFUND_JOB, SETTLE_JOB, VOID_JOB,
};
pub use seed::synthetic_payments;

use super::objects::stored;
use super::routing::Routing;
use super::tokens::{TokenError, Tokens};
use super::webhooks::{EventError, Webhooks};
use super::InternalError;
use crate::connectors::processor::Outcome;
use crate::model::payment::{
    Payment, PaymentStatus, Refund, RefundStatus, Transaction, TransactionKind, TransactionStatus,
};
use crate::store::{
    DynStore, PaymentChange, PaymentRecord, PaymentWrite, RefundRecord, StoreError,
    TransactionRecord, Ts,
};
use writer::PaymentWriter;

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
    /// A processor notification whose signature does not verify.
    #[error("the notification's signature is not valid")]
    BadSignature,
    /// Not ready for this yet (a notification that came before its request was recorded); try later.
    #[error("{0}")]
    NotYet(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

pub struct Payments {
    store: DynStore,
    tokens: Arc<Tokens>,
    router: Routing,
    settle_after: Duration,
    /// The lease the creating request holds on its payment's recovery job (renewed while it authorizes):
    /// the job authorizes the payment only if the request's node died, once this lease ran out.
    recovery_lease: Duration,
    /// Who holds those leases on this node.
    lease_owner: String,
    webhooks: Arc<Webhooks>,
    /// Every payment write goes through it, so that concurrent payments share commits.
    writer: PaymentWriter,
}

/// The status of a stored payment.
fn status(payment: &PaymentRecord) -> Result<PaymentStatus, StoreError> {
    stored(&payment.status)
}

fn set_status(payment: &mut PaymentRecord, status: PaymentStatus) {
    payment.status = status.as_str().to_owned();
}

fn refund_status(refund: &RefundRecord) -> Result<RefundStatus, StoreError> {
    stored(&refund.status)
}

/// A transaction of `payment` at the processor it is with now.
fn transaction(
    payment: &PaymentRecord,
    kind: TransactionKind,
    amount: i64,
    outcome: &Outcome,
) -> TransactionRecord {
    let (status, reference, message) = match outcome {
        Outcome::Approved { reference, .. } => {
            (TransactionStatus::Succeeded, Some(reference.clone()), None)
        }
        Outcome::Declined { message, .. } => {
            (TransactionStatus::Failed, None, Some((*message).to_owned()))
        }
        Outcome::Error { message } => {
            (TransactionStatus::Failed, None, Some((*message).to_owned()))
        }
        Outcome::Pending { reference } => (
            TransactionStatus::Pending,
            Some(reference.clone()),
            Some("Accepted by the processor; its notification gives the result".to_owned()),
        ),
    };
    TransactionRecord {
        id: crate::new_id(),
        payment_id: payment.id,
        created_at: Ts::now(),
        kind: kind.as_str().to_owned(),
        status: status.as_str().to_owned(),
        amount,
        processor_reference: reference,
        message,
        processor: Some(payment.processor.clone()),
    }
}

fn failure_details(outcome: &Outcome) -> Option<String> {
    let (classifier, message) = match outcome {
        Outcome::Approved { .. } | Outcome::Pending { .. } => return None,
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
        network_transaction_id: None,
    }
}

impl Payments {
    pub fn new(
        store: DynStore,
        tokens: Arc<Tokens>,
        router: Routing,
        settle_after: Duration,
        recovery_lease: Duration,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        Self {
            writer: PaymentWriter::spawn(store.clone()),
            store,
            tokens,
            router,
            settle_after,
            recovery_lease,
            lease_owner: format!("payments-{}", crate::new_id()),
            webhooks,
        }
    }

    /// Saves one step with the webhook events its moves emit, in one transaction. `false`: the payment
    /// (or the refund) changed since it was read, and nothing was saved.
    async fn apply(&self, step: &mut PaymentChange) -> Result<bool, EventError> {
        self.apply_retiring(step, None).await
    }

    /// `apply`, deleting in the same commit the job `retire_job` that the step makes unneeded (while it
    /// is queued, or still held under that claim).
    async fn apply_retiring(
        &self,
        step: &mut PaymentChange,
        retire_job: Option<crate::store::Fence>,
    ) -> Result<bool, EventError> {
        let from = stored::<PaymentStatus>(&step.previous_status)?;
        let to = status(&step.payment)?;
        if from != to && !state::can_move(from, to) {
            return Err(EventError::Internal(InternalError::IllegalMove {
                what: "payment",
                from: from.as_str(),
                to: to.as_str(),
            }));
        }
        step.outbox = self.webhooks.payment_change(step).await?;
        let write = PaymentWrite::Change {
            change: step.clone(),
            retire_job,
        };
        Ok(self.writer.write(write).await?)
    }

    /// The stored payment of the account.
    async fn record(&self, account_id: Uuid, id: Uuid) -> Result<PaymentRecord, PaymentError> {
        self.store
            .get_payment(account_id, id)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    pub async fn get(&self, account_id: Uuid, id: Uuid) -> Result<Payment, PaymentError> {
        Ok(self.record(account_id, id).await?.try_into()?)
    }

    pub async fn get_refund(&self, account_id: Uuid, id: Uuid) -> Result<Refund, PaymentError> {
        let refund = self
            .store
            .get_refund(account_id, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        Ok(refund.try_into()?)
    }

    /// The refunds of a payment, oldest first.
    pub async fn refunds(&self, account_id: Uuid, id: Uuid) -> Result<Vec<Refund>, PaymentError> {
        let payment = self.record(account_id, id).await?;
        let refunds = self.store.list_refunds(payment.id).await?;
        Ok(refunds
            .into_iter()
            .map(Refund::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// The processor transactions of a payment, oldest first.
    pub async fn transactions(
        &self,
        account_id: Uuid,
        id: Uuid,
    ) -> Result<Vec<Transaction>, PaymentError> {
        let payment = self.record(account_id, id).await?;
        let transactions = self.store.list_transactions(payment.id).await?;
        Ok(transactions
            .into_iter()
            .map(Transaction::try_from)
            .collect::<Result<_, _>>()?)
    }
}
