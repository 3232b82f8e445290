//! The processor trait every connector implements, and the built-in `sandbox`, which answers like a test
//! acquirer, by card number: 4000000000000002 is declined, 4000000000009995 has insufficient funds,
//! 4000000000000119 meets a processor error, 4000000000000101 is declined when no security code comes with
//! it (`SECURITY_CODE_REQUIRED`: how a test sees that a fresh code reached the processor), and every
//! other valid card is approved.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::card::{CardData, SecurityCode};
use crate::model::payment::UseCase;

/// What the processor said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approved {
        reference: String,
        /// The card network's id of an authorization, which merchant-initiated payments cite later.
        network_transaction_id: Option<String>,
    },
    Declined {
        classifier: &'static str,
        message: &'static str,
    },
    /// The processor failed, not the card; the step may be retried (an authorization elsewhere).
    Error { message: &'static str },
    /// The processor accepted a capture, void or refund and will say how it ended later, in a
    /// notification (Adyen's `received`): the step stays in its in-between status until then.
    Pending { reference: String },
}

/// The messages of errors after which the processor may have acted although its answer never came (the
/// call was sent, then timed out or lost its connection): an authorization that ends so is undone at
/// that processor (`Processor::abandon`) before the payment fails over.
pub const NO_ANSWER: &str = "The processor did not answer in time";
pub const ANSWER_LOST: &str = "The processor's answer was lost";

impl Outcome {
    /// The processor may have acted: the call was sent, and no answer came back.
    pub fn unanswered(&self) -> bool {
        matches!(self, Outcome::Error { message } if [NO_ANSWER, ANSWER_LOST].contains(message))
    }
}

/// The card, opened from the vault only for the length of one call.
pub struct Authorization<'a> {
    pub payment_id: Uuid,
    pub amount: i64,
    pub currency_code: &'a str,
    pub card: &'a CardData,
    pub security_code: Option<&'a SecurityCode>,
    pub capture: bool,
    /// A merchant-initiated payment (the cardholder is not present).
    pub merchant_initiated: bool,
    /// The payment's use case, for processors that name the kind of series (Adyen's
    /// `recurringProcessingModel`).
    pub use_case: UseCase,
    /// The network transaction id of the initial payment a merchant-initiated one continues.
    pub network_transaction_id: Option<&'a str>,
}

/// Calls about a payment are keyed by our own ids, so that a retry is never a second charge; the same
/// derivation serves every connector that takes an idempotency key.
pub fn idempotency_key(step: &str, id: Uuid) -> String {
    format!("strongroom-{step}-{}", id.simple())
}

#[async_trait]
pub trait Processor: Send + Sync {
    fn name(&self) -> &str;
    async fn authorize(&self, request: &Authorization<'_>) -> Outcome;
    /// `version`: the payment's version while the capture is pending; with the payment id it keys the
    /// call, so that retries of one capture are one capture, and a capture asked again after a refusal
    /// is a new call. `currency_code`: the payment's, for processors that name it again.
    async fn capture(
        &self,
        payment_id: Uuid,
        version: i64,
        reference: &str,
        amount: i64,
        currency_code: &str,
    ) -> Outcome;
    /// `version`: as for `capture`.
    async fn void(&self, payment_id: Uuid, version: i64, reference: &str) -> Outcome;
    async fn refund(
        &self,
        refund_id: Uuid,
        reference: &str,
        amount: i64,
        currency_code: &str,
    ) -> Outcome;
    /// Undoes what an authorization of `payment_id` whose answer never came may have done here: finds
    /// it by our own ids, cancels it, or refunds it if it was captured. Approved: undone (the
    /// reference is the processor's); Declined: it was not approved, nothing is held; Error: not known
    /// yet (not found, the processor failed), ask again later.
    async fn abandon(&self, _payment_id: Uuid) -> Outcome {
        Outcome::Error {
            message: "This connector cannot look up an authorization whose answer was lost",
        }
    }
}

pub struct Sandbox {
    latency: Duration,
}

impl Sandbox {
    pub fn new(latency: Duration) -> Self {
        Self { latency }
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl Processor for Sandbox {
    fn name(&self) -> &str {
        "sandbox"
    }

    async fn authorize(&self, request: &Authorization<'_>) -> Outcome {
        self.delay().await;
        match request.card.pan.peek() {
            "4000000000000002" => Outcome::Declined {
                classifier: "DECLINED",
                message: "The issuer declined the payment",
            },
            "4000000000009995" => Outcome::Declined {
                classifier: "INSUFFICIENT_FUNDS",
                message: "The card has insufficient funds",
            },
            "4000000000000119" => Outcome::Error {
                message: "The processor could not handle the request",
            },
            "4000000000000101" if request.security_code.is_none() => Outcome::Declined {
                classifier: "SECURITY_CODE_REQUIRED",
                message: "The issuer requires the card's security code",
            },
            _ => Outcome::Approved {
                reference: format!("sbx_auth_{}", request.payment_id.simple()),
                network_transaction_id: None,
            },
        }
    }

    async fn capture(
        &self,
        payment_id: Uuid,
        _version: i64,
        _reference: &str,
        _amount: i64,
        _currency_code: &str,
    ) -> Outcome {
        self.delay().await;
        Outcome::Approved {
            reference: format!("sbx_cap_{}", payment_id.simple()),
            network_transaction_id: None,
        }
    }

    async fn void(&self, payment_id: Uuid, _version: i64, _reference: &str) -> Outcome {
        self.delay().await;
        Outcome::Approved {
            reference: format!("sbx_void_{}", payment_id.simple()),
            network_transaction_id: None,
        }
    }

    async fn refund(
        &self,
        refund_id: Uuid,
        _reference: &str,
        _amount: i64,
        _currency_code: &str,
    ) -> Outcome {
        self.delay().await;
        Outcome::Approved {
            reference: format!("sbx_ref_{}", refund_id.simple()),
            network_transaction_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_call_sent_without_an_answer_is_unanswered() {
        let error = |message| Outcome::Error { message };
        assert!(error(NO_ANSWER).unanswered());
        assert!(error(ANSWER_LOST).unanswered());
        assert!(!error("The processor failed").unanswered());
        let declined = Outcome::Declined {
            classifier: "DECLINED",
            message: NO_ANSWER,
        };
        assert!(!declined.unanswered());
    }
}
