//! `POST /cde-import` and the token endpoints around it.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, PathId, QueryMap};
use super::pagination::{date_range, JsonPage, PageParams, Pagination};
use super::AppState;
use crate::domain::objects;
use crate::domain::tokens::{validate_card, NumberForm, Origin};
use crate::model::card::Scheme;
use crate::model::token::{NetworkTokenStatus, Token};
use crate::store::{Feature, TokenQuery, TokenRecord};

/// The request body of `POST /cde-import` (documentation; the handler checks every field itself so that
/// all faults are reported together).
#[derive(ToSchema)]
#[schema(as = CardholderData)]
#[allow(dead_code)]
pub struct CardholderData {
    /// The name of the cardholder, 1 to 200 characters.
    cardholder_name: Option<String>,
    /// 1 to 12.
    #[schema(minimum = 1, maximum = 12)]
    expiry_month: i32,
    /// 2000 or later; the card must not have expired.
    #[schema(minimum = 2000)]
    expiry_year: i32,
    /// 12 to 19 digits, Luhn-valid, without separators.
    account_number: String,
    /// 3 digits, 4 for American Express. Kept in memory only, for 15 minutes by default.
    #[schema(min_length = 3, max_length = 4)]
    security_code: Option<String>,
    /// Makes an ephemeral token: it is deleted (card data, security code, then `token.deleted`) this many
    /// seconds after it is made, and answers 404 from that moment. 1 to 2592000 (30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    expiration_time: Option<i64>,
}

pub fn actor(principal: &Principal) -> String {
    format!("key:{}", principal.key_id)
}

/// Creates a token from full card data. Gated: the account needs the `cde_import` feature.
#[utoipa::path(post, path = "/cde-import", tag = "tokens_create", operation_id = "import_cardholder_data",
    security(("APIKeyAuth" = [])),
    request_body(content = CardholderData, content_type = "application/json"),
    responses(
        (status = 200, description = "Success response", body = Token),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn cde_import(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Token>> {
    principal.require(Feature::CdeImport)?;
    let valid = validate_card(&body, chrono::Utc::now(), NumberForm::Strict)
        .map_err(ApiError::validation)?;
    let token = state
        .tokens
        .create(
            principal.account_id,
            &actor(&principal),
            valid,
            Origin::default(),
        )
        .await?;
    Ok(Json(objects::token(token, state.public_url())?))
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub data: Vec<Token>,
    pub pagination: Pagination,
}

/// Lists the account's tokens, newest first unless `sort=created_at+asc`.
#[utoipa::path(get, path = "/tokens", tag = "tokens_management", security(("APIKeyAuth" = [])),
    params(
        PageParams,
        ("from" = Option<String>, Query, description = "Created on or after this UTC date (YYYY-MM-DD)"),
        ("to" = Option<String>, Query, description = "Created on or before this UTC date (YYYY-MM-DD)"),
        ("sort" = Option<String>, Query, description = "`created_at+desc` (default) or `created_at+asc`"),
        ("network_token_status" = Option<String>, Query, description = "Comma list of network token statuses, e.g. `active,pending`. Every token of this server is `not_available` (no scheme connection), so a list without it matches none."),
    ),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    QueryMap(query): QueryMap,
) -> ApiResult<JsonPage> {
    let mut errors = Vec::new();
    let page = PageParams::from_query(&query, &mut errors);
    let (from, until) = date_range(&query, &mut errors);
    let oldest_first = match query.get("sort").map(|s| s.replace('+', " ")) {
        None => false,
        Some(s) if s == "created_at desc" => false,
        Some(s) if s == "created_at asc" => true,
        Some(_) => {
            errors.push(crate::domain::FieldError::new(
                "query.sort",
                "must be `created_at+asc` or `created_at+desc`",
            ));
            false
        }
    };
    let network_token_statuses = network_token_statuses(&query, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    // Every token is `not_available`: a filter without it matches none, one with it matches all.
    if network_token_statuses.is_some_and(|s| !s.contains(&NetworkTokenStatus::NotAvailable)) {
        return Ok(JsonPage::new("[]".to_owned(), page, 0));
    }
    let q = TokenQuery {
        account_id: principal.account_id,
        from,
        until,
        oldest_first,
        limit: i64::from(page.limit),
        offset: page.offset(),
    };
    let (rows, total) = state.tokens.list(&q, state.public_url()).await?;
    Ok(JsonPage::new(rows, page, total))
}

/// `network_token_status`, a comma list of the spec's values; `None` when not given.
fn network_token_statuses(
    query: &std::collections::HashMap<String, String>,
    errors: &mut Vec<crate::domain::FieldError>,
) -> Option<Vec<NetworkTokenStatus>> {
    let raw = query.get("network_token_status")?;
    let parsed: Result<Vec<NetworkTokenStatus>, _> =
        raw.split(',').map(|s| s.trim().parse()).collect();
    match parsed {
        Ok(statuses) => Some(statuses),
        Err(_) => {
            let known: Vec<&str> = NetworkTokenStatus::ALL.iter().map(|s| s.as_str()).collect();
            errors.push(crate::domain::FieldError::new(
                "query.network_token_status",
                format!(
                    "must be a comma-separated list of network token statuses ({})",
                    known.join(", ")
                ),
            ));
            None
        }
    }
}

async fn own_token(state: &AppState, principal: &Principal, id: Uuid) -> ApiResult<TokenRecord> {
    state
        .tokens
        .get(principal.account_id, id)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Shows one token.
#[utoipa::path(get, path = "/tokens/{id}", tag = "tokens_management", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The token id")),
    responses((status = 200, body = Token), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_token(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<Token>> {
    let token = own_token(&state, &principal, id).await?;
    Ok(Json(objects::token(token, state.public_url())?))
}

/// Deletes a token: its card data and security code are destroyed, and the id is 404 from then on.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens_management", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The token id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_token(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    if state
        .tokens
        .delete(principal.account_id, &actor(&principal), id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Drops the token's cached security code, if it has one.
#[utoipa::path(post, path = "/tokens/{id}/consume", tag = "tokens_management", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The token id")),
    responses((status = 204, description = "The security code is gone"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn consume_token(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    if state
        .tokens
        .consume(principal.account_id, &actor(&principal), id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// An SVG picture of the card for the token's scheme, showing only the last four digits.
#[utoipa::path(get, path = "/tokens/card-art/{id}", tag = "tokens_management", security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The token id")),
    responses((status = 200, description = "image/svg+xml", content_type = "image/svg+xml", body = String), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn card_art(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let token = own_token(&state, &principal, id).await?;
    let scheme = Scheme::parse(&token.scheme);
    let svg = card_svg(scheme, &token.account_number_last_four);
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        svg,
    )
        .into_response())
}

fn card_svg(scheme: Scheme, last_four: &str) -> String {
    let colour = match scheme {
        Scheme::Visa => "#1a1f71",
        Scheme::Mastercard => "#eb001b",
        Scheme::AmericanExpress => "#2e77bb",
        Scheme::Discover => "#ff6000",
        Scheme::DinersClub => "#0079be",
        Scheme::Jcb => "#0e4c96",
        Scheme::UnionPay => "#d10429",
        Scheme::Unknown => "#555555",
    };
    // The last four are digits by construction; nothing else from the token enters the picture.
    let digits: String = last_four.chars().filter(char::is_ascii_digit).collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="340" height="214" viewBox="0 0 340 214"><rect width="340" height="214" rx="14" fill="{colour}"/><text x="24" y="46" font-family="sans-serif" font-size="22" font-weight="bold" fill="#ffffff">{name}</text><text x="24" y="180" font-family="monospace" font-size="22" fill="#ffffff">•••• {digits}</text></svg>"##,
        name = scheme.as_str(),
    )
}
