//! A fake Stripe: a real HTTP server on localhost speaking, in Stripe's shapes, the endpoints the import
//! uses. This file owns the server, its config and the data it serves; each endpoint or concern has a file.
//! Self-contained (no `strongroom` crate), as `examples/fake_stripe.rs` compiles it too.
//!
//! Card numbers live only in memory: nothing here logs or prints them (`FakeCard`'s `Debug` masks the
//! number), and the forwarding answer redacts them as Stripe does.
#![allow(dead_code)]

mod cards;
mod customers;
mod errors;
mod faults;
mod forward_form;
mod forwarding;
mod http;
mod idempotency;
pub mod payment_intents;
mod payment_methods;
mod refunds;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use cards::FakeCard;

// Part of the fake's API for tests; a program that uses only the server (the example) leaves them unused.
#[allow(unused_imports)]
pub use cards::{luhn_check_digit, luhn_valid};
#[allow(unused_imports)]
pub use forward_form::REPLACEMENTS;

use cards::{fingerprint, random_id};
use faults::{Bucket, Injection};

/// The account every key belongs to, as named in permission errors.
pub const ACCOUNT_ID: &str = "acct_fake";

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
    /// The `X-API-Key` header of the last forward posted (the destination's own key).
    last_forward_key: Option<String>,
    /// Payment methods whose card is posted to the destination twice at once (a repeated delivery).
    posted_twice: HashSet<String>,
    /// The destination's answer bodies to those double posts.
    double_post_answers: HashMap<String, Vec<String>>,
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
        let app = Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
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

    pub fn stats(&self) -> FakeStats {
        self.shared.data().stats
    }

    /// The `X-API-Key` the last forward sent its destination (for Strongroom: the import's ingest key).
    pub fn last_forward_key(&self) -> Option<String> {
        self.shared.data().last_forward_key.clone()
    }

    /// From now on the card of `pm` is posted to the destination twice at once, as a delivery that is
    /// repeated while the first is still under way; the forwarding object shows the second answer.
    pub fn post_twice(&self, pm: &str) {
        self.shared.data().posted_twice.insert(pm.to_owned());
    }

    /// The destination's answer bodies to the double posts of `pm` (see `post_twice`).
    pub fn double_post_answers_for(&self, pm: &str) -> Vec<String> {
        self.shared
            .data()
            .double_post_answers
            .get(pm)
            .cloned()
            .unwrap_or_default()
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
