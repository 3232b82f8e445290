//! Payments: creation for each use case, capture, void, refunds, and `GET /payments`.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, OptionalJsonBody, PathId, QueryMap};
use super::pagination::{date_range, PageParams, Paginated, Pagination};
use super::tokens::actor;
use super::AppState;
use crate::domain::payment_input::{
    is_currency, validate_amount_only, validate_payment, RequestKind,
};
use crate::domain::payments::{UseCase, STATUSES};
use crate::domain::FieldError;
use crate::store::{PaymentFilter, PaymentRecord, RefundRecord, TransactionRecord, Ts};

#[derive(Serialize, ToSchema)]
pub struct Amounts {
    pub requested: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded: Option<i64>,
}

/// A payment, as the spec's `PaymentResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = PaymentResponse)]
pub struct PaymentResponse {
    pub id: Uuid,
    pub amount: Amounts,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Ts,
    pub currency_code: String,
    pub flow_matrix_rule: String,
    pub reference: String,
    /// One of the spec's `PaymentStatus` values.
    pub status: String,
    /// One of the spec's `UseCase` values.
    pub use_case: String,
    /// `{type: "card", cardholder_name, expiry_month, expiry_year, masked_account_number, pan_type: "FPAN", issuer}`.
    #[schema(value_type = Object)]
    pub source: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub failure_details: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_payment_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurring_frequency: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurring_expiry: Option<String>,
}

fn positive(n: i64) -> Option<i64> {
    (n > 0).then_some(n)
}

/// Stored JSON, embedded as it is (it was written by this server from checked values).
fn raw(json: String) -> Option<Box<RawValue>> {
    RawValue::from_string(json).ok()
}

impl From<PaymentRecord> for PaymentResponse {
    fn from(p: PaymentRecord) -> Self {
        let source = raw(p.source)
            .unwrap_or_else(|| RawValue::from_string("{}".to_owned()).unwrap_or_default());
        Self {
            id: p.id,
            amount: Amounts {
                requested: p.amount_requested,
                authorized: positive(p.amount_authorized),
                captured: positive(p.amount_captured),
                voided: positive(p.amount_voided),
                refunded: positive(p.amount_refunded),
            },
            created_at: p.created_at,
            currency_code: p.currency_code,
            flow_matrix_rule: p.flow_matrix_rule,
            reference: p.reference,
            status: p.status,
            use_case: p.use_case,
            source,
            metadata: p.metadata.and_then(raw),
            failure_details: p.failure_details.and_then(raw),
            initial_payment_id: p.initial_payment_id,
            recurring_frequency: p.recurring_frequency,
            recurring_expiry: p.recurring_expiry,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RefundResponse {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: i64,
    pub currency_code: String,
    /// `processing`, `completed` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub failure_details: Option<Value>,
}

impl From<RefundRecord> for RefundResponse {
    fn from(r: RefundRecord) -> Self {
        Self {
            id: r.id,
            payment_id: r.payment_id,
            amount: r.amount,
            currency_code: r.currency_code,
            status: r.status,
            reference: r.reference,
            created_at: r.created_at,
            failure_details: r
                .failure_details
                .and_then(|s| serde_json::from_str(&s).ok()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TransactionResponse {
    pub id: Uuid,
    /// `authorization`, `capture`, `void`, `refund` or `settlement`.
    pub kind: String,
    /// `success` or `failure`.
    pub status: String,
    pub amount: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<TransactionRecord> for TransactionResponse {
    fn from(t: TransactionRecord) -> Self {
        Self {
            id: t.id,
            kind: t.kind,
            status: t.status,
            amount: t.amount,
            created_at: t.created_at,
            processor_reference: t.processor_reference,
            message: t.message,
        }
    }
}

/// The body of a payment request (documentation; every field is checked by hand so that all faults are
/// reported together).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PaymentRequest {
    /// In minor units, 1 or more.
    amount: i64,
    /// ISO 4217; taken from the initial payment for subsequent ones.
    currency_code: String,
    /// Up to 80 characters.
    reference: String,
    /// `{"type": "token", "token_id": "…"}`; taken from the initial payment for subsequent ones.
    #[schema(value_type = Object)]
    source: Value,
    /// `automatic` (default) or `manual`.
    capture: Option<String>,
    /// Up to 20 entries, keys up to 20 characters, values up to 80.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Recurring only: minimum days between authorizations.
    recurring_frequency: Option<i32>,
    /// Recurring only: yyyyMMdd.
    recurring_expiry: Option<String>,
}

async fn create(
    state: &AppState,
    principal: &Principal,
    use_case: UseCase,
    body: &Value,
    kind: RequestKind,
    initial: Option<Uuid>,
) -> ApiResult<Json<PaymentResponse>> {
    let input = validate_payment(body, kind).map_err(ApiError::validation)?;
    let payment = state
        .payments
        .create(
            principal.account_id,
            &actor(principal),
            use_case,
            input,
            initial,
        )
        .await?;
    Ok(Json(payment.into()))
}

macro_rules! create_endpoint {
    ($name:ident, $path:literal, $tag:literal, $use_case:expr, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = $tag, security(("APIKeyAuth" = [])),
            request_body(content = PaymentRequest, content_type = "application/json"),
            responses((status = 200, body = PaymentResponse), (status = 401, body = ErrorBody),
                      (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            JsonBody(body): JsonBody,
        ) -> ApiResult<Json<PaymentResponse>> {
            create(&state, &principal, $use_case, &body, $kind, None).await
        }
    };
}

create_endpoint!(
    one_off,
    "/payments/one-off",
    "payments_ci",
    UseCase::OneOff,
    RequestKind::Initial,
    "Creates a customer-initiated one-off payment on a token."
);
create_endpoint!(
    unscheduled,
    "/payments/unscheduled",
    "payments_ci",
    UseCase::Unscheduled,
    RequestKind::Initial,
    "Creates the customer-initiated first payment of an unscheduled series."
);
create_endpoint!(
    recurring,
    "/payments/recurring",
    "payments_ci",
    UseCase::Recurring,
    RequestKind::InitialRecurring,
    "Creates the customer-initiated first payment of a recurring series."
);

macro_rules! subsequent_endpoint {
    ($name:ident, $path:literal, $use_case:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "payments_mi", security(("APIKeyAuth" = [])),
            params(("id" = Uuid, Path, description = "The initial payment")),
            request_body(content = PaymentRequest, content_type = "application/json"),
            responses((status = 200, body = PaymentResponse), (status = 404, body = ErrorBody),
                      (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            PathId(id): PathId,
            JsonBody(body): JsonBody,
        ) -> ApiResult<Json<PaymentResponse>> {
            create(&state, &principal, $use_case, &body, RequestKind::Subsequent, Some(id)).await
        }
    };
}

subsequent_endpoint!(
    unscheduled_subsequent,
    "/payments/unscheduled/{id}/subsequent",
    UseCase::SubsequentUnscheduled,
    "Creates a merchant-initiated payment on the source of an unscheduled initial payment."
);
subsequent_endpoint!(
    recurring_subsequent,
    "/payments/recurring/{id}/subsequent",
    UseCase::SubsequentRecurring,
    "Creates a merchant-initiated payment on the source of a recurring initial payment."
);

/// Shows one payment.
#[utoipa::path(get, path = "/payments/{id}", tag = "payments_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, body = PaymentResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<PaymentResponse>> {
    Ok(Json(
        state.payments.get(principal.account_id, id).await?.into(),
    ))
}

/// Captures an authorized payment, in full or once in part (`{"amount": …}`); the capture completes in the background.
#[utoipa::path(post, path = "/payments/{id}/capture", tag = "payments_modifications", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, description = "The payment, now `capturing`", body = PaymentResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn capture(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody,
) -> ApiResult<Json<PaymentResponse>> {
    let amount = validate_amount_only(body.as_ref(), false).map_err(ApiError::validation)?;
    Ok(Json(
        state
            .payments
            .capture(principal.account_id, id, amount)
            .await?
            .into(),
    ))
}

/// Voids an authorized payment; the void completes in the background.
#[utoipa::path(post, path = "/payments/{id}/void", tag = "payments_modifications", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, description = "The payment, now `voiding`", body = PaymentResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn void(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<PaymentResponse>> {
    Ok(Json(
        state.payments.void(principal.account_id, id).await?.into(),
    ))
}

/// Refunds part or all of what is left of a captured payment (`{"amount": …, "reference": …}`).
#[utoipa::path(post, path = "/payments/{id}/refunds", tag = "payments_modifications", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, description = "The refund, `processing`", body = RefundResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn refund(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody,
) -> ApiResult<Json<RefundResponse>> {
    let amount = validate_amount_only(body.as_ref(), false).map_err(ApiError::validation)?;
    let reference = body
        .as_ref()
        .and_then(|b| b.get("reference"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Json(
        state
            .payments
            .refund(principal.account_id, id, amount, reference)
            .await?
            .into(),
    ))
}

/// Lists a payment's refunds, oldest first.
#[utoipa::path(get, path = "/payments/{id}/refunds", tag = "refunds_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, body = Vec<RefundResponse>), (status = 404, body = ErrorBody)))]
pub async fn list_refunds(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<RefundResponse>>> {
    let refunds = state.payments.refunds(principal.account_id, id).await?;
    Ok(Json(refunds.into_iter().map(Into::into).collect()))
}

/// Shows one refund.
#[utoipa::path(get, path = "/refunds/{id}", tag = "refunds_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The refund")),
    responses((status = 200, body = RefundResponse), (status = 404, body = ErrorBody)))]
pub async fn get_refund(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<RefundResponse>> {
    Ok(Json(
        state
            .payments
            .get_refund(principal.account_id, id)
            .await?
            .into(),
    ))
}

/// Lists the processor transactions of a payment, oldest first.
#[utoipa::path(get, path = "/payments/{id}/transactions", tag = "payments_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, body = Vec<TransactionResponse>), (status = 404, body = ErrorBody)))]
pub async fn list_transactions(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<TransactionResponse>>> {
    let transactions = state
        .payments
        .transactions(principal.account_id, id)
        .await?;
    Ok(Json(transactions.into_iter().map(Into::into).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct PaymentResponseList {
    pub data: Vec<PaymentResponse>,
    pub pagination: Pagination,
}

/// Lists the account's payments, newest first (ties by id), filtered by creation date, status and currency.
#[utoipa::path(get, path = "/payments", tag = "payments_data", operation_id = "list_payments", security(("APIKeyAuth" = [])),
    params(
        PageParams,
        ("from" = Option<String>, Query, description = "Created on or after this UTC date (YYYY-MM-DD)"),
        ("to" = Option<String>, Query, description = "Created on or before this UTC date (YYYY-MM-DD)"),
        ("currency_code" = Option<String>, Query, description = "Comma list of ISO 4217 codes, e.g. EUR,USD"),
        ("status" = Option<String>, Query, description = "Comma list of statuses, e.g. authorized,captured"),
    ),
    responses((status = 200, body = PaymentResponseList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_payments(
    State(state): State<AppState>,
    principal: Principal,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<PaymentResponse>>> {
    let mut errors = Vec::new();
    let page = PageParams::from_query(&query, &mut errors);
    let (from, until) = date_range(&query, &mut errors);
    let statuses = comma_list(&query, "status", |s| STATUSES.contains(&s), &mut errors, "must be a comma-separated list of payment statuses (open, processing, failed, authorized, capturing, captured, settling, settled, voiding, voided)");
    let currencies = comma_list(
        &query,
        "currency_code",
        is_currency,
        &mut errors,
        "must be a comma-separated list of ISO 4217 currency codes such as EUR,USD",
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = PaymentFilter {
        account_id: principal.account_id,
        from,
        until,
        statuses,
        currencies,
    };
    let (rows, total) = state
        .payments
        .list(&filter, i64::from(page.limit), page.offset())
        .await?;
    Ok(Json(Paginated::new(
        rows.into_iter().map(Into::into).collect(),
        page,
        total,
    )))
}

fn comma_list(
    query: &std::collections::HashMap<String, String>,
    name: &str,
    valid: impl Fn(&str) -> bool,
    errors: &mut Vec<FieldError>,
    message: &str,
) -> Vec<String> {
    let Some(raw) = query.get(name) else {
        return Vec::new();
    };
    let items: Vec<String> = raw.split(',').map(|s| s.trim().to_owned()).collect();
    if items.iter().any(|s| !valid(s)) {
        errors.push(FieldError::new(format!("query.{name}"), message));
        return Vec::new();
    }
    let mut items = items;
    items.sort();
    items.dedup();
    items
}
