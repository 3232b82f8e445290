//! The few Stripe calls an import makes: list customers, list a customer's cards, and ask the Forwarding
//! API to post a card to us. Requests are paced under a ceiling, and those that failed for a passing
//! reason (429, 5xx, network, the forwarding 402, and Stripe's other "try again" answers: 409
//! `idempotency_key_in_use`, `lock_timeout`, `Stripe-Should-Retry: true`) are retried with exponential
//! backoff and jitter.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// The API version whose behaviour this client expects (the forwarding 402 for a timed-out connect).
const STRIPE_VERSION: &str = "2025-03-31.basil";
/// Retries after the first try, for failures that may pass.
const MAX_RETRIES: u32 = 5;
/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A Stripe secret or restricted key. Never printed; wiped on drop.
#[derive(Clone)]
pub struct StripeKey(Zeroizing<String>);

impl StripeKey {
    pub fn new(key: String) -> Self {
        Self(Zeroizing::new(key))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StripeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StripeKey(****)")
    }
}

/// Why a Stripe call did not succeed (after retries, where they apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StripeError {
    /// Stripe answered with an error status and (usually) its error object.
    Api {
        status: u16,
        code: Option<String>,
        message: Option<String>,
        /// Stripe's `Stripe-Should-Retry` header, when it sent one.
        should_retry: Option<bool>,
    },
    /// Stripe could not be reached, did not answer in time, or answered something unreadable.
    Network(String),
}

impl StripeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Api { status, .. } => Some(*status),
            StripeError::Network(_) => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::Api { code, .. } => code.as_deref(),
            StripeError::Network(_) => None,
        }
    }

    /// Stripe's error code, else its message, else what went wrong on the way; key-like words redacted.
    pub fn detail(&self) -> String {
        match self {
            StripeError::Api { code, message, .. } => redact(
                code.as_deref()
                    .or(message.as_deref())
                    .unwrap_or("no error details"),
            ),
            StripeError::Network(what) => redact(what),
        }
    }

    /// Stripe asked to be asked again later: a rate limit or lock timeout (429), another request with
    /// the same idempotency key still in flight (409 `idempotency_key_in_use`, as when two nodes
    /// forward the same card), or `Stripe-Should-Retry: true`. The request did nothing; it is not a
    /// failure of what it asked for.
    pub fn is_try_again(&self) -> bool {
        match self {
            StripeError::Api {
                status,
                code,
                should_retry,
                ..
            } => {
                *status == 429
                    || *should_retry == Some(true)
                    || matches!(
                        code.as_deref(),
                        Some("idempotency_key_in_use" | "lock_timeout" | "rate_limit")
                    )
            }
            StripeError::Network(_) => false,
        }
    }

    /// The key was refused (401) or lacks permissions (403).
    pub fn is_key_refused(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
}

impl fmt::Display for StripeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Some(status) => write!(f, "Stripe answered {status}: {}", self.detail()),
            None => write!(f, "Stripe unreachable: {}", self.detail()),
        }
    }
}

/// Replaces every word that looks like a Stripe key (`sk_…`, `rk_…`, `pk_…`) with `[REDACTED]`, and
/// every run of 12 or more digits (a card number would be one), written whole or in groups parted by
/// single spaces or dashes (`4242 4242 4242 4242`, `4242-4242-…`), with `[REDACTED]`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '*';
    while i < chars.len() {
        let at_word_start = i == 0 || !word_char(chars[i - 1]);
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        let end = chars[i..]
            .iter()
            .position(|c| !word_char(*c))
            .map_or(chars.len(), |n| i + n);
        let (digits, span) = digit_run(&chars[i..]);
        if at_word_start && matches!(rest.as_str(), "sk_" | "rk_" | "pk_") {
            out.push_str("[REDACTED]");
            i = end;
        } else if at_word_start && digits >= 12 {
            out.push_str("[REDACTED]");
            i += span;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The digits at the start of `chars`, allowing one space or dash between two digits: how many
/// digits, and how many characters they span (ending on a digit).
fn digit_run(chars: &[char]) -> (usize, usize) {
    let (mut digits, mut span, mut j) = (0, 0, 0);
    while let Some(&c) = chars.get(j) {
        if c.is_ascii_digit() {
            digits += 1;
            j += 1;
            span = j;
        } else if (c == ' ' || c == '-')
            && digits > 0
            && chars.get(j + 1).is_some_and(char::is_ascii_digit)
        {
            j += 1;
        } else {
            break;
        }
    }
    (digits, span)
}

#[derive(Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
}

/// Stripe's `forwarding.request`, as far as an import reads it.
#[derive(Debug, Deserialize)]
pub struct ForwardingRequest {
    pub id: String,
    pub response_details: Option<ResponseDetails>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseDetails {
    pub body: String,
    pub status: u16,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: Option<String>,
    message: Option<String>,
}

/// One forwarding request: where to post, what to post, and which card fields Stripe fills in.
pub struct Forward<'a> {
    pub payment_method: &'a str,
    pub url: &'a str,
    pub replacements: &'a [&'a str],
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a str,
    /// The same for every try of the same card, so that Stripe posts it at most once.
    pub idempotency_key: String,
}

/// Spaces requests evenly under a ceiling: each caller reserves the next free slot, then waits for it.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: StripeKey,
    pacer: Option<Pacer>,
    retry_base: Duration,
}

impl StripeClient {
    /// `rate_limit`: most requests per second (`None`: no ceiling).
    pub fn new(
        http: reqwest::Client,
        base: &str,
        key: StripeKey,
        rate_limit: Option<u32>,
        retry_base: Duration,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            pacer: rate_limit.map(|rate| Pacer {
                interval: Duration::from_secs(1) / rate.max(1),
                next: Mutex::new(Instant::now()),
            }),
            retry_base,
        }
    }

    /// A client for Stripe calls: a timeout above Stripe's own for forwarding, and no redirects.
    pub fn http_client() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    pub async fn list_customers(
        &self,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<List<Customer>, StripeError> {
        let url = format!("{}/v1/customers", self.base);
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = starting_after {
            query.push(("starting_after", after.to_owned()));
        }
        self.send(|| self.http.get(&url).query(&query), false).await
    }

    pub async fn list_cards(
        &self,
        customer: &str,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<List<PaymentMethod>, StripeError> {
        let url = format!("{}/v1/customers/{customer}/payment_methods", self.base);
        let mut query = vec![("type", "card".to_owned()), ("limit", limit.to_string())];
        if let Some(after) = starting_after {
            query.push(("starting_after", after.to_owned()));
        }
        self.send(|| self.http.get(&url).query(&query), false).await
    }

    pub async fn forward(&self, request: &Forward<'_>) -> Result<ForwardingRequest, StripeError> {
        let url = format!("{}/v1/forwarding/requests", self.base);
        let mut form: Vec<(String, &str)> = vec![
            ("payment_method".into(), request.payment_method),
            ("url".into(), request.url),
        ];
        for replacement in request.replacements {
            form.push(("replacements[]".into(), replacement));
        }
        for (i, (name, value)) in request.headers.iter().enumerate() {
            form.push((format!("request[headers][{i}][name]"), name));
            form.push((format!("request[headers][{i}][value]"), value));
        }
        form.push(("request[body]".into(), request.body));
        self.send(
            || {
                self.http
                    .post(&url)
                    .header("Idempotency-Key", &request.idempotency_key)
                    .form(&form)
            },
            true,
        )
        .await
    }

    /// Sends the request built by `build`, retrying passing failures; `retry_402`: the forwarding 402
    /// (Stripe gave up before connecting to the destination) counts as passing.
    async fn send<T: DeserializeOwned>(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        retry_402: bool,
    ) -> Result<T, StripeError> {
        let mut tries = 0;
        loop {
            if let Some(pacer) = &self.pacer {
                pacer.wait().await;
            }
            let sent = build()
                .bearer_auth(self.key.expose())
                .header("Stripe-Version", STRIPE_VERSION)
                .send()
                .await;
            let error = match sent {
                Ok(response) if response.status().is_success() => {
                    return response.json::<T>().await.map_err(|e| {
                        StripeError::Network(format!("unreadable answer from Stripe: {e}"))
                    });
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let should_retry = response
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.eq_ignore_ascii_case("true"));
                    let parsed = response.json::<ErrorEnvelope>().await.ok();
                    StripeError::Api {
                        status,
                        code: parsed.as_ref().and_then(|e| e.error.code.clone()),
                        message: parsed.and_then(|e| e.error.message),
                        should_retry,
                    }
                }
                Err(err) => StripeError::Network(network_cause(&err)),
            };
            let passing = error.is_try_again()
                || match error.status() {
                    None => true,
                    Some(status) => status >= 500 || (retry_402 && status == 402),
                };
            if !passing || tries >= MAX_RETRIES {
                return Err(error);
            }
            tries += 1;
            tokio::time::sleep(backoff(self.retry_base, tries)).await;
        }
    }
}

/// What kind of transport failure this was, without the URL (which names customers) or any body.
fn network_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        "connection failed".into()
    }
}

/// `base`, doubled for each try, capped, with up to 25% jitter so that parallel retries spread out.
fn backoff(base: Duration, tries: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << tries.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    exp.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_again_answers_are_told_apart() {
        let api = |status: u16, code: Option<&str>, should_retry: Option<bool>| StripeError::Api {
            status,
            code: code.map(str::to_owned),
            message: None,
            should_retry,
        };
        assert!(api(409, Some("idempotency_key_in_use"), None).is_try_again());
        assert!(api(429, Some("lock_timeout"), None).is_try_again());
        assert!(api(429, None, None).is_try_again());
        assert!(api(400, None, Some(true)).is_try_again());
        assert!(!api(404, Some("resource_missing"), None).is_try_again());
        assert!(!api(409, None, Some(false)).is_try_again());
        assert!(!StripeError::Network("timed out".into()).is_try_again());
    }

    #[test]
    fn keys_and_long_digit_runs_are_redacted() {
        assert_eq!(
            redact("Invalid API Key provided: sk_test_****abcd"),
            "Invalid API Key provided: [REDACTED]"
        );
        assert_eq!(
            redact("The provided key 'rk_live_x1' has no rights"),
            "The provided key '[REDACTED]' has no rights"
        );
        assert_eq!(redact("card 4242424242424242 x"), "card [REDACTED] x");
        assert_eq!(
            redact("No such customer: 'cus_123'"),
            "No such customer: 'cus_123'"
        );
        assert_eq!(redact("task_1 risk_x"), "task_1 risk_x");
    }

    #[test]
    fn card_numbers_written_with_spaces_or_dashes_are_redacted() {
        assert_eq!(
            redact("card 4242 4242 4242 4242 declined"),
            "card [REDACTED] declined"
        );
        assert_eq!(redact("card 4242-4242-4242-4242."), "card [REDACTED].");
        assert_eq!(redact("amex 3782 822463 10005"), "amex [REDACTED]");
        assert_eq!(redact("(4000-0000-0000-0002)"), "([REDACTED])");
        // Short groups (dates, counts) stay; a double separator ends the run.
        assert_eq!(
            redact("on 2026-12-02 at 03 50, 3 of 12"),
            "on 2026-12-02 at 03 50, 3 of 12"
        );
        assert_eq!(redact("4242 4242  4242 4242"), "4242 4242  4242 4242");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        assert!(backoff(base, 1) >= base && backoff(base, 1) < base * 2);
        assert!(backoff(base, 3) >= base * 4);
        assert!(backoff(base, 30) <= MAX_BACKOFF.mul_f64(1.25));
    }

    #[test]
    fn the_key_never_prints() {
        let key = StripeKey::new("sk_test_secret".into());
        assert_eq!(format!("{key:?}"), "StripeKey(****)");
    }
}
