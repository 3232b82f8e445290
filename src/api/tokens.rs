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
use super::pagination::{date_range, PageParams, Paginated, Pagination};
use super::AppState;
use crate::domain::tokens::{validate_card, NumberForm, Origin, TokenError};
use crate::model::card::Scheme;
use crate::store::{Feature, TokenQuery, TokenRecord, Ts};

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Store(e) => e.into(),
            TokenError::Vault(e) => ApiError::internal(&e),
        }
    }
}

/// A Commerce token: the card's non-secret facts. The card number itself never leaves the vault.
#[derive(Serialize, ToSchema)]
#[schema(as = HellgateToken)]
pub struct TokenResponse {
    pub id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Ts,
    pub expiry_month: i32,
    pub expiry_year: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cardholder_name: Option<String>,
    /// First 8 digits for numbers of 16 digits or more, else first 6.
    pub issuer_identification_number: String,
    /// First 6, `X` for each hidden digit, last 4.
    pub masked_account_number: String,
    pub account_number_last_four: String,
    pub account_number_length: i32,
    #[schema(value_type = Scheme)]
    pub scheme: String,
    /// `active` or `invalid`.
    pub status: String,
    /// Always `not_available`: this server has no scheme connection for network tokens.
    pub network_token_status: &'static str,
    pub card_art_url: String,
    /// Always `none`.
    pub identity_and_verification: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Ts>,
}

impl TokenResponse {
    pub fn new(token: TokenRecord, public_url: &str) -> Self {
        Self {
            card_art_url: format!("{public_url}/tokens/card-art/{}", token.id),
            id: token.id,
            created_at: token.created_at,
            expiry_month: token.expiry_month,
            expiry_year: token.expiry_year,
            cardholder_name: token.cardholder_name,
            issuer_identification_number: token.issuer_identification_number,
            masked_account_number: token.masked_account_number,
            account_number_last_four: token.account_number_last_four,
            account_number_length: token.account_number_length,
            scheme: token.scheme,
            status: token.status,
            network_token_status: "not_available",
            identity_and_verification: "none",
            business_key: token.business_key,
            import_provider: token.import_provider,
            expires_at: token.expires_at,
        }
    }
}

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
}

pub fn actor(principal: &Principal) -> String {
    format!("key:{}", principal.key_id)
}

/// Creates a token from full card data. Gated: the account needs the `cde_import` feature.
#[utoipa::path(post, path = "/cde-import", tag = "tokens_create", operation_id = "import_cardholder_data",
    security(("APIKeyAuth" = [])),
    request_body(content = CardholderData, content_type = "application/json"),
    responses(
        (status = 200, description = "Success response", body = TokenResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn cde_import(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<TokenResponse>> {
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
    Ok(Json(TokenResponse::new(token, state.public_url())))
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub data: Vec<TokenResponse>,
    pub pagination: Pagination,
}

/// Lists the account's tokens, newest first unless `sort=created_at+asc`.
#[utoipa::path(get, path = "/tokens", tag = "tokens_management", security(("APIKeyAuth" = [])),
    params(
        PageParams,
        ("from" = Option<String>, Query, description = "Created on or after this UTC date (YYYY-MM-DD)"),
        ("to" = Option<String>, Query, description = "Created on or before this UTC date (YYYY-MM-DD)"),
        ("sort" = Option<String>, Query, description = "`created_at+desc` (default) or `created_at+asc`"),
    ),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<Paginated<TokenResponse>>> {
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
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let q = TokenQuery {
        account_id: principal.account_id,
        from,
        until,
        oldest_first,
        limit: i64::from(page.limit),
        offset: page.offset(),
    };
    let (rows, total) = state.tokens.list(&q).await?;
    let data = rows
        .into_iter()
        .map(|t| TokenResponse::new(t, state.public_url()))
        .collect();
    Ok(Json(Paginated::new(data, page, total)))
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
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_token(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<TokenResponse>> {
    let token = own_token(&state, &principal, id).await?;
    Ok(Json(TokenResponse::new(token, state.public_url())))
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
