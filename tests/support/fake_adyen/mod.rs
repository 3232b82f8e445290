//! A fake Adyen (Checkout API v71), a real HTTP server on port 0: `POST /v71/payments` with raw card data,
//! `/v71/payments/{pspReference}/captures|cancels|refunds` and `/v71/cancels` (by merchant reference)
//! answered `received`, in Adyen's shapes and
//! error bodies (`{status, errorCode, message, errorType, pspReference}`), `X-API-Key` checked, charges
//! counted per `Idempotency-Key` (a key's first answer is replayed), failures injected, and standard
//! notifications, HMAC-signed, that it really POSTs to the configured URL (`notify.rs`).
//! Self-contained (no `strongroom` crate), as `examples/fake_adyen.rs` compiles it too.
#![allow(dead_code)]

mod notify;
mod payments;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use notify::NotifyFault;
// For tests that write notifications by hand; the example leaves it unused.
#[allow(unused_imports)]
pub use notify::signature;

#[derive(Clone, Debug)]
pub struct FakeAdyenConfig {
    /// The only `X-API-Key` accepted.
    pub api_key: String,
    /// The only merchant account the key may use.
    pub merchant_account: String,
    /// The HMAC key notifications are signed with, hex as Adyen's Customer Area shows it.
    pub hmac_key: String,
    /// Where notifications are posted; `None`: they are kept until one is set.
    pub notify_url: Option<String>,
    /// Post each notification as soon as it is made (benchmarks); otherwise tests call `deliver`.
    pub auto_notify: bool,
    /// Added to every answer.
    pub latency: Duration,
}

impl Default for FakeAdyenConfig {
    fn default() -> Self {
        Self {
            api_key: "AQEfakeAdyenKey0000".into(),
            merchant_account: "StrongroomTest".into(),
            hmac_key: "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056".into(),
            notify_url: None,
            auto_notify: false,
            latency: Duration::ZERO,
        }
    }
}

/// Which call an injected failure applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdyenRoute {
    Payments,
    Captures,
    Cancels,
    Refunds,
    /// `POST /v71/cancels`: a cancel by the merchant reference of the payment.
    CancelsByReference,
}

/// An injected failure.
#[derive(Clone, Debug)]
pub enum AdyenFault {
    /// Answer this status with Adyen's error body for it.
    Status(u16),
    /// Answer only after this long (longer than the client waits); nothing is done.
    Delay(Duration),
    /// `resultCode: Refused` with this `refusalReasonCode` and `refusalReason`.
    Refusal(&'static str, &'static str),
    /// Do the work (and keep the answer for the idempotency key), then answer only after this long: the
    /// client gives up although Adyen acted, and must retry with the same key.
    AnswerLost(Duration),
}

/// A payment as the fake keeps it.
#[derive(Clone, Debug)]
pub struct FakePayment {
    pub psp_reference: String,
    pub merchant_reference: String,
    pub currency: String,
    pub value: i64,
    pub captured: i64,
    pub refunded: i64,
    pub cancelled: bool,
    pub network_tx_reference: String,
}

#[derive(Default)]
pub(crate) struct Data {
    pub(crate) payments: HashMap<String, FakePayment>,
    /// The first answer (status, body) of each idempotency key.
    pub(crate) replay: HashMap<String, (u16, Value)>,
    /// Calls that did the work, per idempotency key (a replay does none).
    pub(crate) charges: HashMap<String, u32>,
    pub(crate) faults: Vec<(AdyenRoute, AdyenFault)>,
    /// Every `/payments` body, the card number cut to its last four digits.
    pub(crate) payment_requests: Vec<Value>,
    /// Every modification body, with its path.
    pub(crate) modifications: Vec<(String, Value)>,
    pub(crate) notify_faults: Vec<NotifyFault>,
    /// Notifications made and not yet accepted by the receiver.
    pub(crate) outbox: Vec<Value>,
    /// Each delivery: the HTTP status and body the receiver answered.
    pub(crate) deliveries: Vec<(u16, String)>,
    pub(crate) notify_url: Option<String>,
    pub(crate) requests: u64,
}

pub(crate) struct Shared {
    pub(crate) config: FakeAdyenConfig,
    pub(crate) http: reqwest::Client,
    data: Mutex<Data>,
}

impl Shared {
    pub(crate) fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake; the server stops when it is dropped.
pub struct FakeAdyen {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakeAdyen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAdyen {
    pub async fn start(config: FakeAdyenConfig) -> anyhow::Result<Self> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts on `addr` (port 0: one the system picks).
    pub async fn start_on(config: FakeAdyenConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        let data = Data {
            notify_url: config.notify_url.clone(),
            ..Data::default()
        };
        let shared = Arc::new(Shared {
            config,
            http,
            data: Mutex::new(data),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/v71/payments", post(payments::create))
            .route("/v71/payments/{psp}/{what}", post(payments::modify))
            .route("/v71/cancels", post(payments::cancel_by_reference))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { shared, addr, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &FakeAdyenConfig {
        &self.shared.config
    }

    /// Where notifications go from now on.
    pub fn set_notify_url(&self, url: &str) {
        self.shared.data().notify_url = Some(url.to_owned());
    }

    /// The next `times` calls to `route` fail with `fault`.
    pub fn fail_next(&self, route: AdyenRoute, fault: AdyenFault, times: usize) {
        let mut data = self.shared.data();
        for _ in 0..times {
            data.faults.push((route, fault.clone()));
        }
    }

    /// The next notification made is spoiled by `fault`.
    pub fn spoil_next_notification(&self, fault: NotifyFault) {
        self.shared.data().notify_faults.push(fault);
    }

    /// How many times the key did the work; a replay does none.
    pub fn charges_for(&self, key: &str) -> u32 {
        self.shared.data().charges.get(key).copied().unwrap_or(0)
    }

    pub fn charges(&self) -> HashMap<String, u32> {
        self.shared.data().charges.clone()
    }

    /// The `n`th `/payments` body (card number cut to its last four digits).
    pub fn payment_request(&self, n: usize) -> Option<Value> {
        self.shared.data().payment_requests.get(n).cloned()
    }

    pub fn payment_calls(&self) -> usize {
        self.shared.data().payment_requests.len()
    }

    /// Every modification made, as (path, body).
    pub fn modifications(&self) -> Vec<(String, Value)> {
        self.shared.data().modifications.clone()
    }

    pub fn payment(&self, psp_reference: &str) -> Option<FakePayment> {
        self.shared.data().payments.get(psp_reference).cloned()
    }

    /// The payments authorised under a merchant reference (our payment id).
    pub fn payments_with_reference(&self, merchant_reference: &str) -> Vec<FakePayment> {
        let data = self.shared.data();
        data.payments
            .values()
            .filter(|p| p.merchant_reference == merchant_reference)
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> u64 {
        self.shared.data().requests
    }

    /// Notifications made and not yet accepted.
    pub fn pending_notifications(&self) -> usize {
        self.shared.data().outbox.len()
    }

    /// Every delivery so far: (status, body answered).
    pub fn deliveries(&self) -> Vec<(u16, String)> {
        self.shared.data().deliveries.clone()
    }

    /// Posts every notification made so far to the notification URL, each until it is answered;
    /// returns the answers' statuses. Those answered `[accepted]` are not sent again.
    pub async fn deliver(&self) -> Vec<u16> {
        notify::deliver_all(&self.shared).await
    }
}
