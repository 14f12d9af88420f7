//! The soak's processing pipeline: workers that take jobs from the
//! processing queue like any pipeline would and report status events to the
//! status-events queue: in order per task but interleaved across tasks,
//! with copies resent later (duplicates), and some workers dying mid-task
//! (no final event). Everything sent is written down for the checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use morag_shared::domain::{JobMessage, TaskId};

/// How a task's worker ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Complete,
    Fail,
    /// The worker dies after this many events (started and some progress).
    Die {
        after: usize,
    },
}

/// One status event as sent (every copy has the same body).
#[derive(Debug, Clone)]
pub struct Sent {
    pub event_id: String,
    pub status: &'static str,
    pub progress: Option<f64>,
    pub at: DateTime<Utc>,
    pub copies: usize,
}

/// What a task's worker did.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub fate: Fate,
    pub sent: Vec<Sent>,
}

/// The progress steps of a task that runs to its end: started, eight
/// progress events, then completed or failed (ten events).
pub const PROGRESS_STEPS: usize = 8;

/// Share of status events sent twice, and of tasks whose worker dies.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub duplicate_share: f64,
    pub gap: (Duration, Duration),
    /// How long after the original a duplicate is sent (at most).
    pub duplicate_within: Duration,
}

/// What every worker shares.
pub struct Pipeline {
    pub sqs: aws_sdk_sqs::Client,
    pub processing_queue_url: String,
    pub status_queue_url: String,
    pub behaviour: Behaviour,
    pub fates: Mutex<HashMap<TaskId, Fate>>,
    pub runs: Mutex<HashMap<TaskId, TaskRun>>,
    /// Jobs taken (one per task).
    pub taken: AtomicUsize,
    /// Tasks whose worker has sent its last original event.
    pub finished: AtomicUsize,
    pub sends: AtomicUsize,
    pub duplicates_pending: AtomicUsize,
    pub total: usize,
    /// Status events waiting on the queue (kept fresh by the soak): new
    /// tasks wait while it is above `max_backlog`, so the emulator, whose
    /// receive walks the whole queue, keeps its pace.
    pub backlog: AtomicUsize,
    pub max_backlog: usize,
}

impl Pipeline {
    fn fate(&self, task_id: &TaskId) -> Option<Fate> {
        self.fates.lock().unwrap().get(task_id).copied()
    }

    async fn send(&self, body: &str) {
        // a send that fails (the emulator busy) is retried: a worker that
        // could not report would be a different test
        loop {
            match self
                .sqs
                .send_message()
                .queue_url(&self.status_queue_url)
                .message_body(body)
                .send()
                .await
            {
                Ok(_) => {
                    self.sends.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SendMessage failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// One worker: takes jobs until every task has been taken.
    pub async fn work(self: Arc<Self>, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        while self.taken.load(Ordering::Relaxed) < self.total {
            if self.backlog.load(Ordering::Relaxed) > self.max_backlog {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.processing_queue_url)
                .max_number_of_messages(1)
                .wait_time_seconds(1)
                .send()
                .await;
            let Ok(received) = received else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            for message in received.messages.unwrap_or_default() {
                let job: JobMessage = match serde_json::from_str(message.body().unwrap_or("")) {
                    Ok(job) => job,
                    Err(e) => panic!("the ingest function enqueued a job the contract does not describe: {e}"),
                };
                // the job can arrive before ingest's answer reaches the soak
                let mut fate = None;
                for _ in 0..500 {
                    fate = self.fate(&job.task_id);
                    if fate.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(&self.processing_queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or(""))
                    .send()
                    .await;
                // the soak made every task itself; a job it cannot place is a loss elsewhere
                let Some(fate) = fate else {
                    tracing::error!(task_id = %job.task_id, "a job for a task the soak did not create");
                    continue;
                };
                if self.runs.lock().unwrap().contains_key(&job.task_id) {
                    // a job delivered twice: one worker runs a task
                    continue;
                }
                self.taken.fetch_add(1, Ordering::Relaxed);
                self.run_task(job.task_id, fate, &mut rng).await;
            }
        }
    }

    async fn run_task(self: &Arc<Self>, task_id: TaskId, fate: Fate, rng: &mut StdRng) {
        let mut plan: Vec<(&'static str, Option<f64>)> = vec![("started", None)];
        plan.extend((1..=PROGRESS_STEPS).map(|i| ("progress", Some(i as f64 / 10.0))));
        match fate {
            Fate::Complete => plan.push(("completed", None)),
            Fate::Fail => plan.push(("failed", None)),
            Fate::Die { after } => plan.truncate(after),
        }
        self.runs
            .lock()
            .unwrap()
            .insert(task_id, TaskRun { fate, sent: Vec::new() });
        let mut last: Option<DateTime<Utc>> = None;
        for (i, (status, progress)) in plan.into_iter().enumerate() {
            let (lo, hi) = self.behaviour.gap;
            tokio::time::sleep(rng.gen_range(lo..=hi)).await;
            // the worker's clock, strictly increasing per task
            let mut at = morag_shared::time::now();
            if let Some(prev) = last.filter(|p| at <= *p) {
                at = prev + chrono::Duration::milliseconds(1);
            }
            last = Some(at);
            let event_id = format!("soak-{task_id}-{i}");
            let mut body = json!({"event_id": event_id, "task_id": task_id, "status": status, "occurred_at": at});
            if let Some(p) = progress {
                body["progress"] = p.into();
            }
            match status {
                "completed" => body["result"] = json!({"chunks": 3}),
                "failed" => body["error"] = "soak: the document could not be read".into(),
                _ => {}
            }
            let body = body.to_string();
            let duplicate = rng.gen_bool(self.behaviour.duplicate_share);
            self.runs
                .lock()
                .unwrap()
                .get_mut(&task_id)
                .expect("run recorded")
                .sent
                .push(Sent {
                    event_id,
                    status,
                    progress,
                    at,
                    copies: 1 + usize::from(duplicate),
                });
            self.send(&body).await;
            if duplicate {
                let within = self.behaviour.duplicate_within;
                let after = rng.gen_range(Duration::from_millis(100)..=within);
                let pipeline = self.clone();
                self.duplicates_pending.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    pipeline.send(&body).await;
                    pipeline.duplicates_pending.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}
