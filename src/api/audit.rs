//! `GET /audit-events`: the calling account's audit trail, newest first, paginated like every list,
//! filtered by `action` and by `from`/`to` dates.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::QueryMap;
use super::pagination::{date_range, PageParams, Paginated, Pagination};
use super::AppState;
use crate::domain::FieldError;
use crate::store::{Action, AuditEvent, AuditFilter};

/// One event of the audit trail: who did what, when, with which outcome, and where from. Never card
/// data or secrets.
#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    /// Position in the trail (increasing).
    pub id: i64,
    /// When it happened (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub at: String,
    /// Who: `key:<id>` for an API key, `admin-cli` (the command line), `system` (a job) or `server-bootstrap`; for a
    /// refused request, `key:<id>` of the presented key when it had the shape of one, else `anonymous`.
    pub actor: String,
    /// What, e.g. `token.create`, `request.refuse`, `import.end`.
    pub action: String,
    /// What it was done to (an id, or the refused request's method and route).
    pub target: Option<String>,
    /// `success`, `failure`, `unauthorized`, `forbidden`, `finished`, `aborted`…
    pub outcome: String,
    /// The client's IP address, for what a request caused.
    pub remote_addr: Option<String>,
    /// The request's `x-request-id`, for what a request caused.
    pub request_id: Option<String>,
    /// The node that wrote it.
    pub node: Option<String>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at.rfc3339(),
            actor: e.actor,
            action: e.action.as_str().to_owned(),
            target: e.target,
            outcome: e.outcome,
            remote_addr: e.remote_addr,
            request_id: e.request_id,
            node: e.node,
        }
    }
}

/// A page of audit events (documentation of the list's shape).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditEventList {
    data: Vec<AuditEventView>,
    pagination: Pagination,
}

/// Lists the calling account's audit events, newest first.
#[utoipa::path(get, path = "/audit-events", tag = "audit", operation_id = "list_audit_events",
    security(("APIKeyAuth" = [])),
    params(
        PageParams,
        ("action" = Option<String>, Query, description = "Only events of this action, e.g. `token.create`."),
        ("from" = Option<String>, Query, description = "Only events on or after this UTC date (YYYY-MM-DD)."),
        ("to" = Option<String>, Query, description = "Only events on or before this UTC date (YYYY-MM-DD)."),
    ),
    responses((status = 200, body = AuditEventList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_audit_events(
    State(state): State<AppState>,
    principal: Principal,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<AuditEventView>>> {
    let mut errors = Vec::new();
    let page = PageParams::from_query(&query, &mut errors);
    let (from, to) = date_range(&query, &mut errors);
    let action = match query.get("action") {
        None => None,
        Some(raw) => match raw.parse::<Action>() {
            Ok(action) => Some(action),
            Err(_) => {
                errors.push(FieldError::new(
                    "query.action",
                    "is not a known audit action",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = AuditFilter {
        account_id: Some(principal.account_id),
        action,
        from,
        to,
    };
    let (events, total) = state
        .store
        .list_audit_events_page(&filter, i64::from(page.limit), page.offset())
        .await?;
    let data = events.into_iter().map(AuditEventView::from).collect();
    Ok(Json(Paginated::new(data, page, total)))
}
