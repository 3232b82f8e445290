//! Processor connectors and the routing rule that picks one. The built-in `sandbox` processor answers like
//! a test acquirer, by card number: 4000000000000002 is declined, 4000000000009995 has insufficient funds,
//! 4000000000000119 meets a processor error, and every other valid card is approved.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::card::{CardData, SecurityCode};

/// What the processor said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approved {
        reference: String,
    },
    Declined {
        classifier: &'static str,
        message: &'static str,
    },
    /// The processor failed; the step may be retried.
    Error {
        message: &'static str,
    },
}

/// The card, opened from the vault only for the length of one call.
pub struct Authorization<'a> {
    pub payment_id: Uuid,
    pub amount: i64,
    pub currency_code: &'a str,
    pub card: &'a CardData,
    pub security_code: Option<&'a SecurityCode>,
    pub capture: bool,
}

#[async_trait]
pub trait Processor: Send + Sync {
    fn name(&self) -> &'static str;
    async fn authorize(&self, request: &Authorization<'_>) -> Outcome;
    async fn capture(&self, payment_id: Uuid, reference: &str, amount: i64) -> Outcome;
    async fn void(&self, payment_id: Uuid, reference: &str) -> Outcome;
    async fn refund(&self, refund_id: Uuid, reference: &str, amount: i64) -> Outcome;
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
    fn name(&self) -> &'static str {
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
            _ => Outcome::Approved {
                reference: format!("sbx_auth_{}", request.payment_id.simple()),
            },
        }
    }

    async fn capture(&self, payment_id: Uuid, _reference: &str, _amount: i64) -> Outcome {
        self.delay().await;
        Outcome::Approved {
            reference: format!("sbx_cap_{}", payment_id.simple()),
        }
    }

    async fn void(&self, payment_id: Uuid, _reference: &str) -> Outcome {
        self.delay().await;
        Outcome::Approved {
            reference: format!("sbx_void_{}", payment_id.simple()),
        }
    }

    async fn refund(&self, refund_id: Uuid, _reference: &str, _amount: i64) -> Outcome {
        self.delay().await;
        Outcome::Approved {
            reference: format!("sbx_ref_{}", refund_id.simple()),
        }
    }
}

/// The flow matrix: which processor handles a payment, and the name of the rule that chose it.
pub struct Router {
    sandbox: Arc<dyn Processor>,
}

impl Router {
    pub fn new(sandbox: Arc<dyn Processor>) -> Self {
        Self { sandbox }
    }

    /// Every payment goes to the sandbox for now; the rule name is recorded on the payment.
    pub fn route(&self, _currency_code: &str) -> (&'static str, Arc<dyn Processor>) {
        ("default: all payments to sandbox", self.sandbox.clone())
    }

    /// The processor a payment was routed to, by its recorded name.
    pub fn processor(&self, name: &str) -> Option<Arc<dyn Processor>> {
        (name == self.sandbox.name()).then(|| self.sandbox.clone())
    }
}
