//! Status events (the pipelines' contract) and the lifecycle rules that
//! apply them to a task: `pending → started → progress* → completed | failed`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::TaskId;
use super::task::{Task, TaskStatus};

/// Event ids remembered per task to make redelivery a no-op.
pub const REMEMBERED_EVENT_IDS: usize = 100;
/// History items kept per task.
pub const HISTORY_LIMIT: u64 = 100;
pub const MAX_EVENT_ID: usize = 128;
pub const MAX_MESSAGE: usize = 2048;
pub const MAX_ERROR: usize = 4096;
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
pub const MAX_EVENT_METADATA_BYTES: usize = 16 * 1024;
/// How far in the future an event's clock may be.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// What a pipeline reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Started,
    Progress,
    Completed,
    Failed,
}

impl EventStatus {
    pub fn as_task_status(self) -> TaskStatus {
        match self {
            EventStatus::Started => TaskStatus::Started,
            EventStatus::Progress => TaskStatus::Progress,
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
    /// Parses and validates a message body.
    pub fn parse(body: &str, now: DateTime<Utc>) -> Result<Self, MalformedEvent> {
        let event: StatusEvent = serde_json::from_str(body).map_err(|e| malformed("invalid_json", e.to_string()))?;
        event.validate(now)?;
        Ok(event)
    }

    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), MalformedEvent> {
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

/// One applied event, as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub status: TaskStatus,
    pub progress: f64,
    pub message: String,
    pub metadata: Map<String, Value>,
}

/// Why an event was kept out of the state (logged and counted, not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The same `event_id` was applied before.
    Duplicate,
    /// The task already completed or failed.
    Terminal,
    /// Older than the last applied event.
    Stale,
    /// A `started` for a task that is already running.
    AlreadyStarted,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Duplicate => "duplicate",
            Ignored::Terminal => "terminal",
            Ignored::Stale => "stale",
            Ignored::AlreadyStarted => "already_started",
        }
    }
}

/// The outcome of applying an event to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Apply {
        task: Box<Task>,
        entry: HistoryEntry,
        /// Webhooks to deliver, planned by `fanout::plan`.
        webhooks: Vec<super::fanout::PlannedDelivery>,
    },
    Ignore(Ignored),
}

fn default_message(event: &StatusEvent) -> String {
    match event.status {
        EventStatus::Started => "Task processing started".to_owned(),
        EventStatus::Progress => "Task in progress".to_owned(),
        EventStatus::Completed => "Task completed".to_owned(),
        EventStatus::Failed => "Task failed".to_owned(),
    }
}

/// Applies the lifecycle rules. Pure: the caller stores the result.
pub fn decide(task: &Task, event: &StatusEvent) -> Decision {
    if task.recent_event_ids.iter().any(|id| id == &event.event_id) {
        return Decision::Ignore(Ignored::Duplicate);
    }
    if task.status.is_terminal() {
        return Decision::Ignore(Ignored::Terminal);
    }
    if task.last_event_at.is_some_and(|last| event.occurred_at < last) {
        return Decision::Ignore(Ignored::Stale);
    }
    let at = event.occurred_at;
    let mut next = task.clone();
    match event.status {
        EventStatus::Started => {
            if task.status != TaskStatus::Pending {
                return Decision::Ignore(Ignored::AlreadyStarted);
            }
            next.status = TaskStatus::Started;
        }
        EventStatus::Progress => {
            next.status = TaskStatus::Progress;
            // progress never goes down
            next.progress = task.progress.max(event.progress.unwrap_or(0.0));
        }
        EventStatus::Completed => {
            next.status = TaskStatus::Completed;
            next.progress = 1.0;
            next.result = Some(Value::Object(event.result.clone().unwrap_or_default()));
            next.completed_at = Some(at);
        }
        EventStatus::Failed => {
            next.status = TaskStatus::Failed;
            next.error = event.error.clone();
            next.completed_at = Some(at);
        }
    }
    // progress, completed or failed before started imply started
    next.started_at = task.started_at.or(Some(at));
    next.message = event.message.clone().unwrap_or_else(|| default_message(event));
    next.updated_at = at.max(task.updated_at);
    next.last_event_at = Some(at);
    next.event_seq = task.event_seq + 1;
    next.recent_event_ids.push(event.event_id.clone());
    if next.recent_event_ids.len() > REMEMBERED_EVENT_IDS {
        let excess = next.recent_event_ids.len() - REMEMBERED_EVENT_IDS;
        next.recent_event_ids.drain(..excess);
    }
    let entry = HistoryEntry {
        seq: next.event_seq,
        event_id: event.event_id.clone(),
        timestamp: at,
        status: next.status,
        progress: next.progress,
        message: next.message.clone(),
        metadata: event.metadata.clone().unwrap_or_default(),
    };
    let webhooks = super::fanout::plan(task, &mut next, event);
    Decision::Apply {
        task: Box::new(next),
        entry,
        webhooks,
    }
}

#[cfg(test)]
mod tests;
