//! Liveness and readiness, without authentication.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` (process up) or `ready` (database reachable).
    pub status: &'static str,
    /// Log lines dropped since start because they could not be written (stderr on a full disk);
    /// only in `/ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_lines_dropped: Option<u64>,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = HealthStatus)))]
pub async fn health() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok",
        log_lines_dropped: None,
    })
}

/// The process is up and its database answers.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, body = HealthStatus),
    (status = 503, description = "The database does not answer", body = ErrorBody),
))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<HealthStatus>> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    Ok(Json(HealthStatus {
        status: "ready",
        log_lines_dropped: Some(crate::telemetry::dropped_log_lines()),
    }))
}
