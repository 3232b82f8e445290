//! The token import endpoints (`/tokens/imports/...`) as `ApiClient` methods, and a server set up to
//! import from a fake Stripe.

use std::fmt::Display;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strongroom::config::Config;

use super::answer::{send, Answer};
use super::app::{spawn_app_with, TestApp};
use super::backend::Backend;
use super::client::ApiClient;
use super::fake_stripe::{FakeCard, FakeStripe};
use super::tokens::with_query;

/// The secret key the fake Stripe accepts by default.
pub const STRIPE_KEY: &str = "sk_test_fake";

/// A server whose imports go to `stripe`, with one worker, no rate ceiling and fast retries.
pub async fn spawn_app_for_stripe(backend: Backend, stripe: &FakeStripe) -> TestApp {
    let base = stripe.base_url();
    spawn_app_with(backend, move |config: &mut Config| {
        stripe_settings(config, &base);
    })
    .await
}

/// Imports from `stripe_base`, with one worker, no rate ceiling and fast retries.
pub fn stripe_settings(config: &mut Config, stripe_base: &str) {
    config.stripe_api_base = stripe_base.to_owned();
    config.stripe_rate_limit = None;
    config.stripe_retry_base = Duration::from_millis(5);
    config.workers = 1;
    config.job_poll_interval = Duration::from_millis(20);
}

/// `n` distinct Visa cards, numbered from `from`.
pub fn visa_cards(from: u32, n: u32) -> Vec<FakeCard> {
    (from..from + n).map(FakeCard::visa).collect()
}

impl ApiClient {
    /// `POST /tokens/imports`
    pub async fn start_import(&self, body: &Value) -> Answer {
        self.post_json("/tokens/imports", body).await
    }

    /// Starts a Stripe import with `stripe_key`, which must be answered 200 `preparing`; returns it.
    pub async fn start_stripe_import(&self, stripe_key: &str) -> Value {
        let answer = self
            .start_import(&json!({"provider": "stripe", "stripe": {"api_key": stripe_key}}))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body["status"], "preparing");
        answer.body
    }

    /// `GET /tokens/imports/{id}`
    pub async fn get_import(&self, id: impl Display) -> Answer {
        self.get(&format!("/tokens/imports/{id}")).await
    }

    /// `POST /tokens/imports/{id}/abort` (with `{}`).
    pub async fn abort_import(&self, id: impl Display) -> Answer {
        self.post_json(&format!("/tokens/imports/{id}/abort"), &json!({}))
            .await
    }

    /// `GET /tokens/imports/{id}/failures?{query}` (no `?` when `query` is empty).
    pub async fn import_failures(&self, id: impl Display, query: &str) -> Answer {
        self.get(&with_query(
            &format!("/tokens/imports/{id}/failures"),
            query,
        ))
        .await
    }

    /// Every failure of the import (one page of up to 500, which must be answered 200).
    pub async fn all_import_failures(&self, id: impl Display) -> Vec<Value> {
        let answer = self.import_failures(id, "limit=500").await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.body["data"].as_array().unwrap().clone()
    }

    /// `GET /tokens/imports?{query}` (no `?` when `query` is empty).
    pub async fn list_imports(&self, query: &str) -> Answer {
        self.get(&with_query("/tokens/imports", query)).await
    }

    /// `POST /tokens/imports/ingest`, as Stripe's forwarding would call it, with this client's key.
    pub async fn ingest(&self, business_key: &str, body: &Value) -> Answer {
        send(
            self.request(Method::POST, "/tokens/imports/ingest")
                .header("X-Strongroom-Business-Key", business_key)
                .json(body),
        )
        .await
    }

    /// Starts a Stripe import with `stripe_key` and waits for its end: its id and the import as it ended.
    pub async fn stripe_import_to_its_end(&self, stripe_key: &str) -> (String, Value) {
        let id = self.start_stripe_import(stripe_key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ended = self.wait_for_import_end(&id).await;
        (id, ended)
    }

    /// Polls the import until it ends; checks `attemts = successes + failures` on every look.
    pub async fn wait_for_import_end(&self, id: impl Display) -> Value {
        let started = Instant::now();
        loop {
            let answer = self.get_import(&id).await;
            assert_eq!(answer.status, StatusCode::OK);
            let body = answer.body;
            assert_eq!(
                body["attemts"].as_i64().unwrap(),
                body["successes"].as_i64().unwrap() + body["failures"].as_i64().unwrap(),
                "{body}"
            );
            assert_eq!(body["attemts"], body["attempts"]);
            if body["status"] == "finished" || body["status"] == "aborted" {
                assert!(body["finished_at"].is_string(), "{body}");
                return body;
            }
            assert!(body.get("finished_at").is_none(), "{body}");
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the import did not end: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
