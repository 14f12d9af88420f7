//! The ingest routes' part of the OpenAPI document: their answers (the
//! types the handlers serialize) and their request bodies as the parsers in
//! `form` read them (those parsers check more than a schema can say: URL
//! policy, sizes against the deployment's limits; they answer 422).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use morag_shared::domain::{SourceType, TaskId, TaskStatus, UploadId};

/// `202`: the task was created (or an idempotent repeat found it).
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub task_id: TaskId,
    /// Always `pending`.
    pub status: TaskStatus,
    /// Where to read its status (absolute when the request named its host).
    pub status_url: String,
    pub created_at: DateTime<Utc>,
}

/// The `202` of the three ingest routes, with its headers.
#[derive(IntoResponses)]
#[response(
    status = 202,
    description = "The task was created, or found by its `Idempotency-Key`",
    headers(
        ("Location" = String, description = "The task's status URL"),
        ("Idempotent-Replayed" = Option<String>, description = "`true` when an earlier request with the same key made the task"),
    )
)]
#[allow(dead_code)]
pub struct AcceptedResponse(Accepted);

/// The header the three ingest routes take (read by `idempotency_key`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKeyHeader {
    /// Repeats within 24 h with the same key and content answer the first task (`Idempotent-Replayed: true`); 1–255 visible ASCII characters
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    pub idempotency_key: Option<String>,
}

/// `201`: a presigned PUT for the file.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadGrant {
    pub upload_id: UploadId,
    /// Always `PUT`.
    pub method: String,
    /// The presigned URL, valid for an hour.
    pub url: String,
    /// Send exactly these headers with the PUT.
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// A task event a task's `webhook_url` may subscribe to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum TaskWebhookEvent {
    TaskStarted,
    TaskProgress,
    TaskStalled,
    TaskCompleted,
    TaskFailed,
}

/// `POST /api/v1/ingest/url`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UrlSubmission {
    pub source_type: SourceType,
    /// The content to fetch: http or https, a public host.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    /// Where the task's webhooks go: https, a public host.
    #[schema(format = "uri", max_length = 2048)]
    pub webhook_url: Option<String>,
    /// Which webhooks it gets (default: all; needs `webhook_url`).
    #[schema(min_items = 1)]
    pub webhook_events: Option<Vec<TaskWebhookEvent>>,
    /// Anything of the client's, kept with the task (at most 16 KiB of JSON).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// The longest silence of a running task's worker before `stalled` (60–86400, default 900).
    #[schema(minimum = 60, maximum = 86400)]
    pub heartbeat_timeout_s: Option<u32>,
    /// When an unfinished task fails as `timed_out` (60–604800, default 86400).
    #[schema(minimum = 60, maximum = 604800)]
    pub timeout_s: Option<u32>,
}

/// `POST /api/v1/ingest/upload`: a landed upload becomes a task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadSubmission {
    pub source_type: SourceType,
    /// From `POST /api/v1/uploads`, once the file was PUT.
    pub upload_id: UploadId,
    #[schema(format = "uri", max_length = 2048)]
    pub webhook_url: Option<String>,
    #[schema(min_items = 1)]
    pub webhook_events: Option<Vec<TaskWebhookEvent>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[schema(minimum = 60, maximum = 86400)]
    pub heartbeat_timeout_s: Option<u32>,
    #[schema(minimum = 60, maximum = 604800)]
    pub timeout_s: Option<u32>,
}

/// `POST /api/v1/ingest/file` (`multipart/form-data`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FileSubmission {
    pub source_type: SourceType,
    /// The document (not empty; at most the deployment's direct-upload limit).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    #[schema(format = "uri", max_length = 2048)]
    pub webhook_url: Option<String>,
    /// Comma-separated task events, e.g. `task_started,task_completed`.
    #[schema(
        pattern = "^(\\s*,)*\\s*(task_started|task_progress|task_stalled|task_completed|task_failed)\\s*(,\\s*((task_started|task_progress|task_stalled|task_completed|task_failed)\\s*)?)*$"
    )]
    pub webhook_events: Option<String>,
    /// A JSON object, as text.
    pub metadata: Option<String>,
    #[schema(minimum = 60, maximum = 86400)]
    pub heartbeat_timeout_s: Option<u32>,
    #[schema(minimum = 60, maximum = 604800)]
    pub timeout_s: Option<u32>,
}

/// `POST /api/v1/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadRequestBody {
    /// The file's name (kept sanitized: `A-Z a-z 0-9 . - _`).
    #[schema(pattern = "\\S")]
    pub filename: String,
    /// A media type like `text/markdown`.
    #[schema(pattern = "^\\s*[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+\\s*$", max_length = 255)]
    pub content_type: String,
    /// The file's exact size (one S3 PUT: at most 5 GiB).
    #[schema(minimum = 1, maximum = 5368709120_u64)]
    pub size_bytes: u64,
    /// Hex SHA-256 of the file; S3 checks it.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: Option<String>,
}
