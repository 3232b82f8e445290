//! The Stripe processor connector: PaymentIntents with raw card data (form-encoded), capture, cancel and
//! refunds, every call with an `Idempotency-Key` derived from our own ids and a deadline. Stripe's answers
//! become an `Outcome`: card errors are declines with our classifiers, anything else is a processor error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::processor::{
    idempotency_key, Authorization, Outcome, Processor, ANSWER_LOST, NO_ANSWER,
};
use super::stripe::StripeKey;
use crate::model::payment::UseCase;

/// The API version whose shapes this connector reads.
const STRIPE_VERSION: &str = "2025-03-31.basil";

pub struct StripePayments {
    name: String,
    http: reqwest::Client,
    base: String,
    key: StripeKey,
    /// Stripe refused the network transaction id parameter on this account: not sent again until the
    /// server restarts.
    nti_refused: AtomicBool,
}

/// The parameter citing the initial payment's network transaction id in a merchant-initiated payment.
pub const MIT_NTI: &str = "payment_method_options[card][mit_exemption][network_transaction_id]";

impl StripePayments {
    /// `timeout`: the deadline of each call, connection included.
    pub fn new(name: &str, base: &str, key: StripeKey, timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            name: name.to_owned(),
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            nti_refused: AtomicBool::new(false),
        })
    }

    /// Posts `form` to `path` under `key`, and reads Stripe's answer.
    async fn post(&self, path: &str, key: &str, form: &[(String, String)]) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .form(form);
        self.send(request).await
    }

    /// Reads `path` with `query`.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let sent = request
            .bearer_auth(self.key.expose())
            .header("Stripe-Version", STRIPE_VERSION)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) if err.is_timeout() => return Answer::Unreachable(NO_ANSWER),
            // Not connected: nothing was sent.
            Err(err) if err.is_connect() => return Answer::Unreachable(UNREACHABLE),
            Err(_) => return Answer::Unreachable(ANSWER_LOST),
        };
        let status = response.status().as_u16();
        let body: Option<Value> = response.json().await.ok();
        match body {
            Some(body) if (200..300).contains(&status) => Answer::Object(body),
            Some(body) => {
                let error = serde_json::from_value::<Envelope>(body)
                    .map(|e| e.error)
                    .unwrap_or_default();
                tracing::info!(
                    processor = %self.name,
                    status,
                    code = error.code.as_deref().unwrap_or(""),
                    decline_code = error.decline_code.as_deref().unwrap_or(""),
                    "Stripe refused a call"
                );
                Answer::Refused(status, error)
            }
            None if (200..300).contains(&status) => Answer::Unreachable(ANSWER_LOST),
            None => Answer::Refused(status, StripeErrorObject::default()),
        }
    }

    /// The PaymentIntent our authorization of `payment_id` made, found by the metadata it carries.
    /// Stripe's search lags writes (under a minute, it says), so "none" may mean "not yet".
    async fn find_intent(&self, payment_id: Uuid) -> Result<Option<Value>, Outcome> {
        let query = format!("metadata['strongroom_payment_id']:'{payment_id}'");
        let answer = self
            .get(
                "/v1/payment_intents/search",
                &[("query", &query), ("expand[]", "data.latest_charge")],
            )
            .await;
        match answer {
            Answer::Object(found) => Ok(found["data"]
                .as_array()
                .and_then(|data| data.first())
                .cloned()),
            Answer::Refused(..) => Err(Outcome::Error {
                message: "The processor refused to search for the payment",
            }),
            Answer::Unreachable(message) => Err(Outcome::Error { message }),
        }
    }

    /// Cancels an intent our authorization made (or refunds it if it was captured), under keys of its
    /// own so that a retry acts once.
    async fn undo(&self, payment_id: Uuid, intent: &Value) -> Outcome {
        let id = id_of(intent);
        match intent["status"].as_str().unwrap_or_default() {
            // Ours, cancelled by an earlier try whose answer was lost.
            "canceled" if intent["cancellation_reason"] == "abandoned" => Outcome::Approved {
                reference: id,
                network_transaction_id: None,
            },
            "canceled" | "requires_payment_method" => Outcome::Declined {
                classifier: "NOTHING_HELD",
                message: "The processor holds nothing for this payment",
            },
            "succeeded" => {
                let form = [
                    pair("payment_intent", &id),
                    pair("metadata[strongroom_payment_id]", payment_id),
                ];
                let key = idempotency_key("abandon-refund", payment_id);
                let answer = self.post("/v1/refunds", &key, &form).await;
                answered(answer, false, |refund| {
                    match refund["status"].as_str().unwrap_or_default() {
                        "succeeded" | "pending" => Outcome::Approved {
                            reference: id_of(refund),
                            network_transaction_id: None,
                        },
                        _ => Outcome::Error {
                            message: "The processor did not refund the abandoned payment",
                        },
                    }
                })
            }
            "processing" => Outcome::Error {
                message: "The processor is still processing the payment",
            },
            _ => {
                let path = format!("/v1/payment_intents/{id}/cancel");
                let key = idempotency_key("abandon", payment_id);
                let form = [pair("cancellation_reason", "abandoned")];
                let answer = self.post(&path, &key, &form).await;
                answered(answer, false, |intent| {
                    match intent["status"].as_str().unwrap_or_default() {
                        "canceled" => Outcome::Approved {
                            reference: id_of(intent),
                            network_transaction_id: None,
                        },
                        _ => Outcome::Error {
                            message: "The processor did not cancel the abandoned payment",
                        },
                    }
                })
            }
        }
    }
}

const UNREACHABLE: &str = "The processor could not be reached";

enum Answer {
    Object(Value),
    Refused(u16, StripeErrorObject),
    Unreachable(&'static str),
}

#[derive(Deserialize)]
struct Envelope {
    error: StripeErrorObject,
}

#[derive(Deserialize, Default)]
struct StripeErrorObject {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    /// The parameter a validation error is about.
    param: Option<String>,
}

/// A card error's code (the decline code first) as our classifier and message; `None`: Stripe says to
/// try again, which is the processor's trouble, not the card's.
pub fn decline(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "insufficient_funds" => ("INSUFFICIENT_FUNDS", "The card has insufficient funds"),
        "expired_card" => ("EXPIRED_CARD", "The card has expired"),
        "incorrect_cvc" | "invalid_cvc" => {
            ("INVALID_SECURITY_CODE", "The security code is incorrect")
        }
        "incorrect_number" | "invalid_number" => {
            ("INVALID_CARD_NUMBER", "The card number is incorrect")
        }
        "invalid_expiry_month" | "invalid_expiry_year" => {
            ("INVALID_EXPIRY", "The expiry date is incorrect")
        }
        "lost_card" => ("LOST_CARD", "The card was reported lost"),
        "stolen_card" => ("STOLEN_CARD", "The card was reported stolen"),
        "fraudulent" | "merchant_blacklist" => (
            "SUSPECTED_FRAUD",
            "The payment was declined as suspected fraud",
        ),
        "card_velocity_exceeded" | "withdrawal_count_limit_exceeded" => {
            ("LIMIT_EXCEEDED", "The card's limit was exceeded")
        }
        "authentication_required" => (
            "AUTHENTICATION_REQUIRED",
            "The issuer requires the cardholder to authenticate",
        ),
        "card_not_supported" | "currency_not_supported" => {
            ("NOT_SUPPORTED", "The card does not support this payment")
        }
        "processing_error" | "try_again_later" | "issuer_not_available" | "reenter_transaction" => {
            return None
        }
        _ => ("DECLINED", "The issuer declined the payment"),
    })
}

/// What a refusal means. `authorizing`: an authorization, where every fault that is not the card's may be
/// tried at the next processor; for later steps a refusal that no retry can change is final.
fn refused(status: u16, error: &StripeErrorObject, authorizing: bool) -> Outcome {
    if error.kind.as_deref() == Some("card_error") {
        let code = error
            .decline_code
            .as_deref()
            .or(error.code.as_deref())
            .unwrap_or("");
        return match decline(code) {
            Some((classifier, message)) => Outcome::Declined {
                classifier,
                message,
            },
            None => Outcome::Error {
                message: "The processor asked to try again",
            },
        };
    }
    let passing = matches!(status, 409 | 429 | 500..=599)
        || matches!(error.code.as_deref(), Some("lock_timeout" | "rate_limit"));
    match (passing, status) {
        (true, 409) => Outcome::Error {
            message: "The processor was busy with the same request",
        },
        (true, 429) => Outcome::Error {
            message: "The processor limited the request rate",
        },
        (true, _) => Outcome::Error {
            message: "The processor failed",
        },
        (false, 401 | 403) if authorizing => Outcome::Error {
            message: "The processor refused the credentials",
        },
        (false, _) if authorizing => Outcome::Error {
            message: "The processor refused the request",
        },
        (false, _) => Outcome::Declined {
            classifier: "PROCESSOR_REFUSED",
            message: "The processor refused the request",
        },
    }
}

fn answered(answer: Answer, authorizing: bool, read: impl FnOnce(&Value) -> Outcome) -> Outcome {
    match answer {
        Answer::Object(object) => read(&object),
        Answer::Refused(status, error) => refused(status, &error, authorizing),
        Answer::Unreachable(message) => Outcome::Error { message },
    }
}

fn id_of(object: &Value) -> String {
    object["id"].as_str().unwrap_or_default().to_owned()
}

/// A PaymentIntent after confirmation: approved when it succeeded or awaits capture.
fn read_intent(intent: &Value) -> Outcome {
    match intent["status"].as_str().unwrap_or_default() {
        "succeeded" | "requires_capture" => Outcome::Approved {
            reference: id_of(intent),
            network_transaction_id: intent["latest_charge"]["payment_method_details"]["card"]
                ["network_transaction_id"]
                .as_str()
                .map(str::to_owned),
        },
        "requires_action" => Outcome::Declined {
            classifier: "AUTHENTICATION_REQUIRED",
            message: "The issuer requires the cardholder to authenticate",
        },
        "requires_payment_method" | "canceled" => Outcome::Declined {
            classifier: "DECLINED",
            message: "The issuer declined the payment",
        },
        _ => Outcome::Error {
            message: "The processor left the payment unfinished",
        },
    }
}

fn pair(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

#[async_trait]
impl Processor for StripePayments {
    fn name(&self) -> &str {
        &self.name
    }

    async fn authorize(&self, request: &Authorization<'_>) -> Outcome {
        let card = request.card;
        let mut form = vec![
            pair("amount", request.amount),
            pair("currency", request.currency_code.to_ascii_lowercase()),
            pair("confirm", "true"),
            pair(
                "capture_method",
                if request.capture {
                    "automatic"
                } else {
                    "manual"
                },
            ),
            pair("payment_method_types[]", "card"),
            pair("payment_method_data[type]", "card"),
            pair("payment_method_data[card][number]", card.pan.peek()),
            pair("payment_method_data[card][exp_month]", card.expiry_month),
            pair("payment_method_data[card][exp_year]", card.expiry_year),
            pair("metadata[strongroom_payment_id]", request.payment_id),
            pair("expand[]", "latest_charge"),
        ];
        if let Some(code) = request.security_code {
            form.push(pair("payment_method_data[card][cvc]", code.peek()));
        }
        if let Some(name) = &card.cardholder_name {
            form.push(pair("payment_method_data[billing_details][name]", name));
        }
        // Merchant-initiated: the cardholder is not there to authenticate, and the initial payment's
        // network transaction id links this one to the series. Stripe takes that id only where it has
        // enabled the option on the account (it is not in the public API reference); elsewhere it
        // refuses the parameter as unknown before doing anything, so the payment is sent again
        // without it, under the same key (Stripe keeps no answer for a request it refused so).
        if request.merchant_initiated {
            // Stripe's finer values: a payment of a recurring series, or an unscheduled one.
            let series = match request.use_case {
                UseCase::SubsequentRecurring => "recurring",
                _ => "one_off",
            };
            form.push(pair("off_session", series));
            if let (Some(id), false) = (
                request.network_transaction_id,
                self.nti_refused.load(Ordering::Relaxed),
            ) {
                form.push(pair(MIT_NTI, id));
            }
        }
        let key = idempotency_key("authorize", request.payment_id);
        let mut answer = self.post("/v1/payment_intents", &key, &form).await;
        if let Answer::Refused(400, error) = &answer {
            if error.code.as_deref() == Some("parameter_unknown")
                && error.param.as_deref() == Some(MIT_NTI)
            {
                tracing::info!(
                    processor = %self.name,
                    "Stripe does not take the initial payment's network transaction id on this account; sent without it"
                );
                self.nti_refused.store(true, Ordering::Relaxed);
                form.retain(|(name, _)| name != MIT_NTI);
                answer = self.post("/v1/payment_intents", &key, &form).await;
            }
        }
        // Zero the copies of the card in the form before it is dropped.
        for (_, value) in form.iter_mut() {
            zeroize::Zeroize::zeroize(value);
        }
        match answer {
            // The key was used with other parameters: a retry (by recovery, without the security code
            // that was used up) of an authorization Stripe did process. Its intent tells the outcome;
            // not finding it yet leaves the outcome unknown, and the authorization is undone later.
            Answer::Refused(400, error) if error.kind.as_deref() == Some("idempotency_error") => {
                match self.find_intent(request.payment_id).await {
                    Ok(Some(intent)) => read_intent(&intent),
                    Ok(None) | Err(_) => Outcome::Error {
                        message: ANSWER_LOST,
                    },
                }
            }
            answer => answered(answer, true, read_intent),
        }
    }

    async fn capture(
        &self,
        payment_id: Uuid,
        version: i64,
        reference: &str,
        amount: i64,
        _currency_code: &str,
    ) -> Outcome {
        let path = format!("/v1/payment_intents/{reference}/capture");
        let key = format!("{}-v{version}", idempotency_key("capture", payment_id));
        let answer = self
            .post(&path, &key, &[pair("amount_to_capture", amount)])
            .await;
        answered(answer, false, |intent| {
            match intent["status"].as_str().unwrap_or_default() {
                "succeeded" => Outcome::Approved {
                    reference: id_of(intent),
                    network_transaction_id: None,
                },
                _ => Outcome::Error {
                    message: "The processor left the capture unfinished",
                },
            }
        })
    }

    async fn void(&self, payment_id: Uuid, version: i64, reference: &str) -> Outcome {
        let path = format!("/v1/payment_intents/{reference}/cancel");
        let key = format!("{}-v{version}", idempotency_key("void", payment_id));
        let answer = self.post(&path, &key, &[]).await;
        answered(answer, false, |intent| {
            match intent["status"].as_str().unwrap_or_default() {
                "canceled" => Outcome::Approved {
                    reference: id_of(intent),
                    network_transaction_id: None,
                },
                _ => Outcome::Error {
                    message: "The processor left the void unfinished",
                },
            }
        })
    }

    async fn abandon(&self, payment_id: Uuid) -> Outcome {
        match self.find_intent(payment_id).await {
            Ok(Some(intent)) => self.undo(payment_id, &intent).await,
            Ok(None) => Outcome::Error {
                message: "The processor shows no payment for it (yet)",
            },
            Err(outcome) => outcome,
        }
    }

    async fn refund(
        &self,
        refund_id: Uuid,
        reference: &str,
        amount: i64,
        _currency_code: &str,
    ) -> Outcome {
        let key = idempotency_key("refund", refund_id);
        let form = [
            pair("payment_intent", reference),
            pair("amount", amount),
            pair("metadata[strongroom_refund_id]", refund_id),
        ];
        let answer = self.post("/v1/refunds", &key, &form).await;
        answered(answer, false, |refund| {
            match refund["status"].as_str().unwrap_or_default() {
                "succeeded" | "pending" => Outcome::Approved {
                    reference: id_of(refund),
                    network_transaction_id: None,
                },
                "failed" | "canceled" => Outcome::Declined {
                    classifier: "REFUND_FAILED",
                    message: "The processor could not refund the payment",
                },
                _ => Outcome::Error {
                    message: "The processor left the refund unfinished",
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_error(code: &str, decline_code: Option<&str>) -> StripeErrorObject {
        StripeErrorObject {
            kind: Some("card_error".into()),
            code: Some(code.into()),
            decline_code: decline_code.map(str::to_owned),
            param: None,
        }
    }

    #[test]
    fn card_errors_are_declines_and_the_rest_are_processor_errors() {
        assert_eq!(
            refused(
                402,
                &card_error("card_declined", Some("insufficient_funds")),
                true
            ),
            Outcome::Declined {
                classifier: "INSUFFICIENT_FUNDS",
                message: "The card has insufficient funds"
            }
        );
        assert!(matches!(
            refused(402, &card_error("expired_card", None), true),
            Outcome::Declined {
                classifier: "EXPIRED_CARD",
                ..
            }
        ));
        assert!(matches!(
            refused(402, &card_error("processing_error", None), true),
            Outcome::Error { .. }
        ));
        let none = StripeErrorObject::default();
        assert!(matches!(refused(500, &none, true), Outcome::Error { .. }));
        assert!(matches!(refused(401, &none, true), Outcome::Error { .. }));
        assert!(matches!(
            refused(400, &none, false),
            Outcome::Declined { .. }
        ));
        assert!(matches!(refused(429, &none, false), Outcome::Error { .. }));
    }
}
