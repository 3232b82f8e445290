//! A fake Stripe for payments, its own HTTP server on port 0: `POST /v1/payment_intents` (raw card data,
//! confirmed at once), `/capture`, `/cancel`, and `POST /v1/refunds` (in `refunds.rs`), in Stripe's shapes
//! and error bodies. Decides by Stripe's test card numbers; failures can be injected; counts charges per
//! `Idempotency-Key` and replays a key's first answer as Stripe does.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::cards::random_id;
use super::errors::{
    api_error_body, invalid_parameter, missing_parameter, reply, unknown_parameter,
};
use super::http::{param, parse_pairs};

/// Which call an injected failure applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiRoute {
    Create,
    Capture,
    Cancel,
    Refund,
    Search,
}

/// An injected failure.
#[derive(Clone, Debug)]
pub enum PiFault {
    /// Answer this status with Stripe's `api_error` body.
    Status(u16),
    /// Answer only after this long (longer than the client waits).
    Delay(Duration),
    /// A `card_error` with this code and decline code, as Stripe declines.
    Card(&'static str, Option<&'static str>),
    /// Do the work (and keep the answer for the idempotency key), then answer only after this long: the
    /// client gives up although Stripe acted, and must retry with the same key.
    AnswerLost(Duration),
}

/// A kept answer (status, body) and its request (path, sorted parameters).
struct Replay {
    status: u16,
    body: Value,
    path: String,
    params: Vec<(String, String)>,
}

#[derive(Default)]
pub(super) struct PiData {
    pub intents: HashMap<String, Value>,
    pub refunds: HashMap<String, Value>,
    /// The first answer of each idempotency key, with the request it answered: Stripe refuses a key
    /// used again with other parameters.
    replay: HashMap<String, Replay>,
    /// Charges (intents created) per idempotency key.
    charges: HashMap<String, u32>,
    faults: Vec<(PiRoute, PiFault)>,
    /// The account has Stripe's gated network-transaction-id option for merchant-initiated payments
    /// (`payment_method_options[card][mit_exemption][network_transaction_id]`), which Stripe enables
    /// on request; without it, Stripe refuses the parameter as unknown.
    pub mit_network_transaction_ids: bool,
    /// The form of every create call refused for an unknown parameter, without the card's fields.
    pub refused: Vec<Vec<(String, String)>>,
    /// The form of every create call, in order (test card numbers only).
    pub creates: Vec<Vec<(String, String)>>,
    pub requests: u64,
}

pub(super) struct PiShared {
    api_key: String,
    data: Mutex<PiData>,
}

impl PiShared {
    pub(super) fn data(&self) -> MutexGuard<'_, PiData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakePaymentIntents {
    shared: Arc<PiShared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakePaymentIntents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePaymentIntents {
    /// Starts on 127.0.0.1, on a port the system picks, accepting only `api_key`.
    pub async fn start(api_key: &str) -> anyhow::Result<Self> {
        let shared = Arc::new(PiShared {
            api_key: api_key.to_owned(),
            data: Mutex::new(PiData::default()),
        });
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { shared, addr, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` calls to `route` fail with `fault`.
    pub fn fail_next(&self, route: PiRoute, fault: PiFault, times: usize) {
        let mut data = self.shared.data();
        for _ in 0..times {
            data.faults.push((route, fault.clone()));
        }
    }

    /// Turns on the account's gated option that takes an earlier payment's network transaction id.
    pub fn enable_mit_network_transaction_ids(&self) {
        self.shared.data().mit_network_transaction_ids = true;
    }

    /// How many charges (PaymentIntents created) the key made; a replay makes none.
    pub fn charges_for(&self, key: &str) -> u32 {
        self.shared.data().charges.get(key).copied().unwrap_or(0)
    }

    /// Every idempotency key that made a charge, with its count.
    pub fn charges(&self) -> HashMap<String, u32> {
        self.shared.data().charges.clone()
    }

    /// Every PaymentIntent made, in no order.
    pub fn intents(&self) -> Vec<Value> {
        self.shared.data().intents.values().cloned().collect()
    }

    pub fn intent(&self, id: &str) -> Option<Value> {
        self.shared.data().intents.get(id).cloned()
    }

    /// The parameters of the `n`th create call (without the card number, which it replaces by its last 4).
    pub fn create_params(&self, n: usize) -> Option<HashMap<String, String>> {
        let data = self.shared.data();
        let form = data.creates.get(n)?;
        Some(
            form.iter()
                .map(|(k, v)| {
                    let v = if k == "payment_method_data[card][number]" {
                        v.chars()
                            .rev()
                            .take(4)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    /// The `n`th create call refused for an unknown parameter, without the card's own fields.
    pub fn refused_params(&self, n: usize) -> Option<HashMap<String, String>> {
        Some(self.shared.data().refused.get(n)?.iter().cloned().collect())
    }

    pub fn create_calls(&self) -> usize {
        self.shared.data().creates.len()
    }

    pub fn requests(&self) -> u64 {
        self.shared.data().requests
    }

    /// The refunds made of PaymentIntent `pi`.
    pub fn refunds_of(&self, pi: &str) -> Vec<Value> {
        let data = self.shared.data();
        data.refunds
            .values()
            .filter(|r| r["payment_intent"] == pi)
            .cloned()
            .collect()
    }
}

pub(super) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_id(&mut rand::thread_rng(), 24))
}

pub(super) fn card_error(code: &str, decline_code: Option<&str>, message: &str) -> Value {
    let mut error = json!({"code": code, "message": message, "type": "card_error", "param": ""});
    if let Some(d) = decline_code {
        error["decline_code"] = json!(d);
    }
    json!({ "error": error })
}

pub(super) fn unexpected_state(id: &str, status: &str, what: &str) -> Value {
    json!({"error": {
        "code": "payment_intent_unexpected_state",
        "message": format!("This PaymentIntent could not be {what} because it has a status of {status}."),
        "type": "invalid_request_error",
        "payment_intent": {"id": id, "object": "payment_intent", "status": status},
    }})
}

async fn handle(
    State(shared): State<Arc<PiShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.data().requests += 1;
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if key != Some(shared.api_key.as_str()) {
        return reply(
            401,
            json!({"error": {"message": "Invalid API Key provided: sk_test_****", "type": "invalid_request_error"}}),
        );
    }
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let route = match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => (PiRoute::Create, None),
        ("POST", ["v1", "payment_intents", id, "capture"]) => (PiRoute::Capture, Some(*id)),
        ("POST", ["v1", "payment_intents", id, "cancel"]) => (PiRoute::Cancel, Some(*id)),
        ("POST", ["v1", "refunds"]) => (PiRoute::Refund, None),
        ("GET", ["v1", "payment_intents", "search"]) => (PiRoute::Search, None),
        _ => {
            return reply(
                404,
                json!({"error": {"message": "Unrecognized request URL", "type": "invalid_request_error"}}),
            )
        }
    };
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form = {
        let mut form = parse_pairs(&String::from_utf8_lossy(&body));
        form.sort();
        form
    };
    if let Some(k) = &idempotency {
        let kept = shared.data().replay.get(k).map(|r| {
            (
                r.status,
                r.body.clone(),
                r.path == uri.path() && r.params == form,
            )
        });
        if let Some((status, body, same)) = kept {
            if !same {
                return reply(400, idempotency_error(k));
            }
            let mut response = reply(status, body);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
    }
    let fault = {
        let mut data = shared.data();
        data.faults
            .iter()
            .position(|(r, _)| *r == route.0)
            .map(|at| data.faults.remove(at).1)
    };
    let mut lost = None;
    match fault {
        Some(PiFault::AnswerLost(delay)) => lost = Some(delay),
        // Stripe does not store answers of its own failures: a retry with the same key runs again.
        Some(PiFault::Status(status)) => return reply(status, api_error_body()),
        Some(PiFault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(PiFault::Card(code, decline)) => {
            return reply(402, card_error(code, decline, "Your card was declined."))
        }
        None => {}
    }
    let (status, answer) = match route {
        (PiRoute::Create, _) => create(&shared, &form, idempotency.as_deref()),
        (PiRoute::Capture, Some(id)) => capture(&shared, id, &form),
        (PiRoute::Cancel, Some(id)) => cancel(&shared, id, &form),
        (PiRoute::Refund, _) => super::refunds::create_refund(&shared, &form),
        (PiRoute::Search, _) => search(&shared, uri.query().unwrap_or_default()),
        _ => (500, api_error_body()),
    };
    // Stripe keeps no answer of a request whose parameters failed validation.
    let validation_failed = route.0 == PiRoute::Create && status == 400;
    if let Some(k) = idempotency.filter(|_| !validation_failed) {
        let kept = Replay {
            status,
            body: answer.clone(),
            path: uri.path().to_owned(),
            params: form,
        };
        shared.data().replay.insert(k, kept);
    }
    if let Some(delay) = lost {
        tokio::time::sleep(delay).await;
    }
    reply(status, answer)
}

fn create(shared: &PiShared, form: &[(String, String)], key: Option<&str>) -> (u16, Value) {
    for required in [
        "amount",
        "currency",
        "payment_method_data[type]",
        "payment_method_data[card][number]",
        "payment_method_data[card][exp_month]",
        "payment_method_data[card][exp_year]",
    ] {
        if param(form, required).is_none() {
            return (400, missing_parameter(required));
        }
    }
    let Some(amount) = param(form, "amount").and_then(|a| a.parse::<i64>().ok()) else {
        return (400, invalid_parameter("amount", "Invalid integer"));
    };
    let gated = shared.data().mit_network_transaction_ids;
    if let Some((name, _)) = form
        .iter()
        .find(|(name, _)| !(known_create_parameter(name) || (gated && name == MIT_NTI)))
    {
        let refused = form
            .iter()
            .filter(|(k, _)| !k.starts_with("payment_method_data[card]"))
            .cloned();
        shared.data().refused.push(refused.collect());
        return (400, unknown_parameter(name));
    }
    match param(form, "off_session") {
        None => {}
        Some("true" | "false" | "one_off" | "recurring")
            if param(form, "confirm") == Some("true") => {}
        Some(_) => {
            return (
                400,
                invalid_parameter(
                    "off_session",
                    "off_session is true, false, one_off or recurring, and only with confirm=true",
                ),
            )
        }
    }
    shared.data().creates.push(form.to_vec());
    let number = param(form, "payment_method_data[card][number]").unwrap_or_default();
    let declined = match number {
        "4000000000000002" => Some(("card_declined", Some("generic_decline"))),
        "4000000000009995" => Some(("card_declined", Some("insufficient_funds"))),
        "4000000000000069" => Some(("expired_card", None)),
        "4000000000000127" => Some(("incorrect_cvc", None)),
        "4000000000000119" => Some(("processing_error", None)),
        _ => None,
    };
    if let Some((code, decline)) = declined {
        return (402, card_error(code, decline, "Your card was declined."));
    }
    let manual = param(form, "capture_method") == Some("manual");
    let confirmed = param(form, "confirm") == Some("true");
    let id = new_id("pi");
    let charge = json!({
        "id": new_id("ch"),
        "object": "charge",
        "amount": amount,
        "captured": !manual,
        "payment_method_details": {"type": "card", "card": {
            "last4": number.get(number.len().saturating_sub(4)..).unwrap_or_default(),
            "network_transaction_id": format!("ntx{}", random_id(&mut rand::thread_rng(), 12)),
        }},
    });
    let expanded = form
        .iter()
        .any(|(k, v)| k == "expand[]" && v == "latest_charge");
    let status = match (confirmed, manual) {
        (false, _) => "requires_confirmation",
        (true, true) => "requires_capture",
        (true, false) => "succeeded",
    };
    let intent = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": if manual { amount } else { 0 },
        "amount_received": if manual { 0 } else { amount },
        "capture_method": if manual { "manual" } else { "automatic" },
        "currency": param(form, "currency"),
        "status": status,
        "latest_charge": if expanded { charge.clone() } else { charge["id"].clone() },
        "metadata": {"strongroom_payment_id": param(form, "metadata[strongroom_payment_id]")},
    });
    let mut data = shared.data();
    data.intents.insert(id, intent.clone());
    if let Some(key) = key {
        *data.charges.entry(key.to_owned()).or_default() += 1;
    }
    (200, intent)
}

/// The gated create parameter citing the initial payment's network transaction id.
const MIT_NTI: &str = "payment_method_options[card][mit_exemption][network_transaction_id]";

/// The create parameters this fake knows, as Stripe's API reference (and the SDKs generated from its
/// OpenAPI spec) lists them; Stripe answers any other with `parameter_unknown`. Among the public card
/// options there is no network transaction id of an earlier payment to cite: that one is gated
/// (`mit_network_transaction_ids`).
fn known_create_parameter(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "amount",
        "currency",
        "confirm",
        "capture_method",
        "description",
        "error_on_requires_action",
        "off_session",
        "setup_future_usage",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "payment_method_types[]",
        "expand[]",
        "payment_method_data[type]",
        "payment_method_data[card][number]",
        "payment_method_data[card][exp_month]",
        "payment_method_data[card][exp_year]",
        "payment_method_data[card][cvc]",
        "payment_method_data[billing_details][name]",
    ];
    const CARD_OPTIONS: &[&str] = &[
        "capture_method",
        "cvc_token",
        "installments",
        "mandate_options",
        "moto",
        "network",
        "request_extended_authorization",
        "request_incremental_authorization",
        "request_multicapture",
        "request_overcapture",
        "request_three_d_secure",
        "require_cvc_recollection",
        "setup_future_usage",
        "statement_descriptor_suffix_kana",
        "statement_descriptor_suffix_kanji",
        "three_d_secure",
    ];
    if EXACT.contains(&name) || name.starts_with("metadata[") {
        return true;
    }
    name.strip_prefix("payment_method_options[card][")
        .and_then(|rest| rest.split(']').next())
        .is_some_and(|option| CARD_OPTIONS.contains(&option))
}

fn idempotency_error(key: &str) -> Value {
    json!({"error": {
        "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."),
        "type": "idempotency_error",
    }})
}

/// `GET /v1/payment_intents/search`, for the one query the connector makes:
/// `metadata['strongroom_payment_id']:'<id>'` (and `expand[]=data.latest_charge`, which the intents
/// here always carry). Unlike Stripe's, this search sees a new intent at once.
fn search(shared: &PiShared, query: &str) -> (u16, Value) {
    let pairs = parse_pairs(query);
    let Some(wanted) = param(&pairs, "query")
        .and_then(|q| q.strip_prefix("metadata['strongroom_payment_id']:'"))
        .and_then(|q| q.strip_suffix('\''))
    else {
        return (
            400,
            invalid_parameter("query", "This query is not supported by the fake"),
        );
    };
    let data: Vec<Value> = shared
        .data()
        .intents
        .values()
        .filter(|i| i["metadata"]["strongroom_payment_id"] == wanted)
        .cloned()
        .collect();
    (
        200,
        json!({"object": "search_result", "data": data, "has_more": false, "next_page": null,
               "url": "/v1/payment_intents/search"}),
    )
}

fn capture(shared: &PiShared, id: &str, form: &[(String, String)]) -> (u16, Value) {
    let mut data = shared.data();
    let Some(intent) = data.intents.get_mut(id) else {
        return (
            404,
            super::errors::resource_missing("intent", &format!("No such payment_intent: '{id}'")),
        );
    };
    let status = intent["status"].as_str().unwrap_or_default().to_owned();
    if status != "requires_capture" {
        return (400, unexpected_state(id, &status, "captured"));
    }
    let capturable = intent["amount_capturable"].as_i64().unwrap_or(0);
    let amount = param(form, "amount_to_capture")
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(capturable);
    if amount > capturable {
        return (
            400,
            invalid_parameter(
                "amount_to_capture",
                "The amount to capture must be less than or equal to the capturable amount.",
            ),
        );
    }
    intent["status"] = json!("succeeded");
    intent["amount_capturable"] = json!(0);
    intent["amount_received"] = json!(amount);
    (200, intent.clone())
}

fn cancel(shared: &PiShared, id: &str, form: &[(String, String)]) -> (u16, Value) {
    let mut data = shared.data();
    let Some(intent) = data.intents.get_mut(id) else {
        return (
            404,
            super::errors::resource_missing("intent", &format!("No such payment_intent: '{id}'")),
        );
    };
    let status = intent["status"].as_str().unwrap_or_default().to_owned();
    if !matches!(
        status.as_str(),
        "requires_capture" | "requires_payment_method" | "requires_confirmation"
    ) {
        return (400, unexpected_state(id, &status, "canceled"));
    }
    intent["status"] = json!("canceled");
    intent["amount_capturable"] = json!(0);
    intent["cancellation_reason"] = json!(param(form, "cancellation_reason"));
    (200, intent.clone())
}
