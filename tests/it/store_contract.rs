//! The storage contract: the same expectations of every `Store` sub-trait on both backends, one file
//! per resource. The records built here are the fixtures those files share.

mod accounts;
mod audit;
mod destinations;
mod idempotency;
mod imports;
mod jobs;
mod payments;
mod processors;
mod sessions;
mod tokens;
mod vault_keys;
mod webhooks;

use std::time::Duration;

use strongroom::domain::accounts::generate_api_key;
use strongroom::store::{
    Account, Action, AuditEvent, DynStore, FeatureSet, NewJob, OutboxRecord, PaymentRecord,
    TokenRecord, Ts, WebhookRecord,
};
use uuid::Uuid;

use crate::support::{Backend, TestDb};

pub fn account(name: &str) -> Account {
    Account {
        id: Uuid::new_v4(),
        name: name.into(),
        features: FeatureSet::all(),
        created_at: Ts::now(),
    }
}

/// Inserts `a` with a first key, unaudited: a fixture for tests about something else.
pub async fn insert_account(store: &DynStore, a: &Account) {
    let (key, _) = generate_api_key(a.id, "initial");
    store.insert_account(a, &key, &[]).await.unwrap();
}

/// An audit event of no account, for fixtures whose audit trail a test does not look at (an account's
/// trail never shows it).
pub fn noted(action: Action) -> AuditEvent {
    AuditEvent::new(None, "fixture", action, None, "success")
}

/// An audit event of `account` by `actor` on `target`.
pub fn audited(account: Uuid, action: Action, target: Uuid) -> AuditEvent {
    AuditEvent::new(
        Some(account),
        "test",
        action,
        Some(target.to_string()),
        "success",
    )
}

/// The actions and targets of an account's audit trail, oldest first.
pub async fn trail(store: &DynStore, account: Uuid) -> Vec<(Action, Option<String>)> {
    let mut events = store.list_audit_events(account, 100).await.unwrap();
    events.reverse();
    events.into_iter().map(|e| (e.action, e.target)).collect()
}

/// A fresh store holding one account.
pub async fn store_with_account(backend: Backend) -> (TestDb, DynStore, Account) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    insert_account(&store, &a).await;
    (db, store, a)
}

/// A fresh store holding one account with one webhook, added at `t0()`.
pub async fn store_with_webhook(backend: Backend) -> (TestDb, DynStore, Account, WebhookRecord) {
    let (db, store, a) = store_with_account(backend).await;
    let hook = webhook(a.id, t0());
    store
        .insert_webhook(&hook, &noted(Action::WebhookAdd))
        .await
        .unwrap();
    (db, store, a, hook)
}

/// A fixed instant in the past (2025-01-01T00:00:00Z): every call gives the same, and whatever is
/// dated from it is older than `Ts::now()`.
pub fn t0() -> Ts {
    Ts::from_micros(1_735_689_600_000_000).unwrap()
}

pub fn at(base: Ts, seconds: u64) -> Ts {
    base.plus(Duration::from_secs(seconds))
}

pub fn token(account_id: Uuid, created_at: Ts) -> TokenRecord {
    let id = Uuid::new_v4();
    TokenRecord {
        id,
        account_id,
        created_at,
        expiry_month: 12,
        expiry_year: 2030,
        cardholder_name: Some("Ada Lovelace".into()),
        issuer_identification_number: "42424242".into(),
        masked_account_number: "42424242******42".into(),
        account_number_last_four: "4242".into(),
        account_number_length: 16,
        scheme: "visa".into(),
        status: "active".into(),
        fingerprint: id.as_bytes().to_vec(),
        sealed_card: vec![7; 48],
        business_key: None,
        import_provider: None,
        expires_at: None,
        keyed_id: false,
    }
}

/// Every column of a token, to compare what was written with what is read.
#[allow(clippy::type_complexity)]
pub fn token_columns(
    t: &TokenRecord,
) -> (
    (Uuid, Uuid, Ts, i32, i32, Option<&str>, &str, &str, &str),
    (i32, &str, &str, &[u8], &[u8], Option<&str>, Option<&str>),
    Option<Ts>,
) {
    (
        (
            t.id,
            t.account_id,
            t.created_at,
            t.expiry_month,
            t.expiry_year,
            t.cardholder_name.as_deref(),
            t.issuer_identification_number.as_str(),
            t.masked_account_number.as_str(),
            t.account_number_last_four.as_str(),
        ),
        (
            t.account_number_length,
            t.scheme.as_str(),
            t.status.as_str(),
            t.fingerprint.as_slice(),
            t.sealed_card.as_slice(),
            t.business_key.as_deref(),
            t.import_provider.as_deref(),
        ),
        t.expires_at,
    )
}

/// A token with the audit event of its creation, as the token writer stores them.
pub fn with_audit(t: TokenRecord) -> (TokenRecord, AuditEvent) {
    let audit = AuditEvent::new(
        Some(t.account_id),
        "test",
        Action::TokenCreate,
        Some(t.id.to_string()),
        "success",
    );
    (t, audit)
}

pub fn job(kind: &str, run_at: Ts) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        kind: kind.into(),
        payload: format!("{{\"kind\":\"{kind}\"}}"),
        max_attempts: 5,
        run_at,
        lease: None,
    }
}

pub fn webhook(account_id: Uuid, created_at: Ts) -> WebhookRecord {
    WebhookRecord {
        id: Uuid::new_v4(),
        account_id,
        url: "https://example.test/hooks".into(),
        events: "token.created,token.deleted".into(),
        sealed_key: vec![9; 60],
        created_at,
        removed_at: None,
    }
}

/// One event about `object_id` for `webhook`, with its delivery job.
pub fn outbox(webhook: &WebhookRecord, object_id: Uuid, created_at: Ts) -> OutboxRecord {
    let id = Uuid::new_v4();
    OutboxRecord {
        id,
        event_id: Uuid::new_v4(),
        webhook_id: webhook.id,
        account_id: webhook.account_id,
        object_id,
        // Every event of an object carries its creation time; one time for all objects of a test.
        object_created_at: t0(),
        event_type: "token.created".into(),
        body: format!("{{\"object\":\"{object_id}\"}}"),
        created_at,
        job: NewJob {
            id: Uuid::new_v4(),
            kind: "webhook.deliver".into(),
            payload: format!("{{\"delivery_id\":\"{id}\"}}"),
            max_attempts: 1,
            run_at: created_at,
            lease: None,
        },
    }
}

pub fn payment(account_id: Uuid, created_at: Ts, status: &str, currency: &str) -> PaymentRecord {
    PaymentRecord {
        id: Uuid::new_v4(),
        account_id,
        version: 1,
        created_at,
        updated_at: created_at,
        use_case: "one_time".into(),
        status: status.into(),
        currency_code: currency.into(),
        reference: "order-1".into(),
        capture_mode: "auto".into(),
        amount_requested: 1_000,
        amount_authorized: 0,
        amount_captured: 0,
        amount_voided: 0,
        amount_refunded: 0,
        amount_refund_reserved: 0,
        capture_requested: None,
        token_id: Uuid::new_v4(),
        source: "{\"scheme\":\"visa\"}".into(),
        flow_matrix_rule: "default".into(),
        processor: "sandbox".into(),
        processor_reference: None,
        failure_details: None,
        initial_payment_id: None,
        recurring_frequency: None,
        recurring_expiry: None,
        metadata: Some("{\"k\":\"v\"}".into()),
    }
}

/// What `Debug` shows of a record that derives it: every field, so equal text is equal records.
pub fn same<T: std::fmt::Debug>(a: &T, b: &T) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
