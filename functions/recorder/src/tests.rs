//! Recorder rules with in-memory adapters; `tests/` runs them against the emulator.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use morag_shared::adapters::memory::{MemoryDeadLetters, MemoryTaskStore, MemoryWebhookQueue};
use morag_shared::config::{DEFAULT_HISTORY_TTL_DAYS, DEFAULT_TASK_TTL_DAYS};
use morag_shared::domain::Retention;
use morag_shared::domain::{Source, SourceType, Task};
use morag_shared::ports::TaskStore;
use serde_json::json;

use super::*;
use morag_shared::domain::TaskStatus;

fn record(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body.to_owned());
    m
}

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

struct Fixture {
    store: Arc<MemoryTaskStore>,
    dlq: Arc<MemoryDeadLetters>,
    recorder: Recorder,
    task: Task,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemoryTaskStore::default());
    let dlq = Arc::new(MemoryDeadLetters::default());
    let task = Task::pending(
        TaskId::new(),
        "acme".parse().unwrap(),
        SourceType::Text,
        Source::Url {
            url: "https://example.com/".into(),
        },
        None,
        Default::default(),
        morag_shared::time::now(),
    );
    store.create_task(&task, None).await.unwrap();
    let recorder = Recorder {
        tasks: store.clone(),
        deliveries: store.clone(),
        endpoints: Arc::new(morag_shared::endpoints::EndpointCache::new(
            store.clone(),
            Duration::ZERO,
        )),
        webhooks: Arc::new(MemoryWebhookQueue::default()),
        dead_letters: dlq.clone(),
        retention: Retention {
            history: Duration::from_secs(DEFAULT_HISTORY_TTL_DAYS * 86_400),
            ended_task: Duration::from_secs(DEFAULT_TASK_TTL_DAYS * 86_400),
        },
        public_api_url: Some("https://api.example.com".to_owned()),
    };
    Fixture {
        store,
        dlq,
        recorder,
        task,
    }
}

fn ev(task: &Task, id: &str, status: &str, progress: Option<f64>, ms: i64) -> String {
    let at = task.created_at + chrono::Duration::milliseconds(ms);
    let mut v = json!({"event_id": id, "task_id": task.task_id, "status": status, "occurred_at": at});
    if let Some(p) = progress {
        v["progress"] = p.into();
    }
    if status == "failed" {
        v["error"] = "boom".into();
    }
    v.to_string()
}

#[tokio::test]
async fn a_mixed_batch_applies_parks_and_ignores_without_failing() {
    let f = fixture().await;
    let t = &f.task;
    let unknown = Task {
        task_id: TaskId::new(),
        ..t.clone()
    };
    let (res, stats) = f
        .recorder
        .handle_with_stats(batch(vec![
            record("m1", &ev(t, "e1", "started", None, 1)),
            record("m2", "{not json"),
            record("m3", &ev(t, "e2", "progress", Some(0.5), 2)),
            record("m4", &ev(&unknown, "e9", "started", None, 1)),
            record("m5", &ev(t, "e2", "progress", Some(0.5), 2)),
            record("m6", &ev(t, "e3", "completed", None, 3)),
            record("m7", &ev(t, "e4", "progress", Some(0.9), 4)),
        ]))
        .await;
    assert!(res.batch_item_failures.is_empty(), "{res:?}");
    assert_eq!(stats.applied, 3);
    assert_eq!(stats.parked_malformed, 1);
    assert_eq!(stats.parked_unknown_task, 1);
    assert_eq!(stats.duplicate, 1);
    assert_eq!(stats.terminal, 1);
    let task = f.store.get_task(&t.task_id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    let parked = f.dlq.parked.lock().unwrap().clone();
    let reasons: Vec<&str> = parked.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(reasons, ["invalid_json", "unknown_task"]);
    assert_eq!(parked[0].3, "m2");
}

#[tokio::test]
async fn a_store_failure_fails_that_task_only_and_keeps_its_order() {
    let f = fixture().await;
    f.store.fail.store(true, Ordering::SeqCst);
    let (res, stats) = f
        .recorder
        .handle_with_stats(batch(vec![
            record("m1", &ev(&f.task, "e1", "started", None, 1)),
            record("m2", &ev(&f.task, "e2", "progress", Some(0.2), 2)),
            record("m3", "[]"),
        ]))
        .await;
    let failed: Vec<&str> = res
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m1", "m2"]);
    assert_eq!(stats.parked_malformed, 1);
}

#[tokio::test]
async fn a_dlq_failure_leaves_the_message_to_sqs() {
    let f = fixture().await;
    f.dlq.fail.store(true, Ordering::SeqCst);
    let (res, _) = f.recorder.handle_with_stats(batch(vec![record("m1", "nope")])).await;
    assert_eq!(res.batch_item_failures.len(), 1);
    assert_eq!(res.batch_item_failures[0].item_identifier, "m1");
}

#[test]
fn stats_become_an_emf_document() {
    let stats = BatchStats {
        applied: 3,
        stale: 1,
        ..Default::default()
    };
    let doc: serde_json::Value = serde_json::from_str(&stats.emf()).unwrap();
    assert_eq!(doc["EventsApplied"], 3);
    assert_eq!(doc["EventsStale"], 1);
    assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "MoRAG/Status");
}
