//! `GET /account`: the account the presented key belongs to.

use axum::extract::State;
use axum::Json;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::domain::accounts;
use crate::model::account::Account;

/// Shows the account of the API key in use.
#[utoipa::path(get, path = "/account", tag = "account", security(("APIKeyAuth" = [])), responses(
    (status = 200, body = Account),
    (status = 401, body = ErrorBody),
))]
pub async fn get_account(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Account>> {
    let account = accounts::describe(&state.store, principal.account_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(account))
}
