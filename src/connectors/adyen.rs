//! The Adyen processor connector: Checkout API v71 (JSON, `X-API-Key`), `POST /v71/payments` with raw card
//! data (`scheme`), and captures, cancels and refunds on the payment's PSP reference, which Adyen accepts
//! (`received`) and answers later by notification (`adyen_notifications.rs`). Every call carries an
//! `Idempotency-Key` derived from our own ids and has a deadline.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::processor::{idempotency_key, Authorization, Outcome, Processor};
use crate::model::payment::UseCase;

/// The Checkout API version whose shapes this connector speaks.
const API: &str = "/v71";

/// The credentials of an Adyen processor, opened from the vault only to build the connector.
pub struct AdyenCredentials {
    pub api_key: Zeroizing<String>,
    pub merchant_account: String,
}

pub struct Adyen {
    name: String,
    http: reqwest::Client,
    base: String,
    credentials: AdyenCredentials,
    /// Adyen requires a `returnUrl` on every payment; raw card payments never redirect to it.
    return_url: String,
}

impl Adyen {
    /// `timeout`: the deadline of each call, connection included.
    pub fn new(
        name: &str,
        base: &str,
        credentials: AdyenCredentials,
        return_url: &str,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            name: name.to_owned(),
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            return_url: return_url.to_owned(),
        })
    }

    /// Posts `body` (already encoded; it may hold card data) to `path` under `key`. The bytes move into
    /// the HTTP client, which frees them without zeroing, as it does the Stripe connector's form.
    async fn post(&self, path: &str, key: &str, mut body: Zeroizing<Vec<u8>>) -> Answer {
        let sent = self
            .http
            .post(format!("{}{API}{path}", self.base))
            .header("X-API-Key", self.credentials.api_key.as_str())
            .header("Idempotency-Key", key)
            .header("Content-Type", "application/json")
            .body(std::mem::take(&mut *body))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) if err.is_timeout() => return Answer::Unreachable(TIMEOUT),
            Err(_) => return Answer::Unreachable(UNREACHABLE),
        };
        let status = response.status().as_u16();
        let body: Option<Value> = response.json().await.ok();
        match body {
            Some(body) if (200..300).contains(&status) => Answer::Object(body),
            Some(body) => {
                let error: ServiceError = serde_json::from_value(body).unwrap_or_default();
                tracing::info!(
                    processor = %self.name,
                    status,
                    error_code = error.error_code.as_deref().unwrap_or(""),
                    error_type = error.error_type.as_deref().unwrap_or(""),
                    "Adyen refused a call"
                );
                Answer::Refused(status, error)
            }
            None if (200..300).contains(&status) => Answer::Unreachable(UNREADABLE),
            None => Answer::Refused(status, ServiceError::default()),
        }
    }

    fn encode(&self, body: &Value) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec(body).unwrap_or_default())
    }

    /// A modification of the payment `reference` (`captures`, `cancels`, `refunds`).
    async fn modify(&self, what: &str, reference: &str, key: &str, body: Value) -> Outcome {
        // A PSP reference is Adyen's 16 characters, letters and digits: nothing else goes in the path.
        if reference.is_empty() || !reference.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Outcome::Declined {
                classifier: "PROCESSOR_REFUSED",
                message: "The payment has no processor reference to modify",
            };
        }
        let path = format!("/payments/{reference}/{what}");
        let answer = self.post(&path, key, self.encode(&body)).await;
        match answer {
            Answer::Object(object) => read_received(&object),
            Answer::Refused(status, error) => refused(status, &error, false),
            Answer::Unreachable(message) => Outcome::Error { message },
        }
    }
}

const TIMEOUT: &str = "The processor did not answer in time";
const UNREACHABLE: &str = "The processor could not be reached";
const UNREADABLE: &str = "The processor's answer could not be read";

enum Answer {
    Object(Value),
    Refused(u16, ServiceError),
    Unreachable(&'static str),
}

/// Adyen's error body: `{status, errorCode, message, errorType, pspReference}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ServiceError {
    error_code: Option<String>,
    error_type: Option<String>,
}

/// `shopperInteraction` and `recurringProcessingModel` of a use case: the cardholder is present
/// (`Ecommerce`) when the series starts, absent (`ContAuth`) when the merchant continues it.
pub fn interaction(use_case: UseCase) -> (&'static str, Option<&'static str>) {
    match use_case {
        UseCase::OneOff => ("Ecommerce", None),
        UseCase::Unscheduled => ("Ecommerce", Some("UnscheduledCardOnFile")),
        UseCase::Recurring => ("Ecommerce", Some("Subscription")),
        UseCase::SubsequentUnscheduled => ("ContAuth", Some("UnscheduledCardOnFile")),
        UseCase::SubsequentRecurring => ("ContAuth", Some("Subscription")),
    }
}

/// A refusal's `refusalReasonCode` (Adyen's documented codes, the reason text when the code is missing)
/// as our classifier and message; `None`: the issuer or acquirer was unavailable, not the card's fault.
pub fn refusal(code: &str, reason: &str) -> Option<(&'static str, &'static str)> {
    let code = match code {
        "" => match reason {
            "Not enough balance" => "12",
            "Expired Card" => "6",
            "CVC Declined" => "24",
            "Invalid Card Number" => "8",
            "FRAUD" | "Issuer Suspected Fraud" => "20",
            "Acquirer Error" => "4",
            "Issuer Unavailable" => "9",
            _ => "",
        },
        code => code,
    };
    Some(match code {
        "12" => ("INSUFFICIENT_FUNDS", "The card has insufficient funds"),
        "6" => ("EXPIRED_CARD", "The card has expired"),
        "24" => ("INVALID_SECURITY_CODE", "The security code is incorrect"),
        "8" => ("INVALID_CARD_NUMBER", "The card number is incorrect"),
        "14" | "20" | "22" | "31" => (
            "SUSPECTED_FRAUD",
            "The payment was declined as suspected fraud",
        ),
        "28" | "29" => ("LIMIT_EXCEEDED", "The card's limit was exceeded"),
        "11" | "38" => (
            "AUTHENTICATION_REQUIRED",
            "The issuer requires the cardholder to authenticate",
        ),
        "10" | "23" => ("NOT_SUPPORTED", "The card does not support this payment"),
        "4" | "9" => return None,
        _ => ("DECLINED", "The issuer declined the payment"),
    })
}

/// What an error answer means. `authorizing`: an authorization, where every fault that is not the card's
/// may be tried at the next processor; for later steps a refusal no retry can change is final.
fn refused(status: u16, error: &ServiceError, authorizing: bool) -> Outcome {
    // Adyen's validation errors about the card itself are the card's fault.
    let card_fault = match error.error_code.as_deref() {
        Some("101") => Some(("INVALID_CARD_NUMBER", "The card number is incorrect")),
        Some("103") => Some(("INVALID_SECURITY_CODE", "The security code is incorrect")),
        _ => None,
    };
    if let (Some((classifier, message)), true) = (card_fault, authorizing) {
        return Outcome::Declined {
            classifier,
            message,
        };
    }
    // 704: the same idempotency key is still being processed; 429: Adyen's rate limit.
    if error.error_code.as_deref() == Some("704") {
        return Outcome::Error {
            message: "The processor was busy with the same request",
        };
    }
    match status {
        429 => Outcome::Error {
            message: "The processor limited the request rate",
        },
        500..=599 => Outcome::Error {
            message: "The processor failed",
        },
        401 | 403 if authorizing => Outcome::Error {
            message: "The processor refused the credentials",
        },
        _ if authorizing => Outcome::Error {
            message: "The processor refused the request",
        },
        _ => Outcome::Declined {
            classifier: "PROCESSOR_REFUSED",
            message: "The processor refused the request",
        },
    }
}

/// A payment's answer by `resultCode`.
fn read_payment(payment: &Value) -> Outcome {
    let text = |field: &str| payment[field].as_str().unwrap_or_default();
    match text("resultCode") {
        "Authorised" => Outcome::Approved {
            reference: text("pspReference").to_owned(),
            network_transaction_id: payment["additionalData"]["networkTxReference"]
                .as_str()
                .map(str::to_owned),
        },
        "Refused" => match refusal(text("refusalReasonCode"), text("refusalReason")) {
            Some((classifier, message)) => Outcome::Declined {
                classifier,
                message,
            },
            None => Outcome::Error {
                message: "The processor could not reach the issuer",
            },
        },
        "Cancelled" => Outcome::Declined {
            classifier: "DECLINED",
            message: "The processor cancelled the payment",
        },
        "Error" => Outcome::Error {
            message: "The processor failed to process the payment",
        },
        // A card payment left pending may still be authorised later: never tried elsewhere.
        "Received" | "Pending" => Outcome::Declined {
            classifier: "PROCESSOR_ERROR",
            message: "The processor left the payment pending; it was not tried elsewhere",
        },
        "RedirectShopper" | "IdentifyShopper" | "ChallengeShopper" => Outcome::Declined {
            classifier: "AUTHENTICATION_REQUIRED",
            message: "The issuer requires the cardholder to authenticate",
        },
        _ => Outcome::Error {
            message: "The processor's answer could not be read",
        },
    }
}

fn amount(currency_code: &str, value: i64) -> Value {
    json!({"currency": currency_code, "value": value})
}

#[async_trait]
impl Processor for Adyen {
    fn name(&self) -> &str {
        &self.name
    }

    async fn authorize(&self, request: &Authorization<'_>) -> Outcome {
        let card = request.card;
        let mut method = json!({
            "type": "scheme",
            "number": card.pan.peek(),
            "expiryMonth": format!("{:02}", card.expiry_month),
            "expiryYear": card.expiry_year.to_string(),
        });
        if let Some(name) = &card.cardholder_name {
            method["holderName"] = json!(name);
        }
        if let Some(code) = request.security_code {
            method["cvc"] = json!(code.peek());
        }
        let (shopper_interaction, model) = interaction(request.use_case);
        let mut additional = serde_json::Map::new();
        if !request.capture {
            additional.insert("manualCapture".into(), json!("true"));
        }
        if let (true, Some(id)) = (request.merchant_initiated, request.network_transaction_id) {
            additional.insert("networkTxReference".into(), json!(id));
        }
        let mut body = json!({
            "amount": amount(request.currency_code, request.amount),
            "reference": request.payment_id.to_string(),
            "merchantAccount": self.credentials.merchant_account,
            "paymentMethod": method,
            "shopperInteraction": shopper_interaction,
            "returnUrl": self.return_url,
        });
        if let Some(model) = model {
            body["recurringProcessingModel"] = json!(model);
        }
        if !additional.is_empty() {
            body["additionalData"] = Value::Object(additional);
        }
        let encoded = self.encode(&body);
        // Zero the copies of the card in the document before it is dropped.
        if let Some(method) = body["paymentMethod"].as_object_mut() {
            for value in method.values_mut() {
                if let Value::String(s) = value {
                    zeroize::Zeroize::zeroize(s);
                }
            }
        }
        let key = idempotency_key("authorize", request.payment_id);
        match self.post("/payments", &key, encoded).await {
            Answer::Object(object) => read_payment(&object),
            Answer::Refused(status, error) => refused(status, &error, true),
            Answer::Unreachable(message) => Outcome::Error { message },
        }
    }

    async fn capture(
        &self,
        payment_id: Uuid,
        version: i64,
        reference: &str,
        amount_to_capture: i64,
        currency_code: &str,
    ) -> Outcome {
        let key = format!("{}-v{version}", idempotency_key("capture", payment_id));
        let body = json!({
            "merchantAccount": self.credentials.merchant_account,
            "amount": amount(currency_code, amount_to_capture),
            "reference": payment_id.to_string(),
        });
        self.modify("captures", reference, &key, body).await
    }

    async fn void(&self, payment_id: Uuid, version: i64, reference: &str) -> Outcome {
        let key = format!("{}-v{version}", idempotency_key("void", payment_id));
        let body = json!({
            "merchantAccount": self.credentials.merchant_account,
            "reference": payment_id.to_string(),
        });
        self.modify("cancels", reference, &key, body).await
    }

    async fn refund(
        &self,
        refund_id: Uuid,
        reference: &str,
        amount_to_refund: i64,
        currency_code: &str,
    ) -> Outcome {
        let key = idempotency_key("refund", refund_id);
        let body = json!({
            "merchantAccount": self.credentials.merchant_account,
            "amount": amount(currency_code, amount_to_refund),
            "reference": refund_id.to_string(),
        });
        self.modify("refunds", reference, &key, body).await
    }

    /// Adyen cancels an authorisation by the merchant reference we sent (`POST /cancels` with
    /// `paymentReference`, the payment id), so the PSP reference we never received is not needed. It
    /// answers `received` with the cancel's own PSP reference; the outcome comes later in a
    /// `TECHNICAL_CANCEL` notification. A payment that was already captured (automatic capture) is not
    /// cancelled by this call: that notification then reports `success: false`.
    async fn abandon(&self, payment_id: Uuid) -> Outcome {
        let key = idempotency_key("abandon", payment_id);
        let body = json!({
            "merchantAccount": self.credentials.merchant_account,
            "paymentReference": payment_id.to_string(),
            "reference": key,
        });
        match self.post("/cancels", &key, self.encode(&body)).await {
            Answer::Object(object) => read_received(&object),
            // A refused cancel (bad credentials, validation) may be fixed by the operator: the job
            // asks again until it gives up and records that the payment must be looked for at Adyen.
            Answer::Refused(status, error) => match refused(status, &error, true) {
                Outcome::Declined { message, .. } | Outcome::Error { message } => {
                    Outcome::Error { message }
                }
                other => other,
            },
            Answer::Unreachable(message) => Outcome::Error { message },
        }
    }
}

/// A modification's answer: `received` with the modification's PSP reference.
fn read_received(object: &Value) -> Outcome {
    match (object["status"].as_str(), object["pspReference"].as_str()) {
        (Some("received"), Some(psp)) if !psp.is_empty() => Outcome::Pending {
            reference: psp.to_owned(),
        },
        _ => Outcome::Error {
            message: UNREADABLE,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_and_refusals_map_to_outcomes() {
        let answer = |v: Value| read_payment(&v);
        assert_eq!(
            answer(json!({"resultCode": "Authorised", "pspReference": "P1",
                          "additionalData": {"networkTxReference": "N1"}})),
            Outcome::Approved {
                reference: "P1".into(),
                network_transaction_id: Some("N1".into())
            }
        );
        assert!(matches!(
            answer(
                json!({"resultCode": "Refused", "refusalReason": "Not enough balance", "refusalReasonCode": "12"})
            ),
            Outcome::Declined {
                classifier: "INSUFFICIENT_FUNDS",
                ..
            }
        ));
        assert!(matches!(
            answer(json!({"resultCode": "Refused", "refusalReason": "Expired Card"})),
            Outcome::Declined {
                classifier: "EXPIRED_CARD",
                ..
            }
        ));
        assert!(matches!(
            answer(json!({"resultCode": "Refused", "refusalReasonCode": "9"})),
            Outcome::Error { .. }
        ));
        assert!(matches!(
            answer(json!({"resultCode": "Error"})),
            Outcome::Error { .. }
        ));
        assert!(matches!(
            answer(json!({"resultCode": "Received"})),
            Outcome::Declined {
                classifier: "PROCESSOR_ERROR",
                ..
            }
        ));
        let none = ServiceError::default();
        assert!(matches!(refused(500, &none, false), Outcome::Error { .. }));
        assert!(matches!(refused(422, &none, true), Outcome::Error { .. }));
        assert!(matches!(
            refused(422, &none, false),
            Outcome::Declined {
                classifier: "PROCESSOR_REFUSED",
                ..
            }
        ));
        assert_eq!(
            interaction(UseCase::SubsequentRecurring),
            ("ContAuth", Some("Subscription"))
        );
        assert_eq!(interaction(UseCase::OneOff), ("Ecommerce", None));
    }
}
