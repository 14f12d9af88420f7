//! The lifecycle rules that apply status events to a task:
//! `pending → started → progress* → completed | failed`, with `stalled`
//! (from `started` or `progress` only, by the watchdog) until the worker's
//! next event moves the task on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::{EventStatus, StatusEvent};
use super::fanout::{self, Links, PlannedDelivery};
use super::ids::TaskId;
use super::task::{Task, TaskStatus};

/// Event ids remembered per task to make redelivery a no-op.
pub const REMEMBERED_EVENT_IDS: usize = 100;
/// History items kept per task.
pub const HISTORY_LIMIT: u64 = 100;

/// How long things are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// History items (TTL from when they are recorded).
    pub history: Duration,
    /// Tasks, from when they complete or fail.
    pub ended_task: Duration,
}

/// What happened to the write of an applied event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The task changed since it was read (another writer): read and decide again.
    Conflict,
}

/// A history entry with the task it belongs to (recent events).
#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub task_id: TaskId,
    pub entry: HistoryEntry,
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
    /// A `stalled` for a task that is not `started` or `progress`.
    NotRunning,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Duplicate => "duplicate",
            Ignored::Terminal => "terminal",
            Ignored::Stale => "stale",
            Ignored::AlreadyStarted => "already_started",
            Ignored::NotRunning => "not_running",
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
        webhooks: Vec<PlannedDelivery>,
    },
    Ignore(Ignored),
}

fn default_message(event: &StatusEvent) -> String {
    match event.status {
        EventStatus::Started => "Task processing started".to_owned(),
        EventStatus::Progress => "Task in progress".to_owned(),
        EventStatus::Stalled => "No status event within the heartbeat timeout".to_owned(),
        EventStatus::Completed => "Task completed".to_owned(),
        EventStatus::Failed => "Task failed".to_owned(),
    }
}

/// Applies the lifecycle rules. Pure: the caller stores the result.
pub fn decide(task: &Task, event: &StatusEvent) -> Decision {
    decide_linked(task, event, Links::default())
}

/// `decide`, with the deployment's public API URL for the webhooks'
/// `data.status_url`.
pub fn decide_linked(task: &Task, event: &StatusEvent, links: Links<'_>) -> Decision {
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
        EventStatus::Stalled => {
            if !task.status.is_running() {
                return Decision::Ignore(Ignored::NotRunning);
            }
            next.status = TaskStatus::Stalled;
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
    // the worker's clock: the watchdog's observation is not a heartbeat
    if event.status != EventStatus::Stalled {
        next.last_event_at = Some(at);
    }
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
    let webhooks = fanout::plan(task, &mut next, event, links);
    Decision::Apply {
        task: Box::new(next),
        entry,
        webhooks,
    }
}

#[cfg(test)]
mod tests;
