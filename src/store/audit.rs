//! The audit trail: `Action` (what can be audited, with the exact strings stored), `AuditEvent`, and
//! `AuditStore`. `push_audit_insert` is the one text that writes audit rows: changes that are audited
//! write their row with it inside their own transaction.

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::backend::SqlDb;
use super::{StoreResult, Ts};

/// What an audit event records. The strings are stored as they are: changing one would split the trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    AccountCreate,
    ApiKeyCreate,
    ApiKeyRevoke,
    TokenCreate,
    TokenDelete,
    TokenConsume,
    TokenReadCard,
    WebhookAdd,
    WebhookRemove,
    ImportCreate,
    ImportAbort,
    MasterKeyRotate,
    PaymentsSeed,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::AccountCreate,
        Action::ApiKeyCreate,
        Action::ApiKeyRevoke,
        Action::TokenCreate,
        Action::TokenDelete,
        Action::TokenConsume,
        Action::TokenReadCard,
        Action::WebhookAdd,
        Action::WebhookRemove,
        Action::ImportCreate,
        Action::ImportAbort,
        Action::MasterKeyRotate,
        Action::PaymentsSeed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::AccountCreate => "account.create",
            Action::ApiKeyCreate => "api_key.create",
            Action::ApiKeyRevoke => "api_key.revoke",
            Action::TokenCreate => "token.create",
            Action::TokenDelete => "token.delete",
            Action::TokenConsume => "token.consume",
            Action::TokenReadCard => "token.read_card",
            Action::WebhookAdd => "webhook.add",
            Action::WebhookRemove => "webhook.remove",
            Action::ImportCreate => "import.create",
            Action::ImportAbort => "import.abort",
            Action::MasterKeyRotate => "master_key.rotate",
            Action::PaymentsSeed => "payments.seed",
        }
    }
}

impl TryFrom<String> for Action {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == value)
            .ok_or_else(|| format!("unknown audit action `{value}`"))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One line of the audit trail. `target` names what was acted on (an id), never card data.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// Assigned by the database in insertion order; 0 until stored.
    pub id: i64,
    pub at: Ts,
    pub account_id: Option<Uuid>,
    pub actor: String,
    #[sqlx(try_from = "String")]
    pub action: Action,
    pub target: Option<String>,
    pub outcome: String,
}

impl AuditEvent {
    pub fn new(
        account_id: Option<Uuid>,
        actor: impl Into<String>,
        action: Action,
        target: Option<String>,
        outcome: &str,
    ) -> Self {
        Self {
            id: 0,
            at: Ts::now(),
            account_id,
            actor: actor.into(),
            action,
            target,
            outcome: outcome.to_owned(),
        }
    }
}

#[async_trait]
pub trait AuditStore {
    /// Writes an event on its own. Only for what changes nothing (a card read, a refused change): an
    /// audited change writes its event inside its own transaction, through the store method making it.
    async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    /// An account's events, newest first.
    async fn list_audit_events(&self, account_id: Uuid, limit: i64)
        -> StoreResult<Vec<AuditEvent>>;
}

/// Appends `INSERT INTO audit_events (…) VALUES (…), …` for `events` to `query`.
pub(crate) fn push_audit_insert<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) where
    DB: Database,
    Ts: Encode<'a, DB> + Type<DB>,
    Option<Uuid>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    query.push("INSERT INTO audit_events (at, account_id, actor, action, target, outcome) ");
    query.push_values(events, |mut row, e| {
        row.push_bind(e.at)
            .push_bind(e.account_id)
            .push_bind(e.actor.as_str())
            .push_bind(e.action.as_str())
            .push_bind(e.target.as_deref())
            .push_bind(e.outcome.as_str());
    });
}

/// Inserts one audit event, on a connection or inside the transaction of the change it records.
pub(crate) async fn write_audit<DB>(
    conn: &mut DB::Connection,
    event: &AuditEvent,
) -> Result<(), sqlx::Error>
where
    DB: SqlDb,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    write_audits::<DB>(conn, std::slice::from_ref(event)).await
}

/// Inserts audit events in one statement (none: nothing), inside the transaction of the change they
/// record.
pub(crate) async fn write_audits<DB>(
    conn: &mut DB::Connection,
    events: &[AuditEvent],
) -> Result<(), sqlx::Error>
where
    DB: SqlDb,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::<DB>::new("");
    push_audit_insert(&mut insert, events);
    DB::execute_built(conn, &mut insert).await?;
    Ok(())
}

macro_rules! impl_audit_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::audit::write_audit;
            use $crate::store::backend::SqlBackend;
            use $crate::store::{AuditEvent, AuditStore, StoreResult};

            type Db = <$store as SqlBackend>::DB;

            #[async_trait::async_trait]
            impl AuditStore for $store {
                async fn insert_audit_event(&self, e: &AuditEvent) -> StoreResult<()> {
                    let mut conn = self.pool().acquire().await?;
                    Ok(write_audit::<Db>(&mut conn, e).await?)
                }

                async fn list_audit_events(&self, account_id: Uuid, limit: i64) -> StoreResult<Vec<AuditEvent>> {
                    Ok(sqlx::query_as(
                        "SELECT id, at, account_id, actor, action, target, outcome FROM audit_events \
                         WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                    )
                    .bind(account_id)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?)
                }
            }
        };
    };
}

pub(crate) use impl_audit_store;
