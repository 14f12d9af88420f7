//! Status events: what pipelines report on the status-events queue (the
//! pipelines' contract), and their validation.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::TaskId;
use super::task::TaskStatus;

pub const MAX_EVENT_ID: usize = 128;
pub const MAX_MESSAGE: usize = 2048;
pub const MAX_ERROR: usize = 4096;
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
pub const MAX_EVENT_METADATA_BYTES: usize = 16 * 1024;
/// How far in the future an event's clock may be.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// What a pipeline reports (`started`, `progress`, `completed`, `failed`),
/// or what the watchdog observes (`stalled`: never accepted from a queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Started,
    Progress,
    Stalled,
    Completed,
    Failed,
}

impl EventStatus {
    pub fn as_task_status(self) -> TaskStatus {
        match self {
            EventStatus::Started => TaskStatus::Started,
            EventStatus::Progress => TaskStatus::Progress,
            EventStatus::Stalled => TaskStatus::Stalled,
            EventStatus::Completed => TaskStatus::Completed,
            EventStatus::Failed => TaskStatus::Failed,
        }
    }
}

/// A message on the status-events queue. `docs/status-event.schema.json`
/// is its JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusEvent {
    pub event_id: String,
    pub task_id: TaskId,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub occurred_at: DateTime<Utc>,
}

/// Why a message is not a valid status event. Parked in the DLQ with this
/// reason; retrying it would never help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct MalformedEvent {
    pub code: &'static str,
    pub detail: String,
}

fn malformed(code: &'static str, detail: impl Into<String>) -> MalformedEvent {
    MalformedEvent {
        code,
        detail: detail.into(),
    }
}

impl StatusEvent {
    /// An event with only its identity, status and time; the caller sets
    /// what else it carries.
    pub fn new(event_id: String, task_id: TaskId, status: EventStatus, occurred_at: DateTime<Utc>) -> Self {
        Self {
            event_id,
            task_id,
            status,
            progress: None,
            message: None,
            result: None,
            error: None,
            metadata: None,
            occurred_at,
        }
    }

    /// Parses and validates a message body.
    pub fn parse(body: &str, now: DateTime<Utc>) -> Result<Self, MalformedEvent> {
        let event: StatusEvent = serde_json::from_str(body).map_err(|e| malformed("invalid_json", e.to_string()))?;
        event.validate(now)?;
        Ok(event)
    }

    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), MalformedEvent> {
        if self.status == EventStatus::Stalled {
            return Err(malformed(
                "invalid_status",
                "stalled is set by the watchdog; a pipeline reports started, progress, completed or failed",
            ));
        }
        if self.event_id.is_empty()
            || self.event_id.len() > MAX_EVENT_ID
            || !self.event_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(malformed(
                "invalid_event_id",
                format!("event_id must be 1-{MAX_EVENT_ID} visible ASCII characters"),
            ));
        }
        match (self.status, self.progress) {
            (EventStatus::Progress, None) => {
                return Err(malformed("missing_progress", "a progress event needs progress"))
            }
            (_, Some(p)) if !(0.0..=1.0).contains(&p) => {
                return Err(malformed(
                    "invalid_progress",
                    "progress must be a number from 0.0 to 1.0",
                ))
            }
            _ => {}
        }
        if self.status == EventStatus::Failed && self.error.as_deref().is_none_or(str::is_empty) {
            return Err(malformed("missing_error", "a failed event needs an error"));
        }
        if self.result.is_some() && self.status != EventStatus::Completed {
            return Err(malformed(
                "unexpected_result",
                "only a completed event carries a result",
            ));
        }
        if self.message.as_ref().is_some_and(|m| m.len() > MAX_MESSAGE) {
            return Err(malformed(
                "message_too_long",
                format!("message must be at most {MAX_MESSAGE} bytes"),
            ));
        }
        if self.error.as_ref().is_some_and(|m| m.len() > MAX_ERROR) {
            return Err(malformed(
                "error_too_long",
                format!("error must be at most {MAX_ERROR} bytes"),
            ));
        }
        if self.result.as_ref().is_some_and(|r| json_len(r) > MAX_RESULT_BYTES) {
            return Err(malformed(
                "result_too_large",
                format!("result must be at most {MAX_RESULT_BYTES} bytes of JSON"),
            ));
        }
        if self
            .metadata
            .as_ref()
            .is_some_and(|m| json_len(m) > MAX_EVENT_METADATA_BYTES)
        {
            return Err(malformed(
                "metadata_too_large",
                format!("metadata must be at most {MAX_EVENT_METADATA_BYTES} bytes of JSON"),
            ));
        }
        if self.occurred_at > now + Duration::seconds(MAX_CLOCK_SKEW_SECONDS) {
            return Err(malformed(
                "occurred_in_future",
                "occurred_at is more than 5 minutes in the future",
            ));
        }
        Ok(())
    }
}

fn json_len(map: &Map<String, Value>) -> usize {
    serde_json::to_vec(map).map_or(usize::MAX, |v| v.len())
}
