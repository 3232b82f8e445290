//! `ApiClient`: the HTTP side of the harness, a base URL and an API key. Endpoint helpers live beside
//! their resource (`tokens.rs`, `payments.rs`, `imports.rs`); this file holds the plumbing and `/account`.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::answer::{send, Answer};

/// Calls the API at `base` with `api_key`. `with_key` gives the same client for another account, so
/// every endpoint helper serves any account's key.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    pub api_key: String,
    pub client: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: String, api_key: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            base,
            api_key,
            client,
        }
    }

    /// The same server, called with `key` instead.
    pub fn with_key(&self, key: &str) -> ApiClient {
        ApiClient {
            api_key: key.to_owned(),
            ..self.clone()
        }
    }

    /// A request with this client's key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path)
            .header("X-API-Key", &self.api_key)
    }

    /// A request with no key at all.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn get(&self, path: &str) -> Answer {
        send(self.request(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        send(self.request(Method::POST, path).json(body)).await
    }

    /// `POST path` with no body at all.
    pub async fn post_empty(&self, path: &str) -> Answer {
        send(self.request(Method::POST, path)).await
    }

    /// `POST path`, with a JSON body if there is one.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Answer {
        match body {
            Some(body) => self.post_json(path, body).await,
            None => self.post_empty(path).await,
        }
    }

    /// `GET /account`
    pub async fn account(&self) -> Answer {
        self.get("/account").await
    }

    /// The id of the account this client's key belongs to.
    pub async fn account_id(&self) -> Uuid {
        self.account().await.body["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Calls `GET /account` with `key` until it is refused (a node trusts a key it has read for the auth
    /// cache's TTL), for at most three seconds; returns the last answer.
    pub async fn wait_until_refused(&self, key: &str) -> Answer {
        let started = std::time::Instant::now();
        let caller = self.with_key(key);
        loop {
            let answer = caller.account().await;
            if answer.status != StatusCode::OK || started.elapsed() > Duration::from_secs(3) {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
