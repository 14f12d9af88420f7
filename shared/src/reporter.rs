//! `TaskReporter`: how a Rust pipeline worker reports what it does, exactly
//! as a Python worker would with boto3 (see docs/STATUS_EVENTS.md).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::domain::{EventStatus, StatusEvent, TaskId};
use crate::error::StoreError;
use crate::ports::EventSink;

/// Sends one task's status events to the status-events queue.
pub struct TaskReporter {
    sink: Arc<dyn EventSink>,
    task_id: TaskId,
    last: Mutex<Option<DateTime<Utc>>>,
}

impl TaskReporter {
    pub fn new(sink: Arc<dyn EventSink>, task_id: TaskId) -> Self {
        Self {
            sink,
            task_id,
            last: Mutex::new(None),
        }
    }

    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// Strictly increasing timestamps, so the recorder never takes two events
    /// from one reporter out of order, even within one millisecond.
    fn next_time(&self) -> DateTime<Utc> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::time::now();
        let t = match *last {
            Some(prev) if now <= prev => prev + Duration::milliseconds(1),
            _ => now,
        };
        *last = Some(t);
        t
    }

    async fn send(&self, status: EventStatus, build: impl FnOnce(&mut StatusEvent)) -> Result<StatusEvent, StoreError> {
        let mut event = StatusEvent::new(uuid::Uuid::new_v4().to_string(), self.task_id, status, self.next_time());
        build(&mut event);
        self.sink.send(&event).await?;
        Ok(event)
    }

    pub async fn started(&self, message: impl Into<String>) -> Result<StatusEvent, StoreError> {
        let message = message.into();
        self.send(EventStatus::Started, |e| e.message = Some(message)).await
    }

    /// `fraction` is clamped to 0.0–1.0 (NaN counts as 0.0).
    pub async fn progress(&self, fraction: f64, message: impl Into<String>) -> Result<StatusEvent, StoreError> {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let message = message.into();
        self.send(EventStatus::Progress, |e| {
            e.progress = Some(fraction);
            e.message = Some(message);
        })
        .await
    }

    pub async fn completed(&self, result: Map<String, Value>) -> Result<StatusEvent, StoreError> {
        self.send(EventStatus::Completed, |e| e.result = Some(result)).await
    }

    pub async fn failed(&self, error: impl Into<String>) -> Result<StatusEvent, StoreError> {
        let error = error.into();
        self.send(EventStatus::Failed, |e| e.error = Some(error)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryEventSink;

    #[tokio::test]
    async fn reports_valid_events_in_order() {
        let sink = Arc::new(MemoryEventSink::default());
        let r = TaskReporter::new(sink.clone(), TaskId::new());
        r.started("go").await.unwrap();
        r.progress(0.5, "half").await.unwrap();
        r.progress(f64::NAN, "odd").await.unwrap();
        r.progress(7.0, "over").await.unwrap();
        r.completed(Map::new()).await.unwrap();
        let events = sink.events.lock().unwrap().clone();
        assert_eq!(events.len(), 5);
        let now = crate::time::now();
        for w in events.windows(2) {
            assert!(w[0].occurred_at < w[1].occurred_at);
            assert_ne!(w[0].event_id, w[1].event_id);
        }
        for e in &events {
            // what the reporter sends, the recorder accepts
            StatusEvent::parse(&serde_json::to_string(e).unwrap(), now).unwrap();
        }
        assert_eq!(events[2].progress, Some(0.0));
        assert_eq!(events[3].progress, Some(1.0));
    }
}
