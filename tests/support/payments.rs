//! The payment endpoints (`/payments/...`, `/refunds/...`) as `ApiClient` methods, and the payment body
//! the tests send.

use std::fmt::Display;

use serde_json::{json, Value};

use super::answer::Answer;
use super::client::ApiClient;
use super::tokens::with_query;

/// A payment of `amount` EUR cents from `token`, with `capture` `automatic` or `manual`.
pub fn payment(token: &str, amount: i64, capture: &str) -> Value {
    json!({"amount": amount, "currency_code": "EUR", "reference": "Order #1", "capture": capture,
           "source": {"type": "token", "token_id": token}})
}

impl ApiClient {
    /// `POST /payments/{kind}`: `one-off`, `unscheduled` or `recurring`.
    pub async fn create_payment(&self, kind: &str, body: &Value) -> Answer {
        self.post_json(&format!("/payments/{kind}"), body).await
    }

    /// Creates a payment, which must be answered 200; returns it.
    pub async fn pay(&self, kind: &str, body: &Value) -> Value {
        self.create_payment(kind, body).await.ok_body()
    }

    /// `POST /payments/{kind}/{initial}/subsequent`
    pub async fn subsequent(&self, kind: &str, initial: impl Display, body: &Value) -> Answer {
        self.post_json(&format!("/payments/{kind}/{initial}/subsequent"), body)
            .await
    }

    /// `GET /payments/{id}`
    pub async fn get_payment(&self, id: impl Display) -> Answer {
        self.get(&format!("/payments/{id}")).await
    }

    /// `POST /payments/{id}/capture`, with a JSON body or none at all.
    pub async fn capture(&self, id: impl Display, body: Option<&Value>) -> Answer {
        self.post(&format!("/payments/{id}/capture"), body).await
    }

    /// `POST /payments/{id}/void` (no body).
    pub async fn void(&self, id: impl Display) -> Answer {
        self.post_empty(&format!("/payments/{id}/void")).await
    }

    /// `POST /payments/{id}/refunds`, with a JSON body or none at all.
    pub async fn refund(&self, id: impl Display, body: Option<&Value>) -> Answer {
        self.post(&format!("/payments/{id}/refunds"), body).await
    }

    /// `GET /payments/{id}/refunds`
    pub async fn list_refunds(&self, id: impl Display) -> Answer {
        self.get(&format!("/payments/{id}/refunds")).await
    }

    /// `GET /refunds/{id}`
    pub async fn get_refund(&self, id: impl Display) -> Answer {
        self.get(&format!("/refunds/{id}")).await
    }

    /// `GET /payments/{id}/transactions`
    pub async fn transactions(&self, id: impl Display) -> Answer {
        self.get(&format!("/payments/{id}/transactions")).await
    }

    /// `GET /payments?{query}` (no `?` when `query` is empty).
    pub async fn list_payments(&self, query: &str) -> Answer {
        self.get(&with_query("/payments", query)).await
    }
}
