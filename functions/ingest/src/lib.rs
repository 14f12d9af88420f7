//! The ingest function: `POST /api/v1/ingest/file`, `/api/v1/ingest/url`,
//! `/api/v1/ingest/upload` and `POST /api/v1/uploads` (a presigned PUT).
//! This file is the HTTP side (authentication, headers, body limits, the 202
//! answer); `form` turns a body into a validated `Submission` (nothing
//! written), `submit` stores it over the ports, `wiring` builds the real
//! adapters.

mod form;
pub mod grant;
mod limits;
pub mod schema;
mod state;
pub mod submit;
pub mod wiring;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use utoipa::OpenApi;

use morag_shared::domain::{TaskId, TaskStatus, TenantId};
use morag_shared::http::body::{self, read_body, require_content_type};
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{self as api, ApiError, Authenticated};

use form::JsonSource;
pub use form::{sanitize_file_name, Submission, SubmissionInput, UploadRequest};
use limits::file_too_large;
pub use limits::{
    Limits, MAX_DIRECT_BODY, MAX_DIRECT_FILE, MAX_IDEMPOTENCY_KEY, MAX_JSON_BODY, MAX_METADATA_BYTES,
    MULTIPART_OVERHEAD,
};
pub use state::Ingest;
pub use submit::{submit, SubmitError, Submitted, IDEMPOTENCY_WINDOW_HOURS};

/// The ingest function's part of the OpenAPI document (`docs/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(ingest_file, ingest_url, ingest_upload, create_upload),
    // referenced by `AcceptedResponse`, which does not collect it
    components(schemas(schema::Accepted))
)]
pub struct ApiDoc;

/// The function's routes; `lambda_http::run` serves it on Lambda and the
/// local runner on a socket.
pub fn router(state: Arc<Ingest>) -> Router {
    Router::new()
        // bodies are bounded by `read_body` against the deployment's limits;
        // axum's own default (2 MiB for multipart) would refuse less
        .route(
            "/api/v1/ingest/file",
            post(ingest_file).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/ingest/url", post(ingest_url))
        .route("/api/v1/ingest/upload", post(ingest_upload))
        .route("/api/v1/uploads", post(create_upload))
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .layer(middleware::from_fn(api::request_span))
        .with_state(state)
}

/// A document, uploaded in the request (up to the direct-upload limit).
#[utoipa::path(
    post,
    path = "/api/v1/ingest/file",
    operation_id = "ingest_file",
    tag = "ingest",
    params(schema::IdempotencyKeyHeader),
    request_body(content = schema::FileSubmission, content_type = "multipart/form-data"),
    responses(
        schema::AcceptedResponse,
        (status = 400, description = "`invalid_idempotency_key` or `invalid_multipart`", body = ErrorBody),
        (status = 409, description = "`request_in_progress`: a request with the same `Idempotency-Key` is still being handled (retry after `Retry-After`)", body = ErrorBody),
        (status = 413, description = "`file_too_large`: over the direct-upload limit (use `/api/v1/uploads`)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not multipart/form-data", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or not allowed (`missing_field`, `invalid_source_type`, `invalid_webhook_url`, `invalid_webhook_events`, `invalid_metadata`, `invalid_timeout`, `unknown_field`, ...) or `idempotency_key_reused` with other content", body = ErrorBody),
    )
)]
async fn ingest_file(
    State(st): State<Arc<Ingest>>,
    Authenticated(tenant): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    let idem_key = idempotency_key(request.headers())?;
    require_content_type(request.headers(), "multipart/form-data")?;
    let base = base_url_from(request.headers().clone());
    let limit = st.limits.max_upload_bytes + MULTIPART_OVERHEAD;
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, limit)
        .await
        .map_err(|e| too_large_file(e, st.limits.max_upload_bytes))?;
    let request = Request::from_parts(parts, Body::from(bytes));
    let submission = form::parse_multipart(request, &st.limits).await?;
    render(submit(&st, tenant, submission, idem_key).await, &base)
}

/// A URL to fetch.
#[utoipa::path(
    post,
    path = "/api/v1/ingest/url",
    operation_id = "ingest_url",
    tag = "ingest",
    params(schema::IdempotencyKeyHeader),
    request_body = schema::UrlSubmission,
    responses(
        schema::AcceptedResponse,
        (status = 400, description = "`invalid_idempotency_key` or `invalid_json`", body = ErrorBody),
        (status = 409, description = "`request_in_progress`: a request with the same `Idempotency-Key` is still being handled (retry after `Retry-After`)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or not allowed (`missing_field`, `invalid_source_type`, `invalid_url`, `invalid_webhook_url`, `invalid_webhook_events`, `invalid_metadata`, `invalid_timeout`, `unknown_field`, ...) or `idempotency_key_reused` with other content", body = ErrorBody),
    )
)]
async fn ingest_url(
    State(st): State<Arc<Ingest>>,
    Authenticated(tenant): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    submit_json(&st, tenant, request, JsonSource::Url).await
}

/// A file already uploaded to its presigned URL.
#[utoipa::path(
    post,
    path = "/api/v1/ingest/upload",
    operation_id = "ingest_upload",
    tag = "ingest",
    params(schema::IdempotencyKeyHeader),
    request_body = schema::UploadSubmission,
    responses(
        schema::AcceptedResponse,
        (status = 400, description = "`invalid_idempotency_key` or `invalid_json`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such upload of the caller's tenant", body = ErrorBody),
        (status = 409, description = "`upload_already_used` (by another task), `upload_incomplete` (not PUT yet) or `request_in_progress`", body = ErrorBody),
        (status = 410, description = "`upload_expired`: its URL expired before the file landed", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or not allowed (`missing_field`, `invalid_source_type`, `invalid_upload_id`, `invalid_webhook_url`, `invalid_webhook_events`, `invalid_metadata`, `invalid_timeout`, `unknown_field`, ...) or `idempotency_key_reused` with other content", body = ErrorBody)
    )
)]
async fn ingest_upload(
    State(st): State<Arc<Ingest>>,
    Authenticated(tenant): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    submit_json(&st, tenant, request, JsonSource::Upload).await
}

/// `/ingest/url` and `/ingest/upload`: a JSON submission, idempotent with a key.
async fn submit_json(
    st: &Ingest,
    tenant: TenantId,
    request: Request,
    source: JsonSource,
) -> Result<Response, ApiError> {
    let idem_key = idempotency_key(request.headers())?;
    let base = base_url_from(request.headers().clone());
    let bytes = json_body(request).await?;
    let submission = form::parse_json(&bytes, &st.limits, source)?;
    render(submit(st, tenant, submission, idem_key).await, &base)
}

/// A JSON body: `application/json`, at most [`MAX_JSON_BODY`] bytes.
async fn json_body(request: Request) -> Result<Bytes, ApiError> {
    body::json_body(request, MAX_JSON_BODY).await
}

/// `201 {upload_id, method, url, headers, expires_at}`.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    operation_id = "create_upload",
    tag = "ingest",
    request_body = schema::UploadRequestBody,
    responses(
        (status = 201, description = "A presigned PUT for the file, valid an hour", body = schema::UploadGrant),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`missing_field`, `invalid_filename`, `invalid_content_type`, `invalid_size_bytes`, `invalid_sha256` or `unknown_field`", body = ErrorBody),
    )
)]
async fn create_upload(
    State(st): State<Arc<Ingest>>,
    Authenticated(tenant): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    let req = form::parse_upload_request(&json_body(request).await?, &st.limits)?;
    let granted = grant::grant(&st, tenant, req, morag_shared::time::now()).await?;
    let body = schema::UploadGrant {
        upload_id: granted.upload.upload_id,
        method: "PUT".to_owned(),
        url: granted.put.url,
        headers: granted.put.headers.into_iter().collect(),
        expires_at: granted.upload.expires_at,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// A 413 from reading a multipart body, told in terms of its file (the file
/// limit, not the file limit plus multipart overhead) and the upload route.
fn too_large_file(e: ApiError, max_file: usize) -> ApiError {
    if e.status == StatusCode::PAYLOAD_TOO_LARGE {
        file_too_large(max_file)
    } else {
        e
    }
}

/// `scheme://host` for absolute status URLs, when the request says where it
/// was sent (API Gateway and local runs both do); otherwise relative URLs.
fn base_url_from(headers: HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_ok {
        return String::new();
    }
    let proto = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        Some("http") => "http",
        _ => "http",
    };
    format!("{proto}://{host}")
}

fn accepted(task_id: TaskId, created_at: DateTime<Utc>, base: &str, replayed: bool) -> Response {
    let status_path = format!("/api/v1/status/{task_id}");
    let status_url = format!("{base}{status_path}");
    let body = schema::Accepted {
        task_id,
        status: TaskStatus::Pending,
        status_url: status_url.clone(),
        created_at,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn render(result: Result<Submitted, SubmitError>, base: &str) -> Result<Response, ApiError> {
    match result {
        Ok(done) => Ok(accepted(done.task_id, done.created_at, base, done.replayed)),
        Err(SubmitError::KeyReused) => Err(ApiError::unprocessable(
            "idempotency_key_reused",
            SubmitError::KeyReused.to_string(),
        )),
        Err(e @ SubmitError::UploadNotFound) => Err(ApiError::not_found(e.to_string())),
        Err(e @ SubmitError::UploadAlreadyUsed) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "upload_already_used",
            e.to_string(),
        )),
        Err(e @ SubmitError::UploadExpired) => Err(ApiError::new(StatusCode::GONE, "upload_expired", e.to_string())),
        Err(e @ SubmitError::UploadIncomplete) => {
            Err(ApiError::new(StatusCode::CONFLICT, "upload_incomplete", e.to_string()))
        }
        Err(e @ SubmitError::UploadSizeMismatch { .. }) => {
            Err(ApiError::unprocessable("upload_size_mismatch", e.to_string()))
        }
        Err(e @ SubmitError::UploadChecksumMismatch) => {
            Err(ApiError::unprocessable("upload_checksum_mismatch", e.to_string()))
        }
        Err(e @ SubmitError::InProgress) => {
            Err(ApiError::new(StatusCode::CONFLICT, "request_in_progress", e.to_string()).retry_after(1))
        }
        Err(SubmitError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
