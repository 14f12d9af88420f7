//! The status function: reads, plus two kinds of writes (redelivery of a
//! webhook, the tenant's webhook signing).
//!
//! - `GET /api/v1/openapi.json`: the API's OpenAPI document (no key);
//! - `GET /api/v1/status/{task_id}`: the task's state;
//! - `GET /api/v1/status/{task_id}/history?limit=&cursor=`: its applied events, newest first;
//! - `GET /api/v1/status/{task_id}/timeline?after=&cursor=&wait=&limit=`: its events and
//!   webhook attempts in one list, long-polled (see `timeline`);
//! - `GET /api/v1/status/events/recent?hours=&limit=&cursor=`: the tenant's recent events,
//!   newest first, one GSI1 query per hour bucket, stopping at the limit;
//! - `GET /api/v1/tasks?status=&limit=&cursor=`: the tenant's tasks, newest first (GSI2/GSI3).
//!
//! - `GET /api/v1/status/{task_id}/webhooks`: its webhook deliveries and their attempts;
//! - `POST /api/v1/status/{task_id}/webhooks/{delivery_id}/redeliver`: a fresh
//!   attempt cycle (the function's only write).
//!
//! - `GET /api/v1/webhooks/secret`, `POST /api/v1/webhooks/secret/rotate`,
//!   `GET /api/v1/webhooks/public-keys`, `POST /api/v1/webhooks/public-keys/rotate`,
//!   `PUT /api/v1/webhooks/signing`: the tenant's webhook signing (`v1`
//!   secrets, `v1a` keys, which of them sign), self-served (see `secrets`).
//!
//! - `/api/v1/webhooks/endpoints[/{endpoint_id}[/deliveries]]`: the
//!   tenant's webhook endpoints and their delivery logs (see `endpoints`).
//!
//! No route scans: every read is a `GetItem` or a `Query`. `wiring` builds
//! the real adapters.

mod endpoints;
mod queries;
pub mod secrets;
pub mod timeline;
mod webhooks;
pub mod wiring;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{OpenApi, ToSchema};

use morag_shared::domain::{InvalidId, SourceType, Task, TaskId, TaskStatus, TenantId};
use morag_shared::http::cursor::CursorCodec;
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{self as api, ApiError, Authenticated, Authenticates, Authenticator};
use morag_shared::outbound::TargetPolicy;
use morag_shared::ports::{DeliveryStore, EndpointStore, SecretStore, TaskStore, WebhookQueue};

/// Everything a request needs, built once per cold start (see `wiring`).
pub struct Status {
    pub tasks: Arc<dyn TaskStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    /// For redelivery only: the one write this function makes.
    pub webhooks: Arc<dyn WebhookQueue>,
    /// The tenant's signing secrets (read, provisioned, rotated).
    pub secrets: Arc<dyn SecretStore>,
    /// The tenant's webhook endpoints and their delivery logs.
    pub endpoints: Arc<dyn EndpointStore>,
    /// What an endpoint URL may point at (as a task's `webhook_url`).
    pub target_policy: TargetPolicy,
    pub auth: Arc<Authenticator>,
    pub cursors: CursorCodec,
}

impl Authenticates for Status {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}

/// The status function's part of the OpenAPI document (`docs/openapi.json`,
/// assembled with the ingest function's by `morag openapi`).
#[derive(OpenApi)]
#[openapi(paths(
    openapi_document,
    get_status,
    queries::history,
    timeline::timeline,
    queries::recent_events,
    queries::list_tasks,
    webhooks::list,
    webhooks::redeliver,
    secrets::get,
    secrets::rotate,
    secrets::public_keys,
    secrets::rotate_key,
    secrets::set_signing,
    endpoints::list,
    endpoints::create,
    endpoints::get,
    endpoints::patch,
    endpoints::delete,
    endpoints::deliveries,
    endpoints::recover,
))]
pub struct ApiDoc;

pub fn router(state: Arc<Status>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_document))
        .route("/api/v1/status/{task_id}", get(get_status))
        .route("/api/v1/status/{task_id}/history", get(queries::history))
        .route("/api/v1/status/{task_id}/timeline", get(timeline::timeline))
        .route("/api/v1/status/events/recent", get(queries::recent_events))
        .route("/api/v1/tasks", get(queries::list_tasks))
        .route("/api/v1/status/{task_id}/webhooks", get(webhooks::list))
        .route(
            "/api/v1/status/{task_id}/webhooks/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/api/v1/webhooks/secret", get(secrets::get))
        .route("/api/v1/webhooks/secret/rotate", post(secrets::rotate))
        .route("/api/v1/webhooks/public-keys", get(secrets::public_keys))
        .route("/api/v1/webhooks/public-keys/rotate", post(secrets::rotate_key))
        .route("/api/v1/webhooks/signing", put(secrets::set_signing))
        .route(
            "/api/v1/webhooks/endpoints",
            get(endpoints::list).post(endpoints::create),
        )
        .route(
            "/api/v1/webhooks/endpoints/{endpoint_id}",
            get(endpoints::get).patch(endpoints::patch).delete(endpoints::delete),
        )
        .route(
            "/api/v1/webhooks/endpoints/{endpoint_id}/deliveries",
            get(endpoints::deliveries),
        )
        .route(
            "/api/v1/webhooks/endpoints/{endpoint_id}/recover",
            post(endpoints::recover),
        )
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .layer(middleware::from_fn(api::request_span))
        .with_state(state)
}

/// The OpenAPI document of the whole API, as committed (`morag openapi`
/// writes it; a test checks it is what the code declares).
pub const OPENAPI_DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// This API's OpenAPI 3.1 document. No key needed.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "get_openapi",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
async fn openapi_document() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_DOCUMENT,
    )
}

/// The status answer (the MoRAG seed's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub task_id: TaskId,
    pub status: TaskStatus,
    /// From 0 to 1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub progress: f64,
    pub message: String,
    pub source_type: SourceType,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// What the pipeline reported with `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The client's metadata, as submitted.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// The longest silence of a running task's worker before `stalled`.
    pub heartbeat_timeout_s: u32,
    /// When an unfinished task fails as `timed_out`.
    pub deadline_at: DateTime<Utc>,
}

impl From<Task> for StatusView {
    fn from(t: Task) -> Self {
        Self {
            task_id: t.task_id,
            status: t.status,
            progress: t.progress,
            message: t.message,
            source_type: t.source_type,
            created_at: t.created_at,
            updated_at: t.updated_at,
            started_at: t.started_at,
            completed_at: t.completed_at,
            result: t.result,
            error: t.error,
            metadata: t.metadata,
            heartbeat_timeout_s: t.heartbeat_timeout_s,
            deadline_at: t.deadline_at,
        }
    }
}

pub(crate) fn task_not_found() -> ApiError {
    ApiError::not_found("no such task")
}

/// The caller's task, or 404 (another tenant's task is indistinguishable
/// from a missing one).
pub(crate) async fn owned_task(st: &Status, tenant: &TenantId, raw_id: &str) -> Result<Task, ApiError> {
    let task_id: TaskId = raw_id
        .parse()
        .map_err(|e: InvalidId| ApiError::bad_request("invalid_task_id", e.0))?;
    tracing::Span::current().record("task_id", task_id.to_string());
    let task = st.tasks.get_task(&task_id).await?.ok_or_else(task_not_found)?;
    if &task.tenant != tenant {
        return Err(task_not_found());
    }
    Ok(task)
}

/// A task's state.
#[utoipa::path(
    get,
    path = "/api/v1/status/{task_id}",
    operation_id = "get_status",
    tag = "status",
    params(("task_id" = TaskId, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task's state", body = StatusView),
        (status = 400, description = "`invalid_task_id`: not a UUID", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task of the caller's tenant", body = ErrorBody),
    )
)]
async fn get_status(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(owned_task(&st, &tenant, &raw_id).await?.into()))
}
