//! The HTTP API: routing, authentication, idempotency, the error model, pagination and the OpenAPI
//! document, which is generated from the same route list that the router is built from.

pub mod account;
pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod forward;
pub mod health;
pub mod idempotency;
pub mod imports;
pub mod openapi;
pub mod pagination;
pub mod payments;
pub mod processors;
pub mod rate_limit;
pub mod sessions;
pub mod tokens;
pub mod web;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, options};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::store::DynStore;
use error::ApiError;

/// What every handler can reach: one `Arc`, because axum clones the state for every request at every
/// layer that extracts it (the ten shared parts cloned and dropped one by one were 2–3% of the server's
/// CPU while tokenizing).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The shared parts of `AppState`.
pub struct Services {
    pub store: DynStore,
    pub config: Arc<Config>,
    pub tokens: Arc<crate::domain::tokens::Tokens>,
    pub auth_cache: Arc<auth::AuthCache>,
    pub payments: Arc<crate::domain::payments::Payments>,
    pub imports: Arc<crate::domain::imports::Imports>,
    pub webhooks: Arc<crate::domain::webhooks::Webhooks>,
    pub forward: Arc<crate::domain::forward::Forwarder>,
    pub sessions: Arc<crate::domain::sessions::Sessions>,
    /// The per-key request rate, when one is configured.
    pub rate_limit: Option<Arc<rate_limit::RateLimiter>>,
}

impl Services {
    /// The base URL links in responses start with (set at start from the bound address if not given).
    pub fn public_url(&self) -> &str {
        self.config.public_url.as_deref().unwrap_or("")
    }
}

pub const VERSION_HEADER: HeaderName = HeaderName::from_static("x-hellgate-version");
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(title = "Strongroom: Commerce API", version = "2.0", description = "A self-hosted card vault and payments API speaking the Commerce API v2."),
    modifiers(&ApiKeyAuth),
    components(schemas(error::ErrorBody, error::FieldError, pagination::Pagination)),
)]
struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "APIKeyAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(auth::API_KEY_HEADER))),
        );
    }
}

/// The routes and their OpenAPI description, built from one list.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let protected = OpenApiRouter::new()
        .routes(routes!(account::get_account))
        .routes(routes!(audit::list_audit_events))
        .routes(routes!(tokens::cde_import))
        .routes(routes!(sessions::create_session))
        .routes(routes!(sessions::refresh_session))
        .routes(routes!(tokens::list_tokens))
        .routes(routes!(tokens::get_token, tokens::delete_token))
        .routes(routes!(tokens::consume_token))
        .routes(routes!(tokens::card_art))
        .routes(routes!(imports::create_import, imports::list_imports))
        .routes(routes!(imports::get_import))
        .routes(routes!(imports::abort_import))
        .routes(routes!(imports::list_failures))
        .routes(routes!(payments::list_payments))
        .routes(routes!(payments::one_off))
        .routes(routes!(payments::unscheduled))
        .routes(routes!(payments::recurring))
        .routes(routes!(payments::unscheduled_subsequent))
        .routes(routes!(payments::recurring_subsequent))
        .routes(routes!(payments::get_payment))
        .routes(routes!(payments::capture))
        .routes(routes!(payments::void))
        .routes(routes!(payments::refund, payments::list_refunds))
        .routes(routes!(payments::get_refund))
        .routes(routes!(payments::list_transactions))
        .routes(routes!(forward::forward))
        .route_layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(imports::ingest))
        .routes(routes!(processors::notifications))
        .routes(routes!(sessions::get_session))
        .routes(routes!(sessions::complete_action))
        .merge(protected)
}

/// The OpenAPI 3.1 document of what this build serves.
pub fn openapi_document(state: &AppState) -> serde_json::Value {
    openapi::commerce_shape(&routes(state).into_openapi(), state.public_url())
}

/// The complete application: routes, fallbacks and the layers every request passes.
pub fn app(state: AppState) -> Router {
    let (router, openapi) = routes(&state).split_for_parts();
    let openapi = Arc::new(openapi::commerce_shape(&openapi, state.public_url()));
    router
        .merge(web::router())
        .route("/sessions/{id}", options(sessions::preflight))
        .route(
            "/sessions/{id}/complete-action",
            options(sessions::preflight),
        )
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(from_fn(request_context))
        .with_state(state)
}

/// Gives each request an id (the client's, if it sent a sane one), a tracing span keyed on the matched
/// route and that id, and the headers every response carries. Bodies are never logged.
async fn request_context(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::new_id().to_string());
    let metrics = crate::metrics::metrics();
    // Interned: the label costs no allocation after a route's first request.
    let route_label = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| metrics.route(p.as_str()));
    let method_label = method_label(req.method());
    let route = if route_label == "unmatched" {
        ""
    } else {
        route_label
    };
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %request_id,
        account = tracing::field::Empty,
    );
    let started = Instant::now();
    span.in_scope(|| tracing::trace!(content_length = ?req.headers().get("content-length"), "request started"));
    let origin = crate::store::AuditOrigin {
        remote_addr: req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip().to_string()),
        request_id: Some(request_id.clone()),
    };
    let mut response = origin.scope(next.run(req).instrument(span.clone())).await;
    let took = started.elapsed();
    metrics.observe_request(route_label, method_label, response.status().as_u16(), took);
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_us = took.as_micros() as u64,
            "request"
        )
    });
    let headers = response.headers_mut();
    headers.insert(VERSION_HEADER, HeaderValue::from_static("2.0"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The method as a label from a fixed set (any other method is `other`).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
