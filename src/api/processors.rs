//! Notifications from processors that answer later (Adyen): no API key, since the processor cannot hold
//! one; each item's HMAC signature, checked by the domain with the processor's key, authenticates it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;

/// What Adyen expects in answer to a notification it may stop sending.
const ACCEPTED: &str = "[accepted]";

/// Takes Adyen's standard notification JSON for processor `processor_id`. Captures, cancels and refunds
/// that Adyen accepted reach their end state here (a repeated notification changes nothing). A bad
/// signature on any item refuses the whole batch (401, audited) and changes nothing.
#[utoipa::path(post, path = "/processors/{processor_id}/notifications", tag = "processors",
    params(("processor_id" = Uuid, Path, description = "The processor, as `strongroom processor add` printed it")),
    request_body(content = Object, description = "Adyen's notification: `{\"live\", \"notificationItems\": [{\"NotificationRequestItem\": {…}}]}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`[accepted]`", body = String, content_type = "text/plain"),
        (status = 401, description = "A signature does not verify", body = ErrorBody),
        (status = 404, description = "No such processor, or not one that sends notifications", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "Not ready for it yet; the processor sends it again", body = ErrorBody),
    ))]
pub async fn notifications(
    State(state): State<AppState>,
    Path(processor_id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let id = uuid::Uuid::try_parse(&processor_id)
        .map_err(|_| ApiError::invalid("path.processor_id", "must be a UUID"))?;
    state.payments.processor_notification(id, &body).await?;
    Ok(([(CONTENT_TYPE, "text/plain")], ACCEPTED))
}
