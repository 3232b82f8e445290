//! Payments: creation for each use case, capture, void, refunds, and `GET /payments`. Each handler parses
//! the request, calls `domain::payments`, and answers with the objects of `model::payment`.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, OptionalJsonBody, PathId, QueryMap};
use super::pagination::{date_range, JsonPage, PageParams, Paginated, Pagination};
use super::tokens::actor;
use super::AppState;
use crate::domain::payments::input::{
    is_currency, validate_amount_only, validate_payment, validate_refund, RequestKind,
};
use crate::domain::FieldError;
use crate::model::payment::{Payment, PaymentStatus, Refund, Transaction, UseCase};
use crate::store::PaymentFilter;

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
) -> ApiResult<Json<Payment>> {
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
    Ok(Json(payment))
}

macro_rules! create_endpoint {
    ($name:ident, $path:literal, $tag:literal, $use_case:expr, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = $tag, security(("APIKeyAuth" = [])),
                    request_body(content = PaymentRequest, content_type = "application/json"),
                    responses((status = 200, body = Payment), (status = 401, body = ErrorBody),
                              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            JsonBody(body): JsonBody,
        ) -> ApiResult<Json<Payment>> {
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
                    responses((status = 200, body = Payment), (status = 404, body = ErrorBody),
                              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            PathId(id): PathId,
            JsonBody(body): JsonBody,
        ) -> ApiResult<Json<Payment>> {
            create(
                &state,
                &principal,
                $use_case,
                &body,
                RequestKind::Subsequent,
                Some(id),
            )
            .await
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
    responses((status = 200, body = Payment), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Payment>> {
    Ok(Json(state.payments.get(principal.account_id, id).await?))
}

/// Captures an authorized payment, in full or once in part (`{"amount": …}`); the capture completes in the background.
#[utoipa::path(post, path = "/payments/{id}/capture", tag = "payments_modifications", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, description = "The payment, now `capturing`", body = Payment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn capture(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody,
) -> ApiResult<Json<Payment>> {
    let amount = validate_amount_only(body.as_ref(), false).map_err(ApiError::validation)?;
    Ok(Json(
        state
            .payments
            .capture(principal.account_id, id, amount)
            .await?,
    ))
}

/// Voids an authorized payment; the void completes in the background.
#[utoipa::path(post, path = "/payments/{id}/void", tag = "payments_modifications", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    responses((status = 200, description = "The payment, now `voiding`", body = Payment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn void(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Payment>> {
    Ok(Json(state.payments.void(principal.account_id, id).await?))
}

/// The body of a refund request (documentation; checked by `validate_refund`). Every field is optional.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefundRequest {
    /// In minor units; default: all that is left to refund.
    amount: Option<i64>,
    /// ISO 4217; when sent, it must be the payment's currency.
    currency_code: Option<String>,
    /// Up to 80 characters.
    reference: Option<String>,
}

/// Refunds part or all of what is left of a captured payment (`{"amount", "currency_code", "reference"}`).
#[utoipa::path(post, path = "/payments/{id}/refunds", tag = "payments_modifications", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment")),
    request_body(content = Option<RefundRequest>, content_type = "application/json"),
    responses((status = 200, description = "The refund, `processing`", body = Refund), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn refund(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody,
) -> ApiResult<Json<Refund>> {
    let input = validate_refund(body.as_ref()).map_err(ApiError::validation)?;
    Ok(Json(
        state
            .payments
            .refund(principal.account_id, id, input)
            .await?,
    ))
}

/// One page of `all`, which is a payment's whole list (a payment has few refunds and transactions).
fn page_of<T>(all: Vec<T>, page: PageParams) -> Paginated<T> {
    let total = all.len() as u64;
    let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
    let data = all
        .into_iter()
        .skip(skip)
        .take(page.limit as usize)
        .collect();
    Paginated::new(data, page, total)
}

/// `limit` and `page`, the only query parameters of a payment's lists.
fn page_only(query: &std::collections::HashMap<String, String>) -> ApiResult<PageParams> {
    let mut errors = Vec::new();
    let page = PageParams::from_query(query, &mut errors);
    if errors.is_empty() {
        Ok(page)
    } else {
        Err(ApiError::validation(errors))
    }
}

#[derive(Serialize, ToSchema)]
pub struct RefundResponseList {
    pub data: Vec<Refund>,
    pub pagination: Pagination,
}

/// Lists a payment's refunds, oldest first, a page at a time.
#[utoipa::path(get, path = "/payments/{id}/refunds", tag = "refunds_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment"), PageParams),
    responses((status = 200, body = RefundResponseList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_refunds(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<Refund>>> {
    let page = page_only(&query)?;
    let refunds = state.payments.refunds(principal.account_id, id).await?;
    Ok(Json(page_of(refunds, page)))
}

/// Shows one refund.
#[utoipa::path(get, path = "/refunds/{id}", tag = "refunds_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The refund")),
    responses((status = 200, body = Refund), (status = 404, body = ErrorBody)))]
pub async fn get_refund(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Refund>> {
    Ok(Json(
        state.payments.get_refund(principal.account_id, id).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct TransactionResponseList {
    pub data: Vec<Transaction>,
    pub pagination: Pagination,
}

/// Lists the processor transactions of a payment, oldest first, a page at a time.
#[utoipa::path(get, path = "/payments/{id}/transactions", tag = "payments_data", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The payment"), PageParams),
    responses((status = 200, body = TransactionResponseList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_transactions(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<Transaction>>> {
    let page = page_only(&query)?;
    let transactions = state
        .payments
        .transactions(principal.account_id, id)
        .await?;
    Ok(Json(page_of(transactions, page)))
}

#[derive(Serialize, ToSchema)]
pub struct PaymentResponseList {
    pub data: Vec<Payment>,
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
) -> ApiResult<JsonPage> {
    let mut errors = Vec::new();
    let page = PageParams::from_query(&query, &mut errors);
    let (from, until) = date_range(&query, &mut errors);
    let statuses = comma_list(
        &query,
        "status",
        |s| s.parse::<PaymentStatus>().is_ok(),
        &mut errors,
        &format!(
            "must be a comma-separated list of payment statuses ({})",
            PaymentStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
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
    Ok(JsonPage::new(rows, page, total))
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
