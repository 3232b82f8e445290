//! Token imports from Stripe: start one, list them, read one with its counters, abort it, list its
//! failures; and the ingest endpoint Stripe's Forwarding API posts each card to.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{Principal, API_KEY_HEADER};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, PathId, QueryMap};
use super::pagination::{PageParams, Paginated, Pagination};
use super::tokens::actor;
use super::AppState;
use crate::connectors::stripe::StripeKey;
use crate::domain::imports::BUSINESS_KEY_HEADER;
use crate::domain::{objects, present, FieldError};
use crate::model::import::{Import, ImportFailure, ImportProvider};
use crate::model::token::Token;
use crate::store::Feature;

/// A page of imports (documentation of the list's shape).
#[derive(ToSchema)]
#[schema(as = TokensImportList)]
#[allow(dead_code)]
pub struct ImportList {
    data: Vec<Import>,
    pagination: Pagination,
}

/// A page of an import's failures (documentation of the list's shape).
#[derive(ToSchema)]
#[schema(as = TokensImportFailureList)]
#[allow(dead_code)]
pub struct FailureList {
    data: Vec<ImportFailure>,
    pagination: Pagination,
}

/// The request body of `POST /tokens/imports` (documentation; the handler checks each field itself).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewImport {
    /// `stripe`.
    provider: String,
    stripe: NewStripeSettings,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewStripeSettings {
    /// A secret (`sk_…`) or restricted (`rk_…`) key that may read customers and payment methods and
    /// create forwarding requests. Stored sealed while the import runs, destroyed when it ends.
    api_key: String,
}

/// Starts moving every card stored in a Stripe account into the vault. Gated: the account needs
/// `cde_import`.
#[utoipa::path(post, path = "/tokens/imports", tag = "processor_backup", operation_id = "create_tokens_import",
    security(("APIKeyAuth" = [])),
    request_body(content = NewImport, content_type = "application/json"),
    responses((status = 200, description = "The import, `preparing`", body = Import),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Another import of the account is preparing or running", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_import(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Import>> {
    principal.require(Feature::CdeImport)?;
    let key = parse_new_import(&body).map_err(ApiError::validation)?;
    let import = state
        .imports
        .create(principal.account_id, &actor(&principal), &key)
        .await?;
    Ok(Json(import))
}

fn parse_new_import(body: &Value) -> Result<StripeKey, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for key in object.keys() {
        if key != "provider" && key != "stripe" {
            errors.push(FieldError::new(format!("$.{key}"), "is not a known field"));
        }
    }
    match present(object, "provider") {
        None => errors.push(FieldError::new("$.provider", "is required")),
        Some(Value::String(p)) if p.parse() == Ok(ImportProvider::Stripe) => {}
        Some(_) => errors.push(FieldError::new("$.provider", "must be `stripe`")),
    }
    let mut key = None;
    match present(object, "stripe") {
        None => errors.push(FieldError::new("$.stripe", "is required")),
        Some(Value::Object(stripe)) => {
            for name in stripe.keys().filter(|k| *k != "api_key") {
                errors.push(FieldError::new(
                    format!("$.stripe.{name}"),
                    "is not a known field",
                ));
            }
            match present(stripe, "api_key") {
                None => errors.push(FieldError::new("$.stripe.api_key", "is required")),
                Some(Value::String(k)) if k.trim().is_empty() => {
                    errors.push(FieldError::new("$.stripe.api_key", "must not be empty"))
                }
                Some(Value::String(k))
                    if k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    errors.push(FieldError::new(
                        "$.stripe.api_key",
                        "must be a Stripe API key (up to 255 printable characters)",
                    ))
                }
                Some(Value::String(k)) => key = Some(StripeKey::new(k.clone())),
                Some(_) => errors.push(FieldError::new("$.stripe.api_key", "must be a string")),
            }
        }
        Some(_) => errors.push(FieldError::new("$.stripe", "must be an object")),
    }
    match key {
        Some(key) if errors.is_empty() => Ok(key),
        _ => Err(errors),
    }
}

/// Lists the account's imports, newest first.
#[utoipa::path(get, path = "/tokens/imports", tag = "processor_backup", operation_id = "list_tokens_imports",
    security(("APIKeyAuth" = [])), params(PageParams),
    responses((status = 200, body = ImportList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_imports(
    State(state): State<AppState>,
    principal: Principal,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<Import>>> {
    let page = page_params(&query)?;
    let (data, total) = state
        .imports
        .list(principal.account_id, i64::from(page.limit), page.offset())
        .await?;
    Ok(Json(Paginated::new(data, page, total)))
}

fn page_params(query: &std::collections::HashMap<String, String>) -> ApiResult<PageParams> {
    let mut errors = Vec::new();
    let page = PageParams::from_query(query, &mut errors);
    if errors.is_empty() {
        Ok(page)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Shows an import with its counters (`attemts` = `successes` + `failures` at every moment).
#[utoipa::path(get, path = "/tokens/imports/{id}", tag = "processor_backup", operation_id = "get_tokens_details",
    security(("APIKeyAuth" = [])), params(("id" = Uuid, Path, description = "The ID of the import.")),
    responses((status = 200, body = Import), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_import(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Import>> {
    let import = state
        .imports
        .get(principal.account_id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(import))
}

/// Stops an import: it ends `aborted`, its Stripe key is destroyed and its ingest key dies.
#[utoipa::path(post, path = "/tokens/imports/{id}/abort", tag = "processor_backup", operation_id = "abort_tokens_import",
    security(("APIKeyAuth" = [])), params(("id" = Uuid, Path, description = "The ID of the import.")),
    responses((status = 200, description = "The import, `aborted`", body = Import), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already finished or aborted", body = ErrorBody)))]
pub async fn abort_import(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Import>> {
    let import = state
        .imports
        .abort(principal.account_id, &actor(&principal), id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(import))
}

/// Lists an import's failures in the order they happened.
#[utoipa::path(get, path = "/tokens/imports/{id}/failures", tag = "processor_backup", operation_id = "get_token_import_failures",
    security(("APIKeyAuth" = [])), params(("id" = Uuid, Path, description = "The ID of the import."), PageParams),
    responses((status = 200, body = FailureList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_failures(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<ImportFailure>>> {
    let page = page_params(&query)?;
    let (data, total) = state
        .imports
        .failures(
            principal.account_id,
            id,
            i64::from(page.limit),
            page.offset(),
        )
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Paginated::new(data, page, total)))
}

/// Where Stripe's Forwarding API posts each card of an import: the `/cde-import` body with every value
/// a string. Authenticated by the import's own `X-API-Key` (valid only while the import runs, and for
/// nothing else); `X-Strongroom-Business-Key` names the payment method. A payment method imported before
/// answers with its existing token.
#[utoipa::path(post, path = "/tokens/imports/ingest", tag = "processor_backup", operation_id = "ingest_imported_card",
    request_body(content = super::tokens::CardholderData, content_type = "application/json"),
    params(("X-Strongroom-Business-Key" = String, Header, description = "The payment method id")),
    responses((status = 200, body = Token), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Token>> {
    let presented = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let import = state
        .imports
        .authenticate_ingest(presented.trim())
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let business_key = headers
        .get(BUSINESS_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .ok_or_else(|| {
            ApiError::invalid(
                format!("header.{BUSINESS_KEY_HEADER}"),
                "is required: the payment method id, up to 255 characters",
            )
        })?;
    let token = state.imports.ingest(&import, business_key, body).await?;
    Ok(Json(objects::token(token, state.public_url())?))
}
