//! The fake's endpoints: `POST /v71/payments` (decides by test card number: 4000000000000002 refused,
//! 4000000000009995 not enough balance, 4000000000000069 expired, 4000000000000127 CVC declined,
//! 4000000000000119 an internal error; any other Luhn-valid number authorised), and captures, cancels and
//! refunds on a PSP reference, and cancels by merchant reference (`/v71/cancels`, answered `201` as
//! Adyen does, notified as `TECHNICAL_CANCEL`), each answered `received` with its notification queued.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Value};

use super::notify::queue;
use super::{AdyenFault, AdyenRoute, FakePayment, Shared};

/// Adyen's error body.
pub(crate) fn error(status: u16, code: &str, message: &str, kind: &str) -> (u16, Value) {
    let body = json!({"status": status, "errorCode": code, "message": message, "errorType": kind,
                      "pspReference": psp_reference()});
    (status, body)
}

fn for_status(status: u16) -> (u16, Value) {
    match status {
        401 => error(
            401,
            "000",
            "HTTP Status Response - Unauthorized",
            "security",
        ),
        403 => error(403, "901", "Invalid Merchant Account", "security"),
        422 => error(422, "702", "Structure is invalid", "validation"),
        429 => error(429, "000", "Too many requests", "security"),
        _ => error(status, "000", "An unknown error occurred", "internal"),
    }
}

fn reply((status, body): (u16, Value)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

pub(crate) fn psp_reference() -> String {
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn luhn_valid(number: &str) -> bool {
    let digits: Option<Vec<u32>> = number.chars().map(|c| c.to_digit(10)).collect();
    let Some(digits) = digits else { return false };
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                (d * 2) % 9 + u32::from(*d == 9) * 9
            } else {
                *d
            }
        })
        .sum();
    digits.len() >= 12 && sum % 10 == 0
}

/// What comes before the work: the key, an injected fault, a replay of the idempotency key.
enum Gate {
    /// Do the work under this idempotency key; answer only after the delay, if there is one.
    Go(Option<String>, Option<std::time::Duration>),
    Answer(Response),
}

/// The answer, after the delay of a lost answer.
async fn late(answer: (u16, Value), lost: Option<std::time::Duration>) -> Response {
    if let Some(delay) = lost {
        tokio::time::sleep(delay).await;
    }
    reply(answer)
}

async fn gate(shared: &Arc<Shared>, headers: &HeaderMap, route: AdyenRoute) -> Gate {
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("x-api-key") != Some(shared.config.api_key.as_str()) {
        return Gate::Answer(reply(for_status(401)));
    }
    let key = header("idempotency-key").map(str::to_owned);
    let fault = {
        let mut data = shared.data();
        data.requests += 1;
        if let Some(stored) = key.as_ref().and_then(|k| data.replay.get(k)) {
            let mut response = reply(stored.clone());
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return Gate::Answer(response);
        }
        let at = data.faults.iter().position(|(r, _)| *r == route);
        at.map(|at| data.faults.remove(at).1)
    };
    match fault {
        Some(AdyenFault::Status(status)) => Gate::Answer(reply(for_status(status))),
        Some(AdyenFault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            Gate::Answer(reply(for_status(500)))
        }
        Some(AdyenFault::Refusal(code, reason)) => Gate::Answer(reply((
            200,
            json!({"resultCode": "Refused", "refusalReasonCode": code, "refusalReason": reason,
                   "pspReference": psp_reference()}),
        ))),
        Some(AdyenFault::AnswerLost(delay)) => Gate::Go(key, Some(delay)),
        None => Gate::Go(key, None),
    }
}

/// Remembers the key's answer and counts its work.
fn remember(shared: &Shared, key: Option<String>, answer: &(u16, Value)) {
    if let Some(key) = key {
        let mut data = shared.data();
        *data.charges.entry(key.clone()).or_insert(0) += 1;
        data.replay.insert(key, answer.clone());
    }
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, lost) = match gate(&shared, &headers, AdyenRoute::Payments).await {
        Gate::Go(key, lost) => (key, lost),
        Gate::Answer(response) => return response,
    };
    let answer = authorise(&shared, &body);
    if answer.0 == 200 {
        remember(&shared, key, &answer);
    }
    late(answer, lost).await
}

fn authorise(shared: &Shared, body: &[u8]) -> (u16, Value) {
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "702", "Unexpected input: not JSON", "validation");
    };
    for field in [
        "amount",
        "merchantAccount",
        "paymentMethod",
        "reference",
        "returnUrl",
    ] {
        if request.get(field).is_none() {
            let message = format!("Required field '{field}' is not provided.");
            return error(422, "130", &message, "validation");
        }
    }
    if request["merchantAccount"] != shared.config.merchant_account.as_str() {
        return for_status(403);
    }
    let number = request["paymentMethod"]["number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let last4 = number[number.len().saturating_sub(4)..].to_owned();
    request["paymentMethod"]["number"] = json!(last4);
    shared.data().payment_requests.push(request.clone());
    if request["paymentMethod"]["type"] != "scheme" || !luhn_valid(&number) {
        return error(422, "101", "Invalid card number", "validation");
    }
    let refused = |code: &str, reason: &str| {
        let body = json!({"resultCode": "Refused", "refusalReasonCode": code,
                          "refusalReason": reason, "pspReference": psp_reference(),
                          "merchantReference": request["reference"]});
        (200, body)
    };
    match number.as_str() {
        "4000000000000002" => return refused("2", "Refused"),
        "4000000000009995" => return refused("12", "Not enough balance"),
        "4000000000000069" => return refused("6", "Expired Card"),
        "4000000000000127" => return refused("24", "CVC Declined"),
        "4000000000000119" => return for_status(500),
        _ => {}
    }
    let payment = FakePayment {
        psp_reference: psp_reference(),
        merchant_reference: request["reference"].as_str().unwrap_or_default().to_owned(),
        currency: request["amount"]["currency"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        value: request["amount"]["value"].as_i64().unwrap_or(0),
        captured: 0,
        refunded: 0,
        cancelled: false,
        network_tx_reference: format!("MCC{}", &psp_reference()[..12]),
    };
    if request["additionalData"]["manualCapture"] != "true" {
        // Captured at once: no CAPTURE notification for automatic capture in this fake.
        let mut automatic = payment.clone();
        automatic.captured = automatic.value;
        return authorised(shared, automatic);
    }
    authorised(shared, payment)
}

fn authorised(shared: &Shared, payment: FakePayment) -> (u16, Value) {
    let body = json!({
        "resultCode": "Authorised",
        "pspReference": payment.psp_reference,
        "merchantReference": payment.merchant_reference,
        "amount": {"currency": payment.currency, "value": payment.value},
        "additionalData": {"networkTxReference": payment.network_tx_reference},
    });
    shared
        .data()
        .payments
        .insert(payment.psp_reference.clone(), payment);
    (200, body)
}

pub(crate) async fn modify(
    State(shared): State<Arc<Shared>>,
    Path((psp, what)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = match what.as_str() {
        "captures" => AdyenRoute::Captures,
        "cancels" => AdyenRoute::Cancels,
        "refunds" => AdyenRoute::Refunds,
        _ => return reply(error(404, "000", "Not found", "validation")),
    };
    let (key, lost) = match gate(&shared, &headers, route).await {
        Gate::Go(key, lost) => (key, lost),
        Gate::Answer(response) => return response,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(error(
            400,
            "702",
            "Unexpected input: not JSON",
            "validation",
        ));
    };
    if request["merchantAccount"] != shared.config.merchant_account.as_str() {
        return reply(for_status(403));
    }
    let answer = modification(&shared, route, &psp, &request);
    shared
        .data()
        .modifications
        .push((format!("/v71/payments/{psp}/{what}"), request));
    if answer.0 == 200 {
        remember(&shared, key, &answer);
    }
    if shared.config.auto_notify {
        let shared = shared.clone();
        // A moment later, as Adyen does: the caller records its pending answer first.
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            super::notify::deliver_all(&shared).await
        });
    }
    late(answer, lost).await
}

fn modification(shared: &Shared, route: AdyenRoute, psp: &str, request: &Value) -> (u16, Value) {
    let mut data = shared.data();
    let Some(payment) = data.payments.get_mut(psp) else {
        return error(
            422,
            "167",
            "Original pspReference required for this operation",
            "validation",
        );
    };
    let value = request["amount"]["value"].as_i64().unwrap_or(payment.value);
    let (event, ok) = match route {
        AdyenRoute::Captures => {
            let ok = payment.captured == 0 && !payment.cancelled && value <= payment.value;
            if ok {
                payment.captured = value;
            }
            ("CAPTURE", ok)
        }
        AdyenRoute::Cancels => {
            let ok = payment.captured == 0 && !payment.cancelled;
            payment.cancelled |= ok;
            ("CANCELLATION", ok)
        }
        _ => {
            let ok = value <= payment.captured - payment.refunded;
            if ok {
                payment.refunded += value;
            }
            ("REFUND", ok)
        }
    };
    let reference = psp_reference();
    let mut body = json!({
        "merchantAccount": shared.config.merchant_account,
        "paymentPspReference": psp,
        "pspReference": reference,
        "reference": request["reference"],
        "status": "received",
    });
    if route != AdyenRoute::Cancels {
        body["amount"] = json!({"currency": payment.currency, "value": value});
    }
    let original = payment.clone();
    queue(shared, &mut data, event, ok, &reference, &original, value);
    (200, body)
}

/// `POST /v71/cancels`: cancels what was authorised under `paymentReference` (the merchant reference)
/// and not captured; the outcome is a `TECHNICAL_CANCEL` notification, unsuccessful when nothing could
/// be cancelled (nothing authorised under that reference, or already captured).
pub(crate) async fn cancel_by_reference(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, lost) = match gate(&shared, &headers, AdyenRoute::CancelsByReference).await {
        Gate::Go(key, lost) => (key, lost),
        Gate::Answer(response) => return response,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(error(
            400,
            "702",
            "Unexpected input: not JSON",
            "validation",
        ));
    };
    for field in ["merchantAccount", "paymentReference"] {
        if request.get(field).and_then(Value::as_str).is_none() {
            let message = format!("Required field '{field}' is not provided.");
            return reply(error(422, "130", &message, "validation"));
        }
    }
    if request["merchantAccount"] != shared.config.merchant_account.as_str() {
        return reply(for_status(403));
    }
    let answer = cancel_reference(&shared, &request);
    shared
        .data()
        .modifications
        .push(("/v71/cancels".to_owned(), request));
    remember(&shared, key, &answer);
    if shared.config.auto_notify {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            super::notify::deliver_all(&shared).await
        });
    }
    late(answer, lost).await
}

fn cancel_reference(shared: &Shared, request: &Value) -> (u16, Value) {
    let merchant_reference = request["paymentReference"].as_str().unwrap_or_default();
    let mut data = shared.data();
    let mut found: Option<FakePayment> = None;
    let mut ok = false;
    for payment in data
        .payments
        .values_mut()
        .filter(|p| p.merchant_reference == merchant_reference)
    {
        if payment.captured == 0 && !payment.cancelled {
            payment.cancelled = true;
            ok = true;
        }
        found = Some(payment.clone());
    }
    let reference = psp_reference();
    let about = found.unwrap_or_else(|| FakePayment {
        psp_reference: String::new(),
        merchant_reference: merchant_reference.to_owned(),
        currency: "EUR".into(),
        value: 0,
        captured: 0,
        refunded: 0,
        cancelled: false,
        network_tx_reference: String::new(),
    });
    let value = about.value;
    queue(
        shared,
        &mut data,
        "TECHNICAL_CANCEL",
        ok,
        &reference,
        &about,
        value,
    );
    let body = json!({
        "merchantAccount": shared.config.merchant_account,
        "paymentReference": merchant_reference,
        "pspReference": reference,
        "reference": request["reference"],
        "status": "received",
    });
    (201, body)
}
