//! The token endpoints (`/cde-import`, `/tokens/...`) as `ApiClient` methods, and the card bodies the
//! tests send.

use std::fmt::Display;

use reqwest::Method;
use serde_json::{json, Value};

use strongroom::store::{DynStore, TokenRecord};
use strongroom::vault::Vault;
use uuid::Uuid;

use super::answer::{send, Answer};
use super::app::TestApp;
use super::client::ApiClient;

/// A valid card body for `pan`, expiring 04/2031, without a security code.
pub fn card(pan: &str) -> Value {
    json!({"account_number": pan, "expiry_month": 4, "expiry_year": 2031, "cardholder_name": "Jane Holder"})
}

/// Appends the Luhn check digit to `prefix`.
pub fn with_check_digit(prefix: &str) -> String {
    for d in 0..10 {
        let candidate = format!("{prefix}{d}");
        if strongroom::model::card::luhn_valid(&candidate) {
            return candidate;
        }
    }
    unreachable!()
}

impl ApiClient {
    /// `POST /cde-import`
    pub async fn tokenize(&self, body: &Value) -> Answer {
        self.post_json("/cde-import", body).await
    }

    /// `POST /cde-import` with an `x-idempotency-key`.
    pub async fn tokenize_idempotent(&self, key: &str, body: &Value) -> Answer {
        send(
            self.request(Method::POST, "/cde-import")
                .header("x-idempotency-key", key)
                .json(body),
        )
        .await
    }

    /// `POST /cde-import` with `body` sent as it is, under `content_type`.
    pub async fn tokenize_raw(&self, content_type: &str, body: &'static str) -> Answer {
        send(
            self.request(Method::POST, "/cde-import")
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// Tokenizes `body`, which must be answered 200; returns the token.
    pub async fn new_token(&self, body: &Value) -> Value {
        self.tokenize(body).await.ok_body()
    }

    /// The id of a new token of `card(pan)`.
    pub async fn token_for(&self, pan: &str) -> String {
        self.new_token(&card(pan)).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /tokens/{id}`
    pub async fn get_token(&self, id: impl Display) -> Answer {
        self.get(&format!("/tokens/{id}")).await
    }

    /// `DELETE /tokens/{id}`
    pub async fn delete_token(&self, id: impl Display) -> Answer {
        send(self.request(Method::DELETE, &format!("/tokens/{id}"))).await
    }

    /// `POST /tokens/{id}/consume`
    pub async fn consume(&self, id: impl Display) -> Answer {
        self.post_empty(&format!("/tokens/{id}/consume")).await
    }

    /// `GET /tokens/card-art/{id}`, answered as SVG rather than JSON.
    pub async fn card_art(&self, id: impl Display) -> reqwest::Response {
        self.request(Method::GET, &format!("/tokens/card-art/{id}"))
            .send()
            .await
            .unwrap()
    }

    /// `GET /tokens?{query}` (no `?` when `query` is empty).
    pub async fn list_tokens(&self, query: &str) -> Answer {
        self.get(&with_query("/tokens", query)).await
    }

    /// Every token of the account, page by page.
    pub async fn all_tokens(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let answer = self.list_tokens(&format!("limit=500&page={page}")).await;
            let data = answer.body["data"].as_array().unwrap().clone();
            if data.is_empty() {
                break;
            }
            all.extend(data);
        }
        all
    }
}

/// `path?query`, or `path` alone when `query` is empty.
pub(super) fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// The stored row of the account's token `id`, found as the server finds it: by the creation time its
/// id gives back under the account's id key (`vault`'s), else among the tokens with random ids.
pub async fn stored_token(
    store: &DynStore,
    vault: &Vault,
    account: Uuid,
    id: Uuid,
) -> Option<TokenRecord> {
    let created_at = vault.token_created_at(account, id).await.unwrap();
    store.get_token(account, id, created_at).await.unwrap()
}

impl TestApp {
    /// `stored_token` through the running server's store and vault.
    pub async fn stored_token(&self, account: Uuid, id: Uuid) -> Option<TokenRecord> {
        let state = self.server().state();
        stored_token(self.store(), &state.tokens.vault, account, id).await
    }
}
