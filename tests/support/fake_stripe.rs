//! A fake Stripe: a real HTTP server on localhost speaking the few endpoints the Stripe import uses
//! (customers, a customer's card payment methods, the Vault and Forward API), in Stripe's shapes,
//! with fault injection and counters. Self-contained (it does not use the `strongroom` crate): it is
//! compiled into the integration tests and into `examples/fake_stripe.rs`.
//!
//! Card numbers live only in memory: nothing here logs or prints them (`FakeCard`'s `Debug` masks
//! the number), and the forwarding answer redacts them as Stripe does.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

/// The account every key belongs to, as named in permission errors.
pub const ACCOUNT_ID: &str = "acct_fake";

/// The replacements the Forward API accepts.
pub const REPLACEMENTS: [&str; 4] = ["card_cvc", "card_expiry", "card_number", "cardholder_name"];

/// A card as the fake stores it. `Debug` shows only the last four digits of the number.
#[derive(Clone, PartialEq, Eq)]
pub struct FakeCard {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub name: Option<String>,
    pub cvc: Option<String>,
}

impl fmt::Debug for FakeCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeCard")
            .field("number", &format_args!("****{}", last4(&self.number)))
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .field("name", &self.name)
            .field("cvc", &self.cvc.as_ref().map(|_| "***"))
            .finish()
    }
}

impl FakeCard {
    /// A Visa test card: `4242` + `n` on 11 digits + the Luhn check digit (16 digits, distinct for
    /// each `n`), expiring 12/2030, held by "Test Holder", CVC "123".
    pub fn visa(n: u32) -> FakeCard {
        let body = format!("4242{n:011}");
        let check = luhn_check_digit(&body);
        FakeCard {
            number: format!("{body}{check}"),
            exp_month: 12,
            exp_year: 2030,
            name: Some("Test Holder".to_owned()),
            cvc: Some("123".to_owned()),
        }
    }

    pub fn last4(&self) -> String {
        last4(&self.number)
    }
}

/// The digit that makes `body` followed by it pass the Luhn check (non-digits count as 0).
pub fn luhn_check_digit(body: &str) -> u32 {
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Whether `number` is all digits and passes the Luhn check.
pub fn luhn_valid(number: &str) -> bool {
    let Some((body, check)) = number.len().checked_sub(1).map(|i| number.split_at(i)) else {
        return false;
    };
    !body.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && check.chars().next().and_then(|c| c.to_digit(10)) == Some(luhn_check_digit(body))
}

#[derive(Clone, Debug)]
pub struct FakeStripeConfig {
    /// The only secret key accepted.
    pub api_key: String,
    /// A key that authenticates but is refused (403) on every endpoint.
    pub restricted_key: Option<String>,
    /// When false, every forwarding request is refused with `forwarding_api_inactive`.
    pub forwarding_enabled: bool,
    /// A token bucket of this capacity refilled at this many tokens a second, over all requests;
    /// a request that finds it empty is answered 429. `None`: unlimited.
    pub rate_limit_per_sec: Option<u32>,
    /// Added to every response.
    pub latency: Duration,
}

impl Default for FakeStripeConfig {
    fn default() -> Self {
        FakeStripeConfig {
            api_key: "sk_test_fake".to_owned(),
            restricted_key: Some("rk_test_restricted".to_owned()),
            forwarding_enabled: true,
            rate_limit_per_sec: None,
            latency: Duration::ZERO,
        }
    }
}

/// Where an injected failure applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/customers`
    Customers,
    /// `GET /v1/customers/{id}/payment_methods`
    PaymentMethods,
    /// `POST /v1/forwarding/requests`
    Forwarding,
    /// Any of the three.
    Any,
}

/// Counters since start. The per-endpoint counts are of authenticated requests that reached the
/// endpoint (including the ones then refused as restricted or by an injected failure); `requests`
/// counts every request but `GET /_fake/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FakeStats {
    pub requests: u64,
    pub customer_lists: u64,
    pub payment_method_lists: u64,
    pub forwards: u64,
    /// Posts that reached the destination (a refused connection is not one).
    pub destination_posts: u64,
    /// Every 429 sent, by the rate limit or injected.
    pub rate_limited: u64,
    /// Answers from `fail_next` and `fail_forward_of`.
    pub injected_failures: u64,
}

struct Customer {
    id: String,
    created: i64,
    payment_methods: Vec<String>,
}

struct StoredPaymentMethod {
    customer: String,
    card: FakeCard,
    created: i64,
    fingerprint: String,
}

struct Injection {
    route: Route,
    status: u16,
    remaining: u32,
}

struct Bucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Data {
    customers: Vec<Customer>,
    customer_index: HashMap<String, usize>,
    payment_methods: HashMap<String, StoredPaymentMethod>,
    injections: Vec<Injection>,
    forward_failures: HashMap<String, (u16, u32)>,
    deleted_at_forward: HashSet<String>,
    idempotent: HashMap<String, Value>,
    in_flight: HashSet<String>,
    destination_posts: HashMap<String, u32>,
    stats: FakeStats,
    bucket: Option<Bucket>,
    next_serial: u32,
}

impl Data {
    fn insert_customer(&mut self, cards: Vec<FakeCard>) -> (String, Vec<String>) {
        let created = chrono::Utc::now().timestamp();
        let mut rng = rand::thread_rng();
        let id = loop {
            let id = format!("cus_{}", random_id(&mut rng, 14));
            if !self.customer_index.contains_key(&id) {
                break id;
            }
        };
        let mut pms = Vec::with_capacity(cards.len());
        for card in cards {
            let pm = loop {
                let pm = format!("pm_{}", random_id(&mut rng, 24));
                if !self.payment_methods.contains_key(&pm) {
                    break pm;
                }
            };
            let fingerprint = fingerprint(&card.number);
            self.payment_methods.insert(
                pm.clone(),
                StoredPaymentMethod {
                    customer: id.clone(),
                    card,
                    created,
                    fingerprint,
                },
            );
            pms.push(pm);
        }
        self.customer_index.insert(id.clone(), self.customers.len());
        self.customers.push(Customer {
            id: id.clone(),
            created,
            payment_methods: pms.clone(),
        });
        (id, pms)
    }

    /// The status of the next injected failure for `route`, used up.
    fn take_injection(&mut self, route: Route) -> Option<u16> {
        let injection = self
            .injections
            .iter_mut()
            .find(|i| i.remaining > 0 && (i.route == route || i.route == Route::Any))?;
        if injection.remaining != u32::MAX {
            injection.remaining -= 1;
        }
        let status = injection.status;
        self.injections.retain(|i| i.remaining > 0);
        Some(status)
    }

    fn take_forward_failure(&mut self, pm: &str) -> Option<u16> {
        let (status, remaining) = self.forward_failures.get_mut(pm)?;
        let status = *status;
        if *remaining != u32::MAX {
            *remaining -= 1;
        }
        if *remaining == 0 {
            self.forward_failures.remove(pm);
        }
        Some(status)
    }

    fn count_injected(&mut self, status: u16) {
        self.stats.injected_failures += 1;
        if status == 429 {
            self.stats.rate_limited += 1;
        }
    }
}

struct Shared {
    config: FakeStripeConfig,
    http: reqwest::Client,
    data: Mutex<Data>,
}

impl Shared {
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running fake; the server stops when it is dropped.
pub struct FakeStripe {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeStripe {
    /// Starts the fake on 127.0.0.1, on a port the system picks.
    pub async fn start(config: FakeStripeConfig) -> anyhow::Result<FakeStripe> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts the fake on `addr` (port 0: one the system picks).
    pub async fn start_on(
        config: FakeStripeConfig,
        addr: SocketAddr,
    ) -> anyhow::Result<FakeStripe> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        let bucket = config.rate_limit_per_sec.map(|r| Bucket {
            capacity: f64::from(r),
            rate: f64::from(r),
            tokens: f64::from(r),
            last: Instant::now(),
        });
        let shared = Arc::new(Shared {
            config,
            http,
            data: Mutex::new(Data {
                bucket,
                next_serial: 1_000_000,
                ..Data::default()
            }),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake Stripe stopped");
            }
        });
        Ok(FakeStripe { shared, addr, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a customer with these cards; returns its id and its payment methods' ids in list order.
    pub fn add_customer(&self, cards: Vec<FakeCard>) -> (String, Vec<String>) {
        self.shared.data().insert_customer(cards)
    }

    /// Adds `customers` customers of `cards_each` Visa cards each, every number distinct (also
    /// across calls) and Luhn-valid, expiry months cycling through 01..12; returns the number of
    /// cards added.
    pub fn add_customers(&self, customers: usize, cards_each: usize) -> usize {
        let mut data = self.shared.data();
        for _ in 0..customers {
            let cards = (0..cards_each)
                .map(|_| {
                    let serial = data.next_serial;
                    data.next_serial = serial.wrapping_add(1);
                    FakeCard {
                        exp_month: serial % 12 + 1,
                        ..FakeCard::visa(serial)
                    }
                })
                .collect();
            data.insert_customer(cards);
        }
        customers * cards_each
    }

    /// The payment methods of a customer, in list order (`None`: no such customer).
    pub fn payment_methods_of(&self, customer: &str) -> Option<Vec<String>> {
        let data = self.shared.data();
        let index = *data.customer_index.get(customer)?;
        data.customers.get(index).map(|c| c.payment_methods.clone())
    }

    /// The card behind a payment method.
    pub fn card_of(&self, pm: &str) -> Option<FakeCard> {
        self.shared
            .data()
            .payment_methods
            .get(pm)
            .map(|p| p.card.clone())
    }

    /// The next `times` requests to `route` (after authentication) answer `status` with Stripe's
    /// error body for it: 429 rate limit, 5xx `api_error`, 402 on forwarding the upstream connect
    /// timeout, 502 on forwarding the upstream connection error. `u32::MAX`: always.
    pub fn fail_next(&self, route: Route, status: u16, times: u32) {
        if times > 0 {
            self.shared.data().injections.push(Injection {
                route,
                status,
                remaining: times,
            });
        }
    }

    /// Like `fail_next`, only for forwards of `pm` (checked once the request is valid and `pm`
    /// known). Replaces an earlier setting for `pm`; `times` 0 clears it.
    pub fn fail_forward_of(&self, pm: &str, status: u16, times: u32) {
        let mut data = self.shared.data();
        if times == 0 {
            data.forward_failures.remove(pm);
        } else {
            data.forward_failures.insert(pm.to_owned(), (status, times));
        }
    }

    /// `pm` stays in its customer's list, but forwarding it answers 404 `resource_missing`.
    pub fn delete_at_forward(&self, pm: &str) {
        self.shared.data().deleted_at_forward.insert(pm.to_owned());
    }

    /// Forgets every injected failure (`fail_next`, `fail_forward_of`).
    pub fn clear_failures(&self) {
        let mut data = self.shared.data();
        data.injections.clear();
        data.forward_failures.clear();
    }

    pub fn stats(&self) -> FakeStats {
        self.shared.data().stats
    }

    /// How many times the card of `pm` was posted to a destination that answered (or timed out
    /// after connecting).
    pub fn destination_posts_for(&self, pm: &str) -> u32 {
        self.shared
            .data()
            .destination_posts
            .get(pm)
            .copied()
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

enum Endpoint {
    Customers,
    PaymentMethods(String),
    Forwarding,
}

impl Endpoint {
    fn resolve(method: &Method, path: &str) -> Option<Endpoint> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["v1", "customers"]) => Some(Endpoint::Customers),
            ("GET", ["v1", "customers", id, "payment_methods"]) if !id.is_empty() => {
                Some(Endpoint::PaymentMethods(percent_decode(id)))
            }
            ("POST", ["v1", "forwarding", "requests"]) => Some(Endpoint::Forwarding),
            _ => None,
        }
    }

    fn route(&self) -> Route {
        match self {
            Endpoint::Customers => Route::Customers,
            Endpoint::PaymentMethods(_) => Route::PaymentMethods,
            Endpoint::Forwarding => Route::Forwarding,
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::GET && uri.path() == "/_fake/stats" {
        let stats = shared.data().stats;
        return Json(stats).into_response();
    }
    let response = dispatch(&shared, &method, &uri, &headers, &body).await;
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    response
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    {
        let mut data = shared.data();
        data.stats.requests += 1;
        if let Some(bucket) = data.bucket.as_mut() {
            if !bucket.take() {
                data.stats.rate_limited += 1;
                return reply(429, rate_limit_body());
            }
        }
    }

    let restricted = match api_key(headers) {
        None => return reply(401, no_key_body()),
        Some(key) if key == shared.config.api_key => false,
        Some(key) if shared.config.restricted_key.as_deref() == Some(key.as_str()) => true,
        Some(key) => {
            return reply(
                401,
                json!({"error": {
                    "message": format!("Invalid API Key provided: {}", mask_key(&key)),
                    "type": "invalid_request_error",
                }}),
            )
        }
    };

    let Some(endpoint) = Endpoint::resolve(method, uri.path()) else {
        return reply(
            404,
            json!({"error": {
                "message": format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    method, uri.path()
                ),
                "type": "invalid_request_error",
            }}),
        );
    };

    {
        let mut data = shared.data();
        match endpoint {
            Endpoint::Customers => data.stats.customer_lists += 1,
            Endpoint::PaymentMethods(_) => data.stats.payment_method_lists += 1,
            Endpoint::Forwarding => data.stats.forwards += 1,
        }
        if restricted {
            let key = shared.config.restricted_key.as_deref().unwrap_or("");
            return reply(
                403,
                json!({"error": {
                    "message": format!(
                        "The provided key '{}' does not have the required permissions for this endpoint on account '{ACCOUNT_ID}'.",
                        mask_key(key)
                    ),
                    "type": "invalid_request_error",
                }}),
            );
        }
        if let Some(status) = data.take_injection(endpoint.route()) {
            data.count_injected(status);
            let subject = match &endpoint {
                Endpoint::PaymentMethods(customer) => Some(customer.as_str()),
                _ => None,
            };
            return reply(status, injected_body(endpoint.route(), status, subject));
        }
    }

    let query = parse_pairs(uri.query().unwrap_or(""));
    match endpoint {
        Endpoint::Customers => list_customers(shared, &query),
        Endpoint::PaymentMethods(customer) => list_payment_methods(shared, &customer, &query),
        Endpoint::Forwarding => forward(shared, headers, body).await,
    }
}

fn list_customers(shared: &Shared, query: &[(String, String)]) -> Response {
    let limit = match parse_limit(query) {
        Ok(limit) => limit,
        Err((status, body)) => return reply(status, body),
    };
    let data = shared.data();
    let start = match param(query, "starting_after") {
        None => 0,
        Some(id) => match data.customer_index.get(id) {
            Some(index) => index + 1,
            None => {
                return reply(
                    400,
                    resource_missing("starting_after", &format!("No such customer: '{id}'")),
                )
            }
        },
    };
    let end = start.saturating_add(limit).min(data.customers.len());
    let page = data.customers.get(start..end).unwrap_or(&[]);
    reply(
        200,
        json!({
            "object": "list",
            "url": "/v1/customers",
            "has_more": end < data.customers.len(),
            "data": page.iter().map(customer_json).collect::<Vec<_>>(),
        }),
    )
}

fn list_payment_methods(shared: &Shared, customer: &str, query: &[(String, String)]) -> Response {
    match param(query, "type") {
        None | Some("card") => {}
        Some(other) => {
            return reply(
                400,
                json!({"error": {
                    "param": "type",
                    "message": format!("Invalid type: '{other}'. This fake Stripe only has payment methods of type 'card'."),
                    "type": "invalid_request_error",
                }}),
            )
        }
    }
    let limit = match parse_limit(query) {
        Ok(limit) => limit,
        Err((status, body)) => return reply(status, body),
    };
    let data = shared.data();
    let Some(owner) = data
        .customer_index
        .get(customer)
        .and_then(|&i| data.customers.get(i))
    else {
        return reply(
            404,
            resource_missing("customer", &format!("No such customer: '{customer}'")),
        );
    };
    let pms = &owner.payment_methods;
    let start = match param(query, "starting_after") {
        None => 0,
        Some(pm) => match pms.iter().position(|p| p == pm) {
            Some(index) => index + 1,
            None => {
                return reply(
                    400,
                    resource_missing("starting_after", &format!("No such PaymentMethod: '{pm}'")),
                )
            }
        },
    };
    let end = start.saturating_add(limit).min(pms.len());
    let page: Vec<Value> = pms
        .get(start..end)
        .unwrap_or(&[])
        .iter()
        .filter_map(|id| {
            data.payment_methods
                .get(id)
                .map(|pm| payment_method_json(id, pm))
        })
        .collect();
    reply(
        200,
        json!({
            "object": "list",
            "url": format!("/v1/customers/{customer}/payment_methods"),
            "has_more": end < pms.len(),
            "data": page,
        }),
    )
}

/// Removes the in-flight mark of an idempotency key when the request ends, however it ends.
struct InFlight {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.data().in_flight.remove(&self.key);
    }
}

async fn forward(shared: &Arc<Shared>, headers: &HeaderMap, body: &Bytes) -> Response {
    if !shared.config.forwarding_enabled {
        return reply(
            400,
            json!({"error": {
                "code": "forwarding_api_inactive",
                "message": "Forwarding is not enabled for this account. Contact Stripe to enable the Vault and Forward API.",
                "type": "invalid_request_error",
            }}),
        );
    }

    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let _in_flight = match idempotency_key.as_ref() {
        None => None,
        Some(key) => {
            let mut data = shared.data();
            if let Some(stored) = data.idempotent.get(key) {
                let mut response = reply(200, stored.clone());
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return response;
            }
            if !data.in_flight.insert(key.clone()) {
                return reply(
                    409,
                    json!({"error": {
                        "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this Idempotency Key. Please try again later.",
                        "type": "invalid_request_error",
                    }}),
                );
            }
            Some(InFlight {
                shared: shared.clone(),
                key: key.clone(),
            })
        }
    };

    let form = match ForwardForm::parse(body) {
        Ok(form) => form,
        Err((status, body)) => return reply(status, body),
    };

    let card = {
        let mut data = shared.data();
        let Some(card) = data
            .payment_methods
            .get(&form.payment_method)
            .map(|pm| pm.card.clone())
        else {
            return reply(404, no_such_payment_method(&form.payment_method));
        };
        if let Some(status) = data.take_forward_failure(&form.payment_method) {
            data.count_injected(status);
            return reply(
                status,
                injected_body(Route::Forwarding, status, Some(&form.payment_method)),
            );
        }
        if data.deleted_at_forward.contains(&form.payment_method) {
            return reply(404, no_such_payment_method(&form.payment_method));
        }
        card
    };

    let (sent, redacted) = fill(form.body, &card, &form.replacements);
    let sent = Value::Object(sent).to_string();
    let redacted = Value::Object(redacted).to_string();

    let mut request = shared.http.post(form.url.clone());
    let mut has_content_type = false;
    for (name, value) in &form.headers {
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        request = request.header(name.as_str(), value.as_str());
    }
    if !has_content_type {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let started = Instant::now();
    let answer = request.body(sent).send().await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            if !error.is_connect() {
                count_post(shared, &form.payment_method);
            }
            return reply(502, upstream_connection_error());
        }
    };
    count_post(shared, &form.payment_method);
    let status = answer.status().as_u16();
    let ip = answer
        .remote_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(answer_body) = answer.text().await else {
        return reply(502, upstream_connection_error());
    };
    let duration = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let request_headers: Vec<Value> = form
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if name.eq_ignore_ascii_case("x-api-key") {
                "[REDACTED]"
            } else {
                value.as_str()
            };
            json!({"name": name, "value": value})
        })
        .collect();
    let response_headers: Vec<Value> = content_type
        .iter()
        .map(|v| json!({"name": "Content-Type", "value": v}))
        .collect();
    let object = json!({
        "id": format!("fwdreq_{}", random_id(&mut rand::thread_rng(), 24)),
        "object": "forwarding.request",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "metadata": form.metadata,
        "payment_method": form.payment_method,
        "replacements": form.replacements,
        "request_context": {
            "destination_duration": duration,
            "destination_ip_address": ip,
        },
        "request_details": {
            "body": redacted,
            "headers": request_headers,
            "http_method": "POST",
        },
        "response_details": {
            "body": answer_body,
            "headers": response_headers,
            "status": status,
        },
        "url": form.url,
    });
    if let Some(key) = idempotency_key {
        shared.data().idempotent.insert(key, object.clone());
    }
    reply(200, object)
}

fn count_post(shared: &Shared, pm: &str) {
    let mut data = shared.data();
    data.stats.destination_posts += 1;
    *data.destination_posts.entry(pm.to_owned()).or_insert(0) += 1;
}

/// Fills the replacements into `body`; returns what is sent and the same with the card data
/// redacted as Stripe shows it (number: first 6 + `******` + last 4, CVC `***`, name `[REDACTED]`).
fn fill(
    mut body: Map<String, Value>,
    card: &FakeCard,
    replacements: &[String],
) -> (Map<String, Value>, Map<String, Value>) {
    let mut redacted = body.clone();
    for replacement in replacements {
        match replacement.as_str() {
            "card_number" => {
                body.insert("account_number".into(), json!(card.number));
                redacted.insert("account_number".into(), json!(mask_number(&card.number)));
            }
            "card_expiry" => {
                for map in [&mut body, &mut redacted] {
                    map.insert(
                        "expiry_month".into(),
                        json!(format!("{:02}", card.exp_month)),
                    );
                    map.insert("expiry_year".into(), json!(format!("{:04}", card.exp_year)));
                }
            }
            "cardholder_name" => {
                if let Some(name) = &card.name {
                    body.insert("cardholder_name".into(), json!(name));
                    redacted.insert("cardholder_name".into(), json!("[REDACTED]"));
                }
            }
            "card_cvc" => {
                if let Some(cvc) = &card.cvc {
                    body.insert("security_code".into(), json!(cvc));
                    redacted.insert("security_code".into(), json!("***"));
                }
            }
            _ => {}
        }
    }
    (body, redacted)
}

/// A refused request: the status and Stripe's error body.
type Refusal = (u16, Value);

/// The parameters of `POST /v1/forwarding/requests`.
struct ForwardForm {
    payment_method: String,
    url: String,
    replacements: Vec<String>,
    headers: Vec<(String, String)>,
    body: Map<String, Value>,
    metadata: Map<String, Value>,
}

impl ForwardForm {
    fn parse(body: &[u8]) -> Result<ForwardForm, Refusal> {
        let text = String::from_utf8_lossy(body);
        let mut payment_method = None;
        let mut url = None;
        let mut replacements: Vec<(usize, String, String)> = Vec::new();
        let mut headers: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
        let mut request_body = None;
        let mut metadata = Map::new();
        for (key, value) in parse_pairs(&text) {
            if key == "payment_method" {
                payment_method = Some(value);
            } else if key == "url" {
                url = Some(value);
            } else if key == "request[body]" {
                request_body = Some(value);
            } else if let Some(index) = key
                .strip_prefix("replacements[")
                .and_then(|r| r.strip_suffix(']'))
            {
                let position = if index.is_empty() {
                    replacements.len()
                } else {
                    match index.parse::<usize>() {
                        Ok(i) => i,
                        Err(_) => return Err((400, unknown_parameter(&key))),
                    }
                };
                replacements.push((position, key.clone(), value));
            } else if let Some(rest) = key.strip_prefix("request[headers][") {
                let parsed = rest.split_once("][").and_then(|(index, field)| {
                    Some((index.parse::<usize>().ok()?, field.strip_suffix(']')?))
                });
                match parsed {
                    Some((index, "name")) => headers.entry(index).or_default().0 = Some(value),
                    Some((index, "value")) => headers.entry(index).or_default().1 = Some(value),
                    _ => return Err((400, unknown_parameter(&key))),
                }
            } else if let Some(name) = key
                .strip_prefix("metadata[")
                .and_then(|r| r.strip_suffix(']'))
            {
                metadata.insert(name.to_owned(), Value::String(value));
            } else if key.starts_with("expand[") {
                // Accepted and ignored: nothing here is expandable.
            } else {
                return Err((400, unknown_parameter(&key)));
            }
        }

        let payment_method = payment_method
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (400, missing_parameter("payment_method")))?;
        let url = url
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (400, missing_parameter("url")))?;
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => {
                return Err((
                    400,
                    invalid_parameter("url", &format!("Invalid URL: {url}")),
                ))
            }
        }

        replacements.sort_by_key(|(position, _, _)| *position);
        let mut checked = Vec::with_capacity(replacements.len());
        for (_, key, value) in replacements {
            if !REPLACEMENTS.contains(&value.as_str()) {
                let message = format!(
                    "Invalid {key}: must be one of card_cvc, card_expiry, card_number, or cardholder_name"
                );
                return Err((400, invalid_parameter(&key, &message)));
            }
            checked.push(value);
        }

        let mut pairs = Vec::with_capacity(headers.len());
        for (index, (name, value)) in headers {
            let name = name.ok_or_else(|| {
                (
                    400,
                    missing_parameter(&format!("request[headers][{index}][name]")),
                )
            })?;
            let value = value.ok_or_else(|| {
                (
                    400,
                    missing_parameter(&format!("request[headers][{index}][value]")),
                )
            })?;
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(&value).is_err()
            {
                return Err((
                    400,
                    invalid_parameter(
                        &format!("request[headers][{index}]"),
                        "Invalid header name or value.",
                    ),
                ));
            }
            pairs.push((name, value));
        }

        let body = match request_body.as_deref().map(serde_json::from_str::<Value>) {
            None => Map::new(),
            Some(Ok(Value::Object(map))) => map,
            Some(_) => {
                let message = "Invalid request[body]: this fake fills JSON object bodies only.";
                return Err((400, invalid_parameter("request[body]", message)));
            }
        };

        Ok(ForwardForm {
            payment_method,
            url,
            replacements: checked,
            headers: pairs,
            body,
            metadata,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// JSON shapes

fn customer_json(customer: &Customer) -> Value {
    let invoice_prefix: String = customer.id.chars().skip(4).take(8).collect();
    json!({
        "id": customer.id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": customer.created,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": null,
        "invoice_prefix": invoice_prefix.to_uppercase(),
        "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
        "livemode": false,
        "metadata": {},
        "name": null,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    })
}

fn payment_method_json(id: &str, pm: &StoredPaymentMethod) -> Value {
    let brand = brand(&pm.card.number);
    let cvc_check = if pm.card.cvc.is_some() {
        "pass"
    } else {
        "unchecked"
    };
    json!({
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null},
            "email": null,
            "name": pm.card.name,
            "phone": null,
        },
        "card": {
            "brand": brand,
            "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": cvc_check},
            "country": "US",
            "display_brand": brand,
            "exp_month": pm.card.exp_month,
            "exp_year": pm.card.exp_year,
            "fingerprint": pm.fingerprint,
            "funding": "credit",
            "generated_from": null,
            "last4": pm.card.last4(),
            "networks": {"available": [brand], "preferred": null},
            "three_d_secure_usage": {"supported": true},
            "wallet": null,
        },
        "created": pm.created,
        "customer": pm.customer,
        "livemode": false,
        "metadata": {},
        "type": "card",
    })
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    let request_id = format!("req_{}", random_id(&mut rand::thread_rng(), 14));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

fn rate_limit_body() -> Value {
    json!({"error": {
        "code": "rate_limit",
        "message": "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
        "type": "invalid_request_error",
    }})
}

fn no_key_body() -> Value {
    json!({"error": {
        "message": "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        "type": "invalid_request_error",
    }})
}

fn api_error_body() -> Value {
    json!({"error": {
        "message": "An unknown error occurred",
        "type": "api_error",
    }})
}

fn upstream_connection_error() -> Value {
    json!({"error": {
        "code": "forwarding_api_upstream_connection_error",
        "message": "An error occurred while connecting to the destination endpoint. Please try again.",
        "type": "invalid_request_error",
    }})
}

fn resource_missing(param: &str, message: &str) -> Value {
    json!({"error": {
        "code": "resource_missing",
        "param": param,
        "message": message,
        "type": "invalid_request_error",
    }})
}

fn no_such_payment_method(pm: &str) -> Value {
    resource_missing("payment_method", &format!("No such PaymentMethod: '{pm}'"))
}

fn missing_parameter(param: &str) -> Value {
    json!({"error": {
        "code": "parameter_missing",
        "param": param,
        "message": format!("Missing required param: {param}."),
        "type": "invalid_request_error",
    }})
}

fn unknown_parameter(param: &str) -> Value {
    json!({"error": {
        "code": "parameter_unknown",
        "param": param,
        "message": format!("Received unknown parameter: {param}"),
        "type": "invalid_request_error",
    }})
}

fn invalid_parameter(param: &str, message: &str) -> Value {
    json!({"error": {
        "param": param,
        "message": message,
        "type": "invalid_request_error",
    }})
}

/// Stripe's body for an injected `status` on `route`; `subject` is the payment method (forwarding)
/// or the customer (payment method lists) when known.
fn injected_body(route: Route, status: u16, subject: Option<&str>) -> Value {
    match (route, status) {
        (_, 429) => rate_limit_body(),
        (Route::Forwarding, 402) => json!({"error": {
            "code": "forwarding_api_upstream_connection_timeout",
            "message": "The request to the destination endpoint timed out before a connection to the destination was established. Please try again.",
            "type": "invalid_request_error",
        }}),
        (Route::Forwarding, 502) => upstream_connection_error(),
        (Route::Forwarding, 404) => no_such_payment_method(subject.unwrap_or("pm_unknown")),
        (Route::PaymentMethods, 404) => resource_missing(
            "customer",
            &format!("No such customer: '{}'", subject.unwrap_or("cus_unknown")),
        ),
        (_, 500..=599) => api_error_body(),
        (_, 401) => json!({"error": {
            "message": "Invalid API Key provided: sk_test_****fake",
            "type": "invalid_request_error",
        }}),
        _ => json!({"error": {
            "message": format!("Injected failure ({status})."),
            "type": "invalid_request_error",
        }}),
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn parse_limit(query: &[(String, String)]) -> Result<usize, Refusal> {
    let invalid = |message: String| {
        (
            400,
            json!({"error": {
                "code": "parameter_invalid_integer",
                "param": "limit",
                "message": message,
                "type": "invalid_request_error",
            }}),
        )
    };
    match param(query, "limit") {
        None => Ok(10),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n < 1 => Err(invalid(
                "This value must be greater than or equal to 1.".to_owned(),
            )),
            Ok(n) if n > 100 => Err(invalid(
                "This value must be less than or equal to 100.".to_owned(),
            )),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(10)),
            Err(_) => Err(invalid(format!("Invalid integer: {raw}"))),
        },
    }
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `k=v&k=v` with percent-escapes and `+` as space.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes.get(i).copied().unwrap_or(b'%');
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The key of `Authorization: Bearer <key>` or of HTTP basic with the key as user.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split(':').next().unwrap_or("").to_owned()
    } else {
        return None;
    };
    Some(key).filter(|k| !k.is_empty())
}

/// `sk_test_****abcd`: the prefix up to the second underscore, then the last four characters.
fn mask_key(key: &str) -> String {
    let prefix_len = key
        .match_indices('_')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    let prefix = key.get(..prefix_len).unwrap_or("");
    format!("{prefix}****{}", last4(key))
}

fn last4(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .get(chars.len().saturating_sub(4)..)
        .unwrap_or(&[])
        .iter()
        .collect()
}

/// `424242******4242`
fn mask_number(number: &str) -> String {
    let first6: String = number.chars().take(6).collect();
    format!("{first6}******{}", last4(number))
}

fn brand(number: &str) -> &'static str {
    let prefix2: u32 = number.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = number.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    if number.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&prefix2) || (2221..=2720).contains(&prefix4) {
        "mastercard"
    } else if prefix2 == 34 || prefix2 == 37 {
        "amex"
    } else if prefix4 == 6011 || prefix2 == 65 {
        "discover"
    } else {
        "unknown"
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_id(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| {
            let i = rng.gen_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'0'))
        })
        .collect()
}

/// The same 16 characters for the same number, as Stripe's card fingerprint.
fn fingerprint(number: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ("strongroom-fake-stripe", number).hash(&mut hasher);
    let mut state = hasher.finish() | 1;
    (0..16)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = usize::try_from(state % ALPHABET.len() as u64).unwrap_or(0);
            char::from(ALPHABET.get(i).copied().unwrap_or(b'0'))
        })
        .collect()
}
