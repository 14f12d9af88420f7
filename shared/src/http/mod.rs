//! HTTP plumbing shared by the API functions: the JSON error shape
//! ([`ApiError`]), the request span, 404/405 fallbacks, authentication
//! (`auth`), request bodies (`body`), sealed cursors (`cursor`), typed
//! query strings (`query`) and what the OpenAPI document says of them
//! (`schema`).

pub mod auth;
pub mod body;
pub mod cursor;
pub mod error;
pub mod query;
pub mod schema;

pub use auth::{Authenticated, Authenticates, Authenticator};
pub use error::ApiError;
pub use query::Params;

use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tracing::{field, Instrument};

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Known routes with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// One span per request carrying method, path, tenant and task id (filled in
/// by handlers), and one log line when it finishes.
pub async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        tenant = field::Empty,
        task_id = field::Empty,
        delivery_id = field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    });
    response
}
