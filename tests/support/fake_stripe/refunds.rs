//! `POST /v1/refunds` of the fake payments Stripe: a refund of a succeeded PaymentIntent, partial or
//! whole, never more than what is left, in Stripe's shapes and error bodies.

use serde_json::{json, Value};

use super::errors::{invalid_parameter, missing_parameter, resource_missing};
use super::http::param;
use super::payment_intents::{new_id, PiShared};

pub(super) fn create_refund(shared: &PiShared, form: &[(String, String)]) -> (u16, Value) {
    let Some(pi) = param(form, "payment_intent") else {
        return (400, missing_parameter("payment_intent"));
    };
    let mut data = shared.data();
    let already: i64 = data
        .refunds
        .values()
        .filter(|r| r["payment_intent"] == pi)
        .map(|r| r["amount"].as_i64().unwrap_or(0))
        .sum();
    let Some(intent) = data.intents.get(pi) else {
        return (
            404,
            resource_missing("payment_intent", &format!("No such payment_intent: '{pi}'")),
        );
    };
    if intent["status"] != "succeeded" {
        return (
            400,
            json!({"error": {
                "code": "charge_not_refundable",
                "message": "This PaymentIntent does not have a successful charge to refund.",
                "type": "invalid_request_error",
            }}),
        );
    }
    let received = intent["amount_received"].as_i64().unwrap_or(0);
    let amount = match param(form, "amount").map(str::parse::<i64>) {
        None => received - already,
        Some(Ok(a)) => a,
        Some(Err(_)) => return (400, invalid_parameter("amount", "Invalid integer")),
    };
    if amount <= 0 || amount > received - already {
        return (
            400,
            json!({"error": {
                "code": "amount_too_large",
                "param": "amount",
                "message": format!("Refund amount (${amount}) is greater than unrefunded amount on charge"),
                "type": "invalid_request_error",
            }}),
        );
    }
    let currency = intent["currency"].clone();
    let id = new_id("re");
    let refund = json!({
        "id": id,
        "object": "refund",
        "amount": amount,
        "currency": currency,
        "payment_intent": pi,
        "status": "succeeded",
        "metadata": {"strongroom_refund_id": param(form, "metadata[strongroom_refund_id]")},
    });
    data.refunds.insert(id, refund.clone());
    (200, refund)
}
