//! Card collection in the browser: the web origins an account allows (added and removed by the admin
//! command line, audited), and token sessions: single-use, short-lived, bound to their account, made by
//! the merchant's server and then used by the hosted card form with nothing but their id. The card a
//! session receives is tokenized by the token service exactly as `/cde-import` does it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use reqwest::Url;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::tokens::{
    has_expired, validate_card, NumberForm, TokenError, Tokens, MAX_EXPIRATION_SECONDS,
};
use super::FieldError;
use crate::connectors::guard::is_loopback_url;
use crate::model::card::{Scheme, SecurityCode};
use crate::store::{
    Action, AuditEvent, DynStore, OriginRecord, SessionRecord, StoreError, TokenRecord, Ts,
};

/// The life of an ephemeral token asked for with `ephemeral: true` and no session `expiration_time`.
pub const DEFAULT_EPHEMERAL_SECONDS: u64 = 3600;
/// Who completes a session, in the audit trail.
pub const SESSION_ACTOR: &str = "token_session";

/// The stored kinds of session. Stored words name no card field, so that a scan of the database for
/// field names of card data (as the vault test does) finds none.
pub const KIND_TOKENIZE: &str = "tokenize";
pub const KIND_REFRESH: &str = "refresh";
/// The SDK's names of the two actions (`next_action`, `action`).
pub const ACTION_TOKENIZE: &str = "tokenize_card";
pub const ACTION_REFRESH: &str = "refresh_security_code";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, expired, already used, or its token is gone: all look the same to the caller.
    #[error("no such session")]
    NotFound,
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("no origin with id {0}")]
    UnknownOrigin(Uuid),
    #[error("--origin: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An origin as browsers send it: `https://host[:port]` (`http://` only for a loopback host), without
/// path, query, fragment or credentials. Answers its normalised form (lower-case host, default port
/// left out), which is what an `Origin` header of that site is compared with.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let url =
        Url::parse(text).map_err(|_| "must be an origin like https://shop.example".to_owned())?;
    if url.host_str().map_or(true, str::is_empty) {
        return Err("must name a host".into());
    }
    let loopback = is_loopback_url(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https:// (http:// only for a loopback host)".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || text.ends_with('/')
    {
        return Err("must be an origin only: no path, query or fragment".into());
    }
    Ok(url.origin().ascii_serialization())
}

pub async fn add_origin(
    store: &DynStore,
    account_id: Uuid,
    origin: &str,
    actor: &str,
) -> Result<OriginRecord, OriginError> {
    let origin = parse_origin(origin).map_err(OriginError::Invalid)?;
    if store.get_account(account_id).await?.is_none() {
        return Err(OriginError::UnknownAccount(account_id));
    }
    let record = OriginRecord {
        id: crate::new_id(),
        account_id,
        origin,
        created_at: Ts::now(),
        removed_at: None,
    };
    let audit = AuditEvent::new(
        Some(account_id),
        actor,
        Action::OriginAdd,
        Some(record.id.to_string()),
        "success",
    );
    store.insert_origin(&record, &audit).await?;
    Ok(record)
}

pub async fn remove_origin(
    store: &DynStore,
    id: Uuid,
    actor: &str,
) -> Result<OriginRecord, OriginError> {
    let origin = store
        .get_origin(id)
        .await?
        .filter(|o| o.removed_at.is_none())
        .ok_or(OriginError::UnknownOrigin(id))?;
    let audit = AuditEvent::new(
        Some(origin.account_id),
        actor,
        Action::OriginRemove,
        Some(id.to_string()),
        "success",
    );
    if !store.remove_origin(id, Ts::now(), &audit).await? {
        return Err(OriginError::UnknownOrigin(id));
    }
    Ok(origin)
}

/// The SHA-256 of a session id: what is stored and looked up.
fn hash_id(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

/// 256 random bits, URL-safe: an id that cannot be guessed and travels in a URL as it is.
fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An open session: its record and the id it was opened with (needed to complete it).
pub struct OpenSession {
    pub record: SessionRecord,
    id_hash: Vec<u8>,
}

/// What a refresh session shows the card form: the masked card, never the number.
pub struct MaskedCard {
    pub token: TokenRecord,
}

pub struct Sessions {
    store: DynStore,
    tokens: Arc<Tokens>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(store: DynStore, tokens: Arc<Tokens>, ttl: Duration) -> Self {
        Self { store, tokens, ttl }
    }

    async fn insert(
        &self,
        account_id: Uuid,
        kind: &str,
        token_id: Option<Uuid>,
        bypass_identification: bool,
        token_expiration_secs: Option<i64>,
    ) -> Result<String, SessionError> {
        let id = new_session_id();
        let now = Ts::now();
        self.store
            .insert_session(&SessionRecord {
                id_hash: hash_id(&id),
                account_id,
                kind: kind.to_owned(),
                token_id,
                bypass_identification,
                token_expiration_secs,
                created_at: now,
                expires_at: now.plus(self.ttl),
                completed_at: None,
            })
            .await?;
        Ok(id)
    }

    /// A session for a new card. `expiration_time` makes the token ephemeral (seconds of life).
    pub async fn create(
        &self,
        account_id: Uuid,
        bypass_identification: bool,
        expiration_time: Option<u64>,
    ) -> Result<String, SessionError> {
        let secs = expiration_time.map(|s| s as i64);
        self.insert(account_id, KIND_TOKENIZE, None, bypass_identification, secs)
            .await
    }

    /// A session collecting a fresh security code for the account's token `token_id`.
    pub async fn refresh(&self, account_id: Uuid, token_id: Uuid) -> Result<String, SessionError> {
        if self.tokens.get(account_id, token_id).await?.is_none() {
            return Err(SessionError::NotFound);
        }
        self.insert(account_id, KIND_REFRESH, Some(token_id), false, None)
            .await
    }

    /// The session with this id if it is still open (not used, not expired).
    pub async fn open(&self, id: &str) -> Result<OpenSession, SessionError> {
        if id.is_empty() || id.len() > 128 {
            return Err(SessionError::NotFound);
        }
        let id_hash = hash_id(id);
        let record = self
            .store
            .get_session(&id_hash)
            .await?
            .filter(|s| s.completed_at.is_none() && s.expires_at > Ts::now())
            .ok_or(SessionError::NotFound)?;
        Ok(OpenSession { record, id_hash })
    }

    /// The token a refresh session is about (gone tokens end the session).
    pub async fn refreshed_token(&self, session: &OpenSession) -> Result<MaskedCard, SessionError> {
        let token_id = session.record.token_id.ok_or(SessionError::NotFound)?;
        let token = self
            .tokens
            .get(session.record.account_id, token_id)
            .await?
            .ok_or(SessionError::NotFound)?;
        Ok(MaskedCard { token })
    }

    /// Tokenizes the card of a `tokenize_card` session's `result` and completes the session. The card
    /// goes through the same checks and writer as `/cde-import`; faults name their path under `$.result`.
    pub async fn complete_tokenize(
        &self,
        session: &OpenSession,
        result: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<TokenRecord, SessionError> {
        let (card, mut errors) = card_body(result, session.record.token_expiration_secs, now);
        let valid = match validate_card(&Value::Object(card), now, NumberForm::Strict) {
            Ok(valid) if errors.is_empty() => valid,
            Ok(_) => return Err(SessionError::Invalid(errors)),
            Err(faults) => {
                errors.extend(faults.into_iter().map(under_result));
                return Err(SessionError::Invalid(errors));
            }
        };
        let account_id = session.record.account_id;
        let token = self
            .tokens
            .create(account_id, SESSION_ACTOR, valid, Default::default())
            .await?;
        if !self.claim(session, token.id).await? {
            // Another request completed the session first: this card makes no token.
            self.tokens
                .delete(account_id, SESSION_ACTOR, token.id)
                .await?;
            return Err(SessionError::NotFound);
        }
        Ok(token)
    }

    /// Puts the security code of a `refresh_security_code` session's `result` into the security-code
    /// cache, as `/cde-import` does, and completes the session.
    pub async fn complete_refresh(
        &self,
        session: &OpenSession,
        result: &Map<String, Value>,
    ) -> Result<Uuid, SessionError> {
        let MaskedCard { token } = self.refreshed_token(session).await?;
        let scheme = Scheme::parse(&token.scheme);
        let code = match result.get("security_code") {
            Some(Value::String(s)) => SecurityCode::parse(s, scheme).map_err(|m| {
                SessionError::Invalid(vec![FieldError::new("$.result.security_code", m)])
            })?,
            Some(_) => {
                return Err(SessionError::Invalid(vec![FieldError::new(
                    "$.result.security_code",
                    "must be a string of digits",
                )]))
            }
            None => {
                return Err(SessionError::Invalid(vec![FieldError::new(
                    "$.result.security_code",
                    "is required",
                )]))
            }
        };
        let unknown: Vec<FieldError> = result
            .keys()
            .filter(|k| k.as_str() != "security_code")
            .map(|k| FieldError::new(format!("$.result.{k}"), "is not a known field"))
            .collect();
        if !unknown.is_empty() {
            return Err(SessionError::Invalid(unknown));
        }
        if !self.claim(session, token.id).await? {
            return Err(SessionError::NotFound);
        }
        self.tokens
            .cvc
            .put(token.account_id, token.id, code)
            .await
            .map_err(TokenError::from)?;
        Ok(token.id)
    }

    /// Completes the session once: false if another request did first or its time ran out.
    async fn claim(&self, session: &OpenSession, token_id: Uuid) -> Result<bool, SessionError> {
        let done = self
            .store
            .complete_session(&session.id_hash, token_id, Ts::now())
            .await?;
        if done {
            self.store
                .insert_audit_event(&AuditEvent::new(
                    Some(session.record.account_id),
                    SESSION_ACTOR,
                    Action::TokenSessionComplete,
                    Some(token_id.to_string()),
                    "success",
                ))
                .await?;
        }
        Ok(done)
    }

    /// Whether the token made or refreshed still exists (tokens of ephemeral life may be gone).
    pub fn token_alive(token: &TokenRecord) -> bool {
        !has_expired(token, Ts::now())
    }
}

fn under_result(fault: FieldError) -> FieldError {
    let path = match fault.path.strip_prefix('$') {
        Some(rest) => format!("$.result{rest}"),
        None => fault.path,
    };
    FieldError::new(path, fault.message)
}

/// The SDK's card fields (`account_number`, `expiry_month`, `expiry_year`, `security_code`,
/// `cardholder_name`, `additional_data`) as a `/cde-import` body, the token's life worked out from
/// `additional_data.expiration_date` (wins), `additional_data.ephemeral` and the session's
/// `expiration_time`. Faults of the lifecycle fields are answered beside the card's own.
fn card_body(
    result: &Map<String, Value>,
    session_expiration: Option<i64>,
    now: DateTime<Utc>,
) -> (Map<String, Value>, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut card = Map::new();
    for (key, value) in result {
        match key.as_str() {
            "account_number" | "expiry_month" | "expiry_year" | "security_code"
            | "cardholder_name" => {
                card.insert(key.clone(), value.clone());
            }
            "additional_data" | "ephemeral" | "expiration_date" => {}
            other => errors.push(FieldError::new(
                format!("$.result.{other}"),
                "is not a known field",
            )),
        }
    }
    let additional = match result.get("additional_data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            errors.push(FieldError::new(
                "$.result.additional_data",
                "must be an object",
            ));
            Map::new()
        }
    };
    if !card.contains_key("cardholder_name") {
        if let Some(Value::String(name)) = additional.get("cardholder_name") {
            card.insert("cardholder_name".into(), Value::String(name.clone()));
        }
    }
    let lifecycle = |key: &str| {
        result
            .get(key)
            .or_else(|| additional.get(key))
            .filter(|v| !v.is_null())
    };
    let mut life: Option<i64> = session_expiration;
    match lifecycle("ephemeral") {
        None => {}
        Some(Value::Bool(true)) => {
            life = Some(session_expiration.unwrap_or(DEFAULT_EPHEMERAL_SECONDS as i64))
        }
        Some(Value::Bool(false)) => life = None,
        Some(_) => errors.push(FieldError::new("$.result.ephemeral", "must be a boolean")),
    }
    match lifecycle("expiration_date") {
        None => {}
        Some(Value::String(text)) => match DateTime::parse_from_rfc3339(text) {
            Ok(at) => {
                let secs = (at.with_timezone(&Utc) - now).num_seconds();
                if secs < 1 {
                    errors.push(FieldError::new(
                        "$.result.expiration_date",
                        "must be in the future",
                    ));
                } else if secs as u64 > MAX_EXPIRATION_SECONDS {
                    errors.push(FieldError::new(
                        "$.result.expiration_date",
                        "must be at most 30 days ahead",
                    ));
                } else {
                    life = Some(secs);
                }
            }
            Err(_) => errors.push(FieldError::new(
                "$.result.expiration_date",
                "must be an ISO-8601 date and time with an offset",
            )),
        },
        Some(_) => errors.push(FieldError::new(
            "$.result.expiration_date",
            "must be an ISO-8601 date and time with an offset",
        )),
    }
    if let Some(secs) = life {
        card.insert("expiration_time".into(), Value::from(secs));
    }
    (card, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_held_to_https() {
        assert_eq!(
            parse_origin("https://Shop.Example").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            parse_origin("https://shop.example:443").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            parse_origin("https://shop.example:8443").unwrap(),
            "https://shop.example:8443"
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert!(parse_origin("http://shop.example").is_err());
        assert!(parse_origin("https://shop.example/").is_err());
        assert!(parse_origin("https://shop.example/pay").is_err());
        assert!(parse_origin("https://u:p@shop.example").is_err());
        assert!(parse_origin("shop.example").is_err());
    }

    #[test]
    fn session_ids_are_long_random_and_stored_hashed() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_id(&a).len(), 32);
        assert_ne!(hash_id(&a), a.as_bytes());
    }

    #[test]
    fn the_tokens_life_comes_from_the_date_then_the_flag_then_the_session() {
        let now = Utc::now();
        let obj = |v: Value| v.as_object().unwrap().clone();
        let (card, errors) = card_body(
            &obj(serde_json::json!({"additional_data": {"ephemeral": true}})),
            None,
            now,
        );
        assert!(errors.is_empty());
        assert_eq!(card["expiration_time"], 3600);
        let (card, _) = card_body(
            &obj(serde_json::json!({"additional_data": {"ephemeral": false}})),
            Some(60),
            now,
        );
        assert!(!card.contains_key("expiration_time"));
        let at = (now + chrono::Duration::seconds(7200)).to_rfc3339();
        let (card, _) = card_body(
            &obj(serde_json::json!({"expiration_date": at, "ephemeral": true})),
            Some(60),
            now,
        );
        let secs = card["expiration_time"].as_i64().unwrap();
        assert!((7198..=7200).contains(&secs));
        let (_, errors) = card_body(
            &obj(serde_json::json!({"expiration_date": "soon", "pin": "1"})),
            None,
            now,
        );
        assert_eq!(errors.len(), 2);
    }
}
