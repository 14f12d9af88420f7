//! Fixtures for the domain's unit tests.

use chrono::DateTime;
use serde_json::Map;

use super::{EventStatus, Source, SourceType, StatusEvent, Task, TaskId};

/// A pending task created at a fixed time, with an optional webhook URL.
pub fn task(webhook_url: Option<&str>) -> Task {
    Task::pending(
        TaskId::new(),
        "acme".parse().expect("tenant"),
        SourceType::Text,
        Source::Url {
            url: "https://example.com/".into(),
        },
        webhook_url.map(str::to_owned),
        Map::new(),
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
    )
}

/// An event for `task`, `t` seconds after the task's creation; completed and
/// failed events carry the result or error they need to be valid.
pub fn event(task: &Task, id: &str, status: EventStatus, progress: Option<f64>, t: i64) -> StatusEvent {
    StatusEvent {
        event_id: id.to_owned(),
        task_id: task.task_id,
        status,
        progress,
        message: None,
        result: (status == EventStatus::Completed).then(Map::new),
        error: (status == EventStatus::Failed).then(|| "boom".to_owned()),
        metadata: None,
        occurred_at: DateTime::from_timestamp(1_700_000_000 + t, 0).expect("time"),
    }
}
