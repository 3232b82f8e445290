//! `GET /account`: the account the presented key belongs to.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::store::Ts;

#[derive(Serialize, ToSchema)]
pub struct AccountResponse {
    pub id: Uuid,
    pub name: String,
    /// Gated features enabled for the account, such as `cde_import`.
    pub features: Vec<&'static str>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Ts,
}

/// Shows the account of the API key in use.
#[utoipa::path(get, path = "/account", tag = "account", security(("APIKeyAuth" = [])), responses(
    (status = 200, body = AccountResponse),
    (status = 401, body = ErrorBody),
))]
pub async fn get_account(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<AccountResponse>> {
    let account = state
        .store
        .get_account(principal.account_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(AccountResponse {
        id: account.id,
        name: account.name,
        features: account.features.iter().map(|f| f.as_str()).collect(),
        created_at: account.created_at,
    }))
}
