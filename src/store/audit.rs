//! The audit trail: `Action` (what can be audited, with the exact strings stored), `AuditEvent`, and
//! `AuditStore`. `push_audit_insert` is the one text that writes audit rows: changes that are audited
//! write their row with it inside their own transaction.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::{Database, Encode, QueryBuilder, Transaction, Type};
use uuid::Uuid;

use super::backend::SqlDb;
use super::webhook_records::write_outbox;
use super::OutboxRecord;
use super::{StoreResult, Ts};
use crate::model::string_enum;

string_enum! {
    /// What an audit event records. The strings are stored as they are: changing one would split the trail.
    pub enum Action {
        AccountCreate = "account.create",
        ApiKeyCreate = "api_key.create",
        ApiKeyRevoke = "api_key.revoke",
        TokenCreate = "token.create",
        TokenDelete = "token.delete",
        TokenConsume = "token.consume",
        TokenReadCard = "token.read_card",
        WebhookAdd = "webhook.add",
        WebhookRemove = "webhook.remove",
        ImportCreate = "import.create",
        ImportAbort = "import.abort",
        MasterKeyRotate = "master_key.rotate",
        PaymentsSeed = "payments.seed",
        TokenForward = "token.forward",
        DestinationAdd = "destination.add",
        DestinationRemove = "destination.remove",
        ProcessorAdd = "processor.add",
        ProcessorRemove = "processor.remove",
        RouteSet = "route.set",
        ProcessorNotificationRefuse = "processor.notification_refuse",
        RequestRefuse = "request.refuse",
        ImportOpenStripeKey = "import.open_stripe_key",
        ImportEnd = "import.end",
        OriginAdd = "origin.add",
        OriginRemove = "origin.remove",
        TokenSessionComplete = "token_session.complete",
        MasterKeyInit = "master_key.init",
        MasterKeyRetire = "master_key.retire",
        DataKeyRotateStart = "data_key.rotate_start",
        DataKeyRotateEnd = "data_key.rotate_end",
        KeyFileRefuse = "master_key.file_refuse",
    }
}

/// How a stored action is read back (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Action {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value
            .parse()
            .map_err(|_| format!("unknown audit action `{value}`"))
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where the events written while serving one request come from: set by the API around each request
/// (a task-local, so that the domain and the store need not carry it), read by `AuditEvent::new`.
#[derive(Clone, Debug, Default)]
pub struct AuditOrigin {
    pub remote_addr: Option<String>,
    pub request_id: Option<String>,
}

tokio::task_local! {
    static AUDIT_ORIGIN: AuditOrigin;
}

impl AuditOrigin {
    /// Runs `fut` with this origin recorded on every audit event it creates.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        AUDIT_ORIGIN.scope(self, fut).await
    }

    fn current() -> Self {
        AUDIT_ORIGIN.try_with(Clone::clone).unwrap_or_default()
    }
}

static NODE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this node in every audit event of the process (the first name set wins: one process, one node).
pub fn set_node_name(name: &str) {
    let _ = NODE_NAME.set(name.to_owned());
}

/// One line of the audit trail. `target` names what was acted on (an id), never card data. The origin
/// (`remote_addr`, `request_id`, `node`) is filled by `new` from the request being served, if any.
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
    pub remote_addr: Option<String>,
    pub request_id: Option<String>,
    pub node: Option<String>,
}

impl AuditEvent {
    pub fn new(
        account_id: Option<Uuid>,
        actor: impl Into<String>,
        action: Action,
        target: Option<String>,
        outcome: &str,
    ) -> Self {
        let origin = AuditOrigin::current();
        Self {
            id: 0,
            at: Ts::now(),
            account_id,
            actor: actor.into(),
            action,
            target,
            outcome: outcome.to_owned(),
            remote_addr: origin.remote_addr,
            request_id: origin.request_id,
            node: NODE_NAME.get().cloned(),
        }
    }
}

impl AuditEvent {
    /// The same event with `origin` in place of the one it was made with.
    pub fn with_origin(mut self, origin: AuditOrigin) -> Self {
        self.remote_addr = origin.remote_addr;
        self.request_id = origin.request_id;
        self
    }
}

/// What `list_audit_events_page` selects: an account's events (`None`: every account's, for operators),
/// an action, and a time range (`from` inclusive, `to` exclusive).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub account_id: Option<Uuid>,
    pub action: Option<Action>,
    pub from: Option<Ts>,
    pub to: Option<Ts>,
}

#[async_trait]
pub trait AuditStore {
    /// Writes an event on its own. Only for what changes nothing (a card read, a refused change): an
    /// audited change writes its event inside its own transaction, through the store method making it.
    async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Inserts many events in one transaction (one durable commit for the batch).
    async fn insert_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// How many events of `action` the trail holds (key operations belong to no account).
    async fn count_audit_events_with_action(&self, action: &str) -> StoreResult<i64>;
    /// An account's events, newest first.
    async fn list_audit_events(&self, account_id: Uuid, limit: i64)
        -> StoreResult<Vec<AuditEvent>>;
    /// One page of the events `filter` selects, newest first, and how many it selects in all.
    async fn list_audit_events_page(
        &self,
        filter: &AuditFilter,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<AuditEvent>, u64)>;
}

const AUDIT_COLUMNS: &str =
    "id, at, account_id, actor, action, target, outcome, remote_addr, request_id, node";

/// `WHERE …` for `filter`, its placeholders numbered from $1 in the order `bind_audit_filter` binds.
pub(crate) fn audit_where(filter: &AuditFilter) -> String {
    let mut clauses = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.account_id.is_some() {
        clauses.push(format!("account_id = {}", next()));
    }
    if filter.action.is_some() {
        clauses.push(format!("action = {}", next()));
    }
    if filter.from.is_some() {
        clauses.push(format!("at >= {}", next()));
    }
    if filter.to.is_some() {
        clauses.push(format!("at < {}", next()));
    }
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

pub(crate) fn audit_select(filter: &AuditFilter) -> (String, String, usize) {
    let filter_sql = audit_where(filter);
    let bound = [
        filter.account_id.is_some(),
        filter.action.is_some(),
        filter.from.is_some(),
        filter.to.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    (
        format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events {filter_sql} ORDER BY id DESC LIMIT ${} OFFSET ${}",
            bound + 1,
            bound + 2
        ),
        format!("SELECT COUNT(*) FROM audit_events {filter_sql}"),
        bound,
    )
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
    query.push(
        "INSERT INTO audit_events (at, account_id, actor, action, target, outcome, remote_addr, request_id, node) ",
    );
    query.push_values(events, |mut row, e| {
        row.push_bind(e.at)
            .push_bind(e.account_id)
            .push_bind(e.actor.as_str())
            .push_bind(e.action.as_str())
            .push_bind(e.target.as_deref())
            .push_bind(e.outcome.as_str())
            .push_bind(e.remote_addr.as_deref())
            .push_bind(e.request_id.as_deref())
            .push_bind(e.node.as_deref());
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

/// Ends a guarded change (an UPDATE or DELETE that must hit exactly its one row): when `rows` is 1, the
/// change's audit row and outbox are written in its transaction and it commits; otherwise nothing is
/// written and the transaction rolls back on drop. Answers whether the change happened.
pub(crate) async fn commit_if_one<DB>(
    mut tx: Transaction<'_, DB>,
    rows: u64,
    audit: Option<&AuditEvent>,
    outbox: &[OutboxRecord],
) -> Result<bool, sqlx::Error>
where
    DB: SqlDb,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    if rows != 1 {
        return Ok(false);
    }
    if let Some(audit) = audit {
        write_audit::<DB>(&mut tx, audit).await?;
    }
    write_outbox::<DB>(&mut tx, outbox).await?;
    tx.commit().await?;
    Ok(true)
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

                async fn insert_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    for chunk in events.chunks($crate::store::backend::INSERT_CHUNK) {
                        let mut insert = sqlx::QueryBuilder::<Db>::new("");
                        $crate::store::audit::push_audit_insert(&mut insert, chunk);
                        <Db as $crate::store::backend::SqlDb>::execute_built(&mut *tx, &mut insert)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn count_audit_events_with_action(&self, action: &str) -> StoreResult<i64> {
                    Ok(
                        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = $1")
                            .bind(action)
                            .fetch_one(self.pool())
                            .await?,
                    )
                }

                async fn list_audit_events(
                    &self,
                    account_id: Uuid,
                    limit: i64,
                ) -> StoreResult<Vec<AuditEvent>> {
                    let filter = $crate::store::audit::AuditFilter {
                        account_id: Some(account_id),
                        ..Default::default()
                    };
                    Ok(self.list_audit_events_page(&filter, limit, 0).await?.0)
                }

                async fn list_audit_events_page(
                    &self,
                    filter: &$crate::store::audit::AuditFilter,
                    limit: i64,
                    offset: i64,
                ) -> StoreResult<(Vec<AuditEvent>, u64)> {
                    let (select, count, _) = $crate::store::audit::audit_select(filter);
                    let mut rows = sqlx::query_as::<Db, AuditEvent>(&select);
                    let mut total = sqlx::query_as::<Db, (i64,)>(&count);
                    if let Some(id) = filter.account_id {
                        rows = rows.bind(id);
                        total = total.bind(id);
                    }
                    if let Some(action) = filter.action {
                        rows = rows.bind(action.as_str());
                        total = total.bind(action.as_str());
                    }
                    if let Some(from) = filter.from {
                        rows = rows.bind(from);
                        total = total.bind(from);
                    }
                    if let Some(to) = filter.to {
                        rows = rows.bind(to);
                        total = total.bind(to);
                    }
                    let rows = rows.bind(limit).bind(offset).fetch_all(self.pool()).await?;
                    let (total,) = total.fetch_one(self.pool()).await?;
                    Ok((rows, u64::try_from(total).unwrap_or(0)))
                }
            }
        };
    };
}

pub(crate) use impl_audit_store;
