//! Tokens: validating card data (every fault reported, with its JSON path), sealing it, storing the
//! token through a group-commit writer (many concurrent tokenizations share one durable commit), and the
//! lifecycle around it: read, list, delete, consume.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::cards::{CardData, Pan, Scheme, SecurityCode};
use super::webhooks::{EventType, Webhooks};
use super::{fault, present, FieldError};
use crate::store::{
    Action, AuditEvent, DynStore, OutboxRecord, StoreError, TokenQuery, TokenRecord, Ts,
};
use crate::vault::cvc::CvcCache;
use crate::vault::{Vault, VaultError};

const KNOWN_FIELDS: [&str; 5] = [
    "account_number",
    "expiry_month",
    "expiry_year",
    "security_code",
    "cardholder_name",
];
const MAX_NAME_CHARS: usize = 200;
/// Expiry years further ahead than this are taken for typing errors.
const MAX_YEARS_AHEAD: i32 = 50;

/// Card data that passed every check.
#[derive(Debug)]
pub struct ValidCard {
    pub card: CardData,
    pub security_code: Option<SecurityCode>,
}

/// How strictly to read numbers: `/cde-import` takes JSON integers only; card data forwarded by a
/// processor arrives with every value as a string (`"04"`, `"2030"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberForm {
    Strict,
    Forwarded,
}

/// Checks a `/cde-import` body, collecting every fault.
pub fn validate_card(
    body: &Value,
    now: DateTime<Utc>,
    form: NumberForm,
) -> Result<ValidCard, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut unknown: Vec<&String> = object
        .keys()
        .filter(|k| !KNOWN_FIELDS.contains(&k.as_str()))
        .collect();
    unknown.sort();
    for key in unknown {
        errors.push(FieldError::new(format!("$.{key}"), "is not a known field"));
    }

    let pan = match present(object, "account_number") {
        None => fault(&mut errors, "$.account_number", "is required"),
        Some(Value::String(s)) if s.is_empty() => {
            fault(&mut errors, "$.account_number", "must not be empty")
        }
        Some(Value::String(s)) => Pan::parse(s)
            .map_err(|m| errors.push(field("account_number", m)))
            .ok(),
        Some(_) => fault(
            &mut errors,
            "$.account_number",
            "must be a string of digits",
        ),
    };
    let month = integer(object, "expiry_month", form, &mut errors).and_then(|m| {
        if (1..=12).contains(&m) {
            Some(m as u8)
        } else {
            fault(&mut errors, "$.expiry_month", "must be from 1 to 12")
        }
    });
    let year = integer(object, "expiry_year", form, &mut errors).and_then(|y| {
        if y < 2000 {
            fault(&mut errors, "$.expiry_year", "must be 2000 or later")
        } else if y > i64::from(now.year() + MAX_YEARS_AHEAD) {
            fault(
                &mut errors,
                "$.expiry_year",
                "must be no more than 50 years ahead",
            )
        } else {
            Some(y as u16)
        }
    });
    if let (Some(m), Some(y)) = (month, year) {
        if expired(m, y, now) {
            errors.push(field(
                "expiry_year",
                "the card has expired (the end of its expiry month has passed)",
            ));
        }
    }
    let scheme = pan.as_ref().map(Pan::scheme);
    let security_code = match present(object, "security_code") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => {
            fault(&mut errors, "$.security_code", "must not be empty")
        }
        Some(Value::String(s)) => match scheme {
            Some(scheme) => SecurityCode::parse(s, scheme)
                .map_err(|m| errors.push(field("security_code", m)))
                .ok(),
            // The number is invalid, so only the scheme-independent checks can be made.
            None if s.bytes().all(|b| b.is_ascii_digit()) && (3..=4).contains(&s.len()) => None,
            None => fault(&mut errors, "$.security_code", "must be 3 or 4 digits"),
        },
        Some(_) => fault(&mut errors, "$.security_code", "must be a string of digits"),
    };
    let cardholder_name = match present(object, "cardholder_name") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => {
            fault(&mut errors, "$.cardholder_name", "must not be empty")
        }
        Some(Value::String(s)) if s.chars().count() > MAX_NAME_CHARS => fault(
            &mut errors,
            "$.cardholder_name",
            "must be at most 200 characters",
        ),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => fault(&mut errors, "$.cardholder_name", "must be a string"),
    };

    match (pan, month, year) {
        (Some(pan), Some(expiry_month), Some(expiry_year)) if errors.is_empty() => Ok(ValidCard {
            card: CardData {
                pan,
                expiry_month,
                expiry_year,
                cardholder_name,
            },
            security_code,
        }),
        _ => Err(errors),
    }
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError::new(format!("$.{name}"), message)
}

fn integer(
    object: &Map<String, Value>,
    name: &str,
    form: NumberForm,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    match (present(object, name), form) {
        (None, _) => fault(errors, &format!("$.{name}"), "is required"),
        (Some(Value::Number(n)), _) => n
            .as_i64()
            .or_else(|| fault(errors, &format!("$.{name}"), "must be an integer")),
        (Some(Value::String(s)), NumberForm::Forwarded) if s.is_empty() => {
            fault(errors, &format!("$.{name}"), "is required")
        }
        (Some(Value::String(s)), NumberForm::Forwarded)
            if s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        (Some(_), _) => fault(errors, &format!("$.{name}"), "must be an integer"),
    }
}

/// A card is good until the end of its expiry month, in UTC.
fn expired(month: u8, year: u16, now: DateTime<Utc>) -> bool {
    (i32::from(year), u32::from(month)) < (now.year(), now.month())
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a token came from, for tokens made by an import.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub business_key: Option<String>,
    pub import_provider: Option<String>,
}

/// The token service: what the API and the import job call.
pub struct Tokens {
    store: DynStore,
    pub vault: Arc<Vault>,
    pub cvc: Arc<CvcCache>,
    writer: TokenWriter,
    webhooks: Arc<Webhooks>,
}

impl Tokens {
    pub fn new(
        store: DynStore,
        vault: Arc<Vault>,
        cvc: Arc<CvcCache>,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        let writer = TokenWriter::spawn(store.clone());
        Self {
            store,
            vault,
            cvc,
            writer,
            webhooks,
        }
    }

    /// Seals the card, stores the token durably (with its audit event) and keeps the security code in memory.
    pub async fn create(
        &self,
        account_id: Uuid,
        actor: &str,
        valid: ValidCard,
        origin: Origin,
    ) -> Result<TokenRecord, TokenError> {
        let id = Uuid::new_v4();
        let sealed = self.vault.seal(account_id, id, &valid.card).await?;
        let card = &valid.card;
        let record = TokenRecord {
            id,
            account_id,
            created_at: Ts::now(),
            expiry_month: i32::from(card.expiry_month),
            expiry_year: i32::from(card.expiry_year),
            cardholder_name: card.cardholder_name.clone(),
            issuer_identification_number: card.pan.issuer_identification_number(),
            masked_account_number: card.pan.masked(),
            account_number_last_four: card.pan.last_four(),
            account_number_length: card.pan.len() as i32,
            scheme: card.pan.scheme().as_str().to_owned(),
            status: "active".to_owned(),
            fingerprint: sealed.fingerprint,
            sealed_card: sealed.sealed_card,
            business_key: origin.business_key,
            import_provider: origin.import_provider,
            expires_at: None,
        };
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenCreate,
            Some(id.to_string()),
            "success",
        );
        let outbox = self
            .webhooks
            .token_event(EventType::TokenCreated, &record)
            .await?;
        let record = self.writer.insert_notified(record, audit, outbox).await?;
        if let Some(code) = valid.security_code {
            self.cvc.put(account_id, id, code).await;
        }
        Ok(record)
    }

    pub async fn get(&self, account_id: Uuid, id: Uuid) -> Result<Option<TokenRecord>, TokenError> {
        Ok(self.store.get_token(account_id, id).await?)
    }

    pub async fn list(&self, query: &TokenQuery) -> Result<(Vec<TokenRecord>, u64), TokenError> {
        let rows = self.store.list_tokens(query).await?;
        let total = self.store.count_tokens(query).await?;
        Ok((rows, total))
    }

    /// Destroys the token's card data and security code; false if there was no such token.
    pub async fn delete(
        &self,
        account_id: Uuid,
        actor: &str,
        id: Uuid,
    ) -> Result<bool, TokenError> {
        // The event shows the token as it was, so it is read first, but only if someone listens.
        let listened = self
            .webhooks
            .subscribed(account_id, EventType::TokenDeleted)
            .await?;
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenDelete,
            Some(id.to_string()),
            "success",
        );
        let deleted = match listened {
            false => self.store.delete_token(account_id, id, &audit, &[]).await?,
            true => match self.store.get_token(account_id, id).await? {
                None => false,
                Some(token) => {
                    let outbox = self
                        .webhooks
                        .token_event(EventType::TokenDeleted, &token)
                        .await?;
                    self.store
                        .delete_token(account_id, id, &audit, &outbox)
                        .await?
                }
            },
        };
        if deleted {
            self.cvc.drop_code(id).await;
        }
        Ok(deleted)
    }

    /// Drops the cached security code of an existing token; false if there is no such token.
    pub async fn consume(
        &self,
        account_id: Uuid,
        actor: &str,
        id: Uuid,
    ) -> Result<bool, TokenError> {
        let Some(token) = self.store.get_token(account_id, id).await? else {
            return Ok(false);
        };
        let dropped = self.cvc.drop_code(id).await;
        let outcome = if dropped {
            "success"
        } else {
            "no_security_code"
        };
        let audit = AuditEvent::new(
            Some(account_id),
            actor,
            Action::TokenConsume,
            Some(id.to_string()),
            outcome,
        );
        // Dropping the code is the one change a token undergoes short of deletion: `token.updated`.
        let outbox = match dropped {
            true => {
                self.webhooks
                    .token_event(EventType::TokenUpdated, &token)
                    .await?
            }
            false => Vec::new(),
        };
        if outbox.is_empty() {
            self.store.insert_audit_event(&audit).await?;
            return Ok(true);
        }
        Ok(self
            .store
            .touch_token(account_id, id, &audit, &outbox)
            .await?)
    }

    /// Opens a token's card data for use; every such access is audited.
    pub async fn open(
        &self,
        account_id: Uuid,
        actor: &str,
        token: &TokenRecord,
    ) -> Result<CardData, TokenError> {
        let opened = self
            .vault
            .open(account_id, token.id, &token.sealed_card)
            .await;
        let outcome = if opened.is_ok() { "success" } else { "failure" };
        self.store
            .insert_audit_event(&AuditEvent::new(
                Some(account_id),
                actor,
                Action::TokenReadCard,
                Some(token.id.to_string()),
                outcome,
            ))
            .await?;
        Ok(opened?)
    }

    pub fn scheme_of(token: &TokenRecord) -> Scheme {
        Scheme::parse(&token.scheme)
    }
}

type Pending = (
    TokenRecord,
    AuditEvent,
    Vec<OutboxRecord>,
    oneshot::Sender<Result<TokenRecord, StoreError>>,
);

/// Batches concurrent token inserts into one transaction each, so that SQLite's `synchronous=FULL`
/// costs one fsync per batch rather than per token. A caller is answered only after its batch committed.
#[derive(Clone)]
pub struct TokenWriter {
    tx: mpsc::Sender<Pending>,
}

const MAX_BATCH: usize = 200;

impl TokenWriter {
    pub fn spawn(store: DynStore) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, rx));
        Self { tx }
    }

    /// Stores the token with its audit event; hands the record back once it is durable.
    pub async fn insert(
        &self,
        token: TokenRecord,
        audit: AuditEvent,
    ) -> Result<TokenRecord, StoreError> {
        self.insert_notified(token, audit, Vec::new()).await
    }

    /// Stores the token with its audit event and webhook outbox rows, in the same commit.
    pub async fn insert_notified(
        &self,
        token: TokenRecord,
        audit: AuditEvent,
        outbox: Vec<OutboxRecord>,
    ) -> Result<TokenRecord, StoreError> {
        let stopped = || StoreError::Unavailable("the token writer has stopped".into());
        let (done, answer) = oneshot::channel();
        self.tx
            .send((token, audit, outbox, done))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_batches(store: DynStore, mut rx: mpsc::Receiver<Pending>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (rows, rest): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .map(|(t, a, outbox, done)| ((t, a), (outbox, done)))
            .unzip();
        let (outboxes, answers): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
        // The outbox joins the batch's commit; accounts without webhooks add nothing to it.
        let outbox: Vec<OutboxRecord> = outboxes.iter().flatten().cloned().collect();
        let written = store.insert_tokens(&rows, &outbox).await;
        match written {
            Ok(()) => {
                for ((token, _), done) in rows.into_iter().zip(answers) {
                    let _ = done.send(Ok(token));
                }
            }
            // One bad row must not fail its neighbours: write them one by one to find it.
            Err(StoreError::Constraint(_)) if rows.len() > 1 => {
                for ((row, outbox), done) in rows.into_iter().zip(outboxes).zip(answers) {
                    let result = store
                        .insert_tokens(std::slice::from_ref(&row), &outbox)
                        .await;
                    let _ = done.send(result.map(|()| row.0));
                }
            }
            Err(err) => {
                for done in answers {
                    let _ = done.send(Err(err.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn paths(body: Value) -> Vec<(String, String)> {
        validate_card(&body, now(), NumberForm::Strict)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    #[test]
    fn a_card_valid_to_the_end_of_this_month_is_accepted() {
        let body =
            json!({"account_number": "4111111111111111", "expiry_month": 11, "expiry_year": 2026});
        assert!(validate_card(&body, now(), NumberForm::Strict).is_ok());
        let body =
            json!({"account_number": "4111111111111111", "expiry_month": 10, "expiry_year": 2026});
        assert_eq!(paths(body)[0].0, "$.expiry_year");
    }

    #[test]
    fn every_fault_is_reported_at_once() {
        let body = json!({"account_number": "41111", "expiry_month": 13, "expiry_year": 1999, "security_code": "12", "cardholder_name": ""});
        let found: Vec<String> = paths(body).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            found,
            [
                "$.account_number",
                "$.expiry_month",
                "$.expiry_year",
                "$.security_code",
                "$.cardholder_name"
            ]
        );
    }

    #[test]
    fn forwarded_card_data_may_carry_numbers_as_strings() {
        let body = json!({"account_number": "4111111111111111", "expiry_month": "04", "expiry_year": "2031", "security_code": "123"});
        let valid = validate_card(&body, now(), NumberForm::Forwarded).unwrap();
        assert_eq!((valid.card.expiry_month, valid.card.expiry_year), (4, 2031));
        assert!(validate_card(&body, now(), NumberForm::Strict).is_err());
    }

    #[test]
    fn faults_never_repeat_the_card_number() {
        let body =
            json!({"account_number": "4111111111111112", "expiry_month": "x", "expiry_year": 2030});
        let text = format!("{:?}", paths(body));
        assert!(!text.contains("4111111111111112"), "{text}");
    }
}
