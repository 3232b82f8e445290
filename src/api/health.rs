//! Liveness and readiness, without authentication.

use std::io::Write;
use std::path::Path;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::store::StoreError;

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

/// Bytes the readiness probe writes in the data directory: a disk with less room than this cannot take
/// a SQLite transaction either.
const SPACE_PROBE_BYTES: usize = 64 * 1024;

/// Writes (then removes) a small file in `dir`: the portable, dependency-free way to learn that its
/// filesystem has no space left (`std` has no statvfs) — the error says why.
fn probe_space(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".ready-probe-{}", crate::new_id()));
    let written = std::fs::File::create(&probe).and_then(|mut file| {
        file.write_all(&[0u8; SPACE_PROBE_BYTES])
            .and_then(|()| file.flush())
    });
    let _ = std::fs::remove_file(&probe);
    written
}

/// How long `/ready` waits for each dependency.
const DEPENDENCY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the key provider answers (today the master key file). A provider added later (an HSM)
/// answers here too.
async fn key_provider(state: &AppState) -> Result<(), String> {
    match tokio::time::timeout(DEPENDENCY_DEADLINE, state.tokens.vault.check_key_provider()).await {
        Ok(answer) => answer,
        Err(_) => Err("no answer in time".into()),
    }
}

/// The process is up, its database answers, Redis (when configured) and the key provider answer and (SQLite) its data directory has room to write.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, body = HealthStatus),
    (status = 503, description = "A dependency is down, named in the message: the database, Redis (when configured), the key provider, or the data directory has no space left", body = ErrorBody),
))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<HealthStatus>> {
    if let Err(err) = tokio::time::timeout(DEPENDENCY_DEADLINE, state.store.ping())
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer in time".into())))
    {
        return Err(ApiError::unavailable_because(
            "The database does not answer",
            &err,
        ));
    }
    if let Err(err) = state.tokens.cvc.ping().await {
        return Err(ApiError::unavailable_because("Redis does not answer", &err));
    }
    if let Err(err) = key_provider(&state).await {
        return Err(ApiError::unavailable_because(
            "The key provider does not answer",
            &err,
        ));
    }
    if let Some(dir) = state
        .config
        .sqlite_file()
        .and_then(|file| file.parent().map(Path::to_owned))
    {
        let probed = tokio::task::spawn_blocking(move || probe_space(&dir)).await;
        match probed {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                // ENOSPC on Linux and the BSDs.
                let message = if err.raw_os_error() == Some(28) {
                    "No space left on the data directory's disk"
                } else {
                    "The data directory cannot be written"
                };
                return Err(ApiError::unavailable_because(message, &err));
            }
            Err(err) => return Err(ApiError::internal(&err)),
        }
    }
    Ok(Json(HealthStatus {
        status: "ready",
        log_lines_dropped: Some(crate::telemetry::dropped_log_lines()),
    }))
}
