//! Tasks, their sources and the job message handed to processing pipelines.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

use super::delivery::WebhookEvent;
use super::ids::{TaskId, TenantId};

/// What kind of content a task ingests (the MoRAG seed's source types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Document,
    Audio,
    Video,
    Image,
    Web,
    Youtube,
    Text,
}

impl SourceType {
    pub const ALL: [SourceType; 7] = [
        SourceType::Document,
        SourceType::Audio,
        SourceType::Video,
        SourceType::Image,
        SourceType::Web,
        SourceType::Youtube,
        SourceType::Text,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Document => "document",
            SourceType::Audio => "audio",
            SourceType::Video => "video",
            SourceType::Image => "image",
            SourceType::Web => "web",
            SourceType::Youtube => "youtube",
            SourceType::Text => "text",
        }
    }
}

impl FromStr for SourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            let allowed: Vec<&str> = SourceType::ALL.iter().map(|t| t.as_str()).collect();
            format!("source_type must be one of: {}", allowed.join(", "))
        })
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle: `pending → started → progress* → completed | failed`, and
/// `stalled` (set by the watchdog when a running task's worker misses its
/// heartbeat) until the worker's next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Started,
    Progress,
    Stalled,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Started => "started",
            TaskStatus::Progress => "progress",
            TaskStatus::Stalled => "stalled",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    /// `completed` and `failed` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }

    /// A worker has the task: it owes heartbeats.
    pub fn is_running(self) -> bool {
        matches!(self, TaskStatus::Started | TaskStatus::Progress)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Heartbeat timeout, default and bounds (seconds).
pub const DEFAULT_HEARTBEAT_TIMEOUT_S: u32 = 15 * 60;
pub const HEARTBEAT_TIMEOUT_RANGE_S: (u32, u32) = (60, 24 * 3600);
/// Deadline from submission, default and bounds (seconds): at most a week,
/// well inside the history's retention.
pub const DEFAULT_TIMEOUT_S: u32 = 24 * 3600;
pub const TIMEOUT_RANGE_S: (u32, u32) = (60, 7 * 24 * 3600);

/// How long a task may run, chosen at ingest (`heartbeat_timeout_s`,
/// `timeout_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest silence of a running task's worker before it is `stalled`.
    pub heartbeat_s: u32,
    /// From submission to `failed` with `timed_out` if not finished.
    pub timeout_s: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            heartbeat_s: DEFAULT_HEARTBEAT_TIMEOUT_S,
            timeout_s: DEFAULT_TIMEOUT_S,
        }
    }
}

impl Timeouts {
    /// The client's choices, each optional, checked against the bounds.
    pub fn parse(heartbeat_s: Option<u64>, timeout_s: Option<u64>) -> Result<Self, String> {
        let within = |name: &str, v: Option<u64>, default: u32, (lo, hi): (u32, u32)| match v {
            None => Ok(default),
            Some(v) if (u64::from(lo)..=u64::from(hi)).contains(&v) => Ok(v as u32),
            Some(_) => Err(format!("{name} must be a whole number of seconds from {lo} to {hi}")),
        };
        Ok(Self {
            heartbeat_s: within(
                "heartbeat_timeout_s",
                heartbeat_s,
                DEFAULT_HEARTBEAT_TIMEOUT_S,
                HEARTBEAT_TIMEOUT_RANGE_S,
            )?,
            timeout_s: within("timeout_s", timeout_s, DEFAULT_TIMEOUT_S, TIMEOUT_RANGE_S)?,
        })
    }
}

/// Where a task's content lives: an uploaded object, or a URL to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Object {
        bucket: String,
        key: String,
        /// The SHA-256 (hex) declared when the object was uploaded: a
        /// worker that reads the object checks it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    Url {
        url: String,
    },
}

/// A task as the domain sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: TaskId,
    pub tenant: TenantId,
    pub status: TaskStatus,
    /// 0.0 to 1.0.
    pub progress: f64,
    pub message: String,
    pub source_type: SourceType,
    pub source: Source,
    pub webhook_url: Option<String>,
    pub metadata: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Events applied so far (the sequence number of the newest history item).
    pub event_seq: u64,
    /// `occurred_at` of the newest applied event: older events are stale.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Ids of the newest applied events, so a redelivered event is a no-op.
    pub recent_event_ids: Vec<String>,
    /// The webhook events the client subscribed to (all by default).
    pub webhook_events: Vec<WebhookEvent>,
    /// Progress milestones (percent) whose webhook was planned.
    pub milestones_sent: Vec<u8>,
    /// Longest silence of a running task's worker before it is `stalled`.
    pub heartbeat_timeout_s: u32,
    /// When an unfinished task fails as `timed_out`.
    pub deadline_at: DateTime<Utc>,
    /// Whether the job is known to have reached the processing queue (a
    /// `pending` task without it is re-enqueued by the watchdog).
    pub job_enqueued: bool,
}

impl Task {
    /// A freshly submitted task, waiting for a pipeline to pick it up.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        task_id: TaskId,
        tenant: TenantId,
        source_type: SourceType,
        source: Source,
        webhook_url: Option<String>,
        metadata: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            task_id,
            tenant,
            status: TaskStatus::Pending,
            progress: 0.0,
            message: "Task queued for processing".to_owned(),
            source_type,
            source,
            webhook_url,
            metadata,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
            event_seq: 0,
            last_event_at: None,
            recent_event_ids: Vec::new(),
            webhook_events: WebhookEvent::ALL.to_vec(),
            milestones_sent: Vec::new(),
            heartbeat_timeout_s: Timeouts::default().heartbeat_s,
            deadline_at: now + chrono::Duration::seconds(i64::from(Timeouts::default().timeout_s)),
            job_enqueued: false,
        }
    }

    /// The task with the client's heartbeat timeout and deadline.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.heartbeat_timeout_s = timeouts.heartbeat_s;
        self.deadline_at = self.created_at + chrono::Duration::seconds(i64::from(timeouts.timeout_s));
        self
    }

    /// The job a pipeline receives for this task.
    pub fn job(&self) -> JobMessage {
        JobMessage {
            job_id: format!("job_{}", self.task_id),
            task_id: self.task_id,
            tenant: self.tenant.clone(),
            source_type: self.source_type,
            source: self.source.clone(),
            metadata: self.metadata.clone(),
            submitted_at: self.created_at,
        }
    }
}

/// The message on the processing queue (the pipeline's input contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Deterministic (`job_{task_id}`): the watchdog's re-enqueue of a job
    /// whose first send is in doubt carries the same id, so a worker can
    /// dedupe.
    #[serde(default)]
    pub job_id: String,
    pub task_id: TaskId,
    pub tenant: TenantId,
    pub source_type: SourceType,
    pub source: Source,
    pub metadata: Map<String, Value>,
    pub submitted_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_type_parses_only_known_names() {
        for t in SourceType::ALL {
            assert_eq!(t.as_str().parse::<SourceType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        let err = "pdf".parse::<SourceType>().unwrap_err();
        assert!(err.contains("document"), "{err}");
        assert!("Document".parse::<SourceType>().is_err());
    }

    #[test]
    fn job_message_has_the_contract_shape() {
        let now = crate::time::now();
        let task = Task::pending(
            TaskId::new(),
            "acme".parse().unwrap(),
            SourceType::Web,
            Source::Url {
                url: "https://example.com/a".into(),
            },
            None,
            Map::new(),
            now,
        );
        let v = serde_json::to_value(task.job()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "job_id",
                "metadata",
                "source",
                "source_type",
                "submitted_at",
                "task_id",
                "tenant"
            ]
        );
        assert_eq!(v["source"], serde_json::json!({"url": "https://example.com/a"}));
        let back: JobMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, task.job());
    }
}
