//! The ingest function: `POST /api/v1/ingest/file` and `/api/v1/ingest/url`.
//!
//! Order of writes, and what a failure at each step leaves behind:
//!
//! 1. validate everything (a bad request writes nothing);
//! 2. S3 `PutObject` (file uploads) — fails: 503, nothing written;
//! 3. DynamoDB: the `pending` task (and the idempotency record) in one
//!    conditional write — fails: the object is deleted, 503;
//! 4. SQS: the job — fails: the task and the object are deleted, 503, so no
//!    task waits in `pending` for a job that was never sent. If that clean-up
//!    fails too, an `orphaned task` error is logged with the task id.

mod form;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use morag_shared::adapters::{dynamodb::DynamoStore, s3::S3BlobStore, sqs::SqsJobQueue};
use morag_shared::auth::Authenticator;
use morag_shared::aws::SdkConfig;
use morag_shared::config::IngestConfig;
use morag_shared::domain::{Source, Task, TaskId, TenantId};
use morag_shared::http::{self as api, ApiError};
use morag_shared::net::TargetPolicy;
use morag_shared::ports::{BlobStore, CreateOutcome, IdempotencyRecord, JobQueue, TaskStore};

pub use form::{sanitize_file_name, Submission, SubmissionInput};

/// Room for multipart boundaries and the small text fields around the file.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// Largest JSON body for `/ingest/url`.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// Limits and policies of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub target_policy: TargetPolicy,
}

/// Everything a request needs, built once per cold start.
pub struct Ingest {
    pub tasks: Arc<dyn TaskStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub blobs: Arc<dyn BlobStore>,
    pub auth: Arc<Authenticator>,
    pub limits: Limits,
}

impl Ingest {
    /// Wires the real adapters from configuration.
    pub async fn from_config(cfg: &IngestConfig) -> Self {
        let sdk = morag_shared::aws::load(&cfg.aws).await;
        Self::from_sdk(&sdk, cfg)
    }

    pub fn from_sdk(sdk: &SdkConfig, cfg: &IngestConfig) -> Self {
        let store = Arc::new(DynamoStore::new(morag_shared::aws::dynamodb(sdk), &cfg.api.table));
        Self {
            tasks: store.clone(),
            jobs: Arc::new(SqsJobQueue::new(morag_shared::aws::sqs(sdk), &cfg.processing_queue_url)),
            blobs: Arc::new(S3BlobStore::new(morag_shared::aws::s3(sdk), &cfg.uploads_bucket)),
            auth: Arc::new(Authenticator::new(store, cfg.api.auth_cache_ttl)),
            limits: Limits {
                max_upload_bytes: cfg.max_upload_bytes,
                target_policy: cfg.target_policy,
            },
        }
    }
}

/// The function's routes; `lambda_http::run` serves it on Lambda and the
/// local runner on a socket.
pub fn router(state: Arc<Ingest>) -> Router {
    Router::new()
        .route("/api/v1/ingest/file", post(ingest_file))
        .route("/api/v1/ingest/url", post(ingest_url))
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .layer(middleware::from_fn(api::request_span))
        .with_state(state)
}

async fn ingest_file(State(st): State<Arc<Ingest>>, request: Request) -> Result<Response, ApiError> {
    let tenant = api::authenticate(&st.auth, request.headers()).await?;
    let idem_key = idempotency_key(request.headers())?;
    require_content_type(request.headers(), "multipart/form-data")?;
    let base = base_url_from(request.headers().clone());
    let limit = st.limits.max_upload_bytes + MULTIPART_OVERHEAD;
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, limit, st.limits.max_upload_bytes).await?;
    let request = Request::from_parts(parts, Body::from(bytes));
    let submission = form::parse_multipart(request, &st.limits).await?;
    submit(&st, tenant, submission, idem_key, &base).await
}

async fn ingest_url(State(st): State<Arc<Ingest>>, request: Request) -> Result<Response, ApiError> {
    let tenant = api::authenticate(&st.auth, request.headers()).await?;
    let idem_key = idempotency_key(request.headers())?;
    require_content_type(request.headers(), "application/json")?;
    let base = base_url_from(request.headers().clone());
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, MAX_JSON_BODY, MAX_JSON_BODY).await?;
    let submission = form::parse_json(&bytes, &st.limits)?;
    submit(&st, tenant, submission, idem_key, &base).await
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

fn require_content_type(headers: &HeaderMap, wanted: &str) -> Result<(), ApiError> {
    let actual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if actual.as_deref() == Some(wanted) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be {wanted}"),
        ))
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// Reads the body up to `limit` bytes; `shown_limit` is the limit named in the
/// error (the file limit, not the file limit plus multipart overhead).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize, shown_limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(shown_limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(shown_limit)),
        Err(e) => Err(ApiError::bad_request(
            "invalid_body",
            format!("could not read the request body: {e}"),
        )),
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

fn fingerprint(tenant: &TenantId, s: &Submission) -> String {
    let input = match &s.input {
        SubmissionInput::File {
            name,
            content_type,
            bytes,
        } => json!({
            "file": {"name": name, "content_type": content_type, "sha256": hex::encode(Sha256::digest(bytes))}
        }),
        SubmissionInput::Url(url) => json!({"url": url.as_str()}),
    };
    let canonical = json!({
        "tenant": tenant.as_str(),
        "source_type": s.source_type.as_str(),
        "input": input,
        "webhook_url": s.webhook_url.as_ref().map(Url::as_str),
        "webhook_events": s.webhook_events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "metadata": Value::Object(s.metadata.clone()),
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn accepted(task_id: TaskId, created_at: DateTime<Utc>, base: &str, replayed: bool) -> Response {
    let status_path = format!("/api/v1/status/{task_id}");
    let status_url = format!("{base}{status_path}");
    let body = json!({
        "task_id": task_id.to_string(),
        "status": "pending",
        "status_url": status_url,
        "created_at": created_at,
    });
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

fn replay(existing: &IdempotencyRecord, fingerprint: &str, base: &str) -> Result<Response, ApiError> {
    if existing.fingerprint != fingerprint {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        ));
    }
    tracing::Span::current().record("task_id", existing.task_id.to_string());
    tracing::info!("idempotent replay");
    Ok(accepted(existing.task_id, existing.created_at, base, true))
}

/// Stores, records and enqueues a validated submission.
pub async fn submit(
    st: &Ingest,
    tenant: TenantId,
    submission: Submission,
    idem_key: Option<String>,
    base: &str,
) -> Result<Response, ApiError> {
    let now = morag_shared::time::now();
    let fingerprint = fingerprint(&tenant, &submission);
    let task_id = TaskId::new();
    let idem = idem_key.map(|key| IdempotencyRecord {
        tenant: tenant.clone(),
        key_hash: hex::encode(Sha256::digest(key.as_bytes())),
        fingerprint: fingerprint.clone(),
        task_id,
        created_at: now,
        expires_at: now + Duration::hours(IDEMPOTENCY_WINDOW_HOURS),
    });
    if let Some(idem) = &idem {
        if let Some(existing) = st.tasks.get_idempotency(&tenant, &idem.key_hash).await? {
            return replay(&existing, &fingerprint, base);
        }
    }
    tracing::Span::current().record("task_id", task_id.to_string());

    let (source, object_key) = match submission.input {
        SubmissionInput::File {
            name,
            content_type,
            bytes,
        } => {
            let key = format!("uploads/{tenant}/{task_id}/{name}");
            let size = bytes.len();
            st.blobs.put(&key, bytes, &content_type).await?;
            tracing::info!(bytes = size, "upload stored");
            (
                Source::Object {
                    bucket: st.blobs.bucket().to_owned(),
                    key: key.clone(),
                },
                Some(key),
            )
        }
        SubmissionInput::Url(url) => (Source::Url { url: url.to_string() }, None),
    };
    let delete_object = || async {
        if let Some(key) = &object_key {
            if let Err(e) = st.blobs.delete(key).await {
                tracing::error!(error = %e, "could not delete the upload of a request that failed");
            }
        }
    };

    let mut task = Task::pending(
        task_id,
        tenant,
        submission.source_type,
        source,
        submission.webhook_url.map(String::from),
        submission.metadata,
        now,
    );
    task.webhook_events = submission.webhook_events;
    match st.tasks.create_task(&task, idem.as_ref()).await {
        Ok(CreateOutcome::Created) => {}
        Ok(CreateOutcome::IdempotencyHit(existing)) => {
            // a concurrent request with the same key won the race
            delete_object().await;
            return replay(&existing, &fingerprint, base);
        }
        Err(e) => {
            delete_object().await;
            return Err(e.into());
        }
    }

    match st.jobs.enqueue(&task.job()).await {
        Ok(message_id) => {
            tracing::info!(%message_id, source_type = %task.source_type, "task accepted");
            Ok(accepted(task_id, now, base, false))
        }
        Err(e) => {
            if let Err(discard) = st.tasks.discard_task(&task, idem.as_ref()).await {
                tracing::error!(error = %discard, "orphaned task: job not enqueued and task not removed");
            }
            delete_object().await;
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests;
