//! Tasks, their sources and the job message handed to processing pipelines.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

use super::delivery::WebhookEvent;
use super::ids::{TaskId, TenantId};

/// What kind of content a task ingests (the MoRAG seed's source types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Lifecycle: `pending → started → progress* → completed | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Started,
    Progress,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Started => "started",
            TaskStatus::Progress => "progress",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    /// `completed` and `failed` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        }
    }

    /// The job a pipeline receives for this task.
    pub fn job(&self) -> JobMessage {
        JobMessage {
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
            ["metadata", "source", "source_type", "submitted_at", "task_id", "tenant"]
        );
        assert_eq!(v["source"], serde_json::json!({"url": "https://example.com/a"}));
        let back: JobMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, task.job());
    }
}
