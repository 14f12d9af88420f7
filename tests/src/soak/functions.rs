//! The functions under test as Lambda runs them: each a real binary behind
//! its own Runtime API emulator, fed by a local event-source mapping, and
//! killable with SIGKILL at any moment (the invocation it held fails as
//! `Runtime.ExitError`; its batch returns after the queue's visibility
//! timeout, as on Lambda).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tokio::process::Child;

use crate::runtime::{Outcome, RuntimeEmulator};

/// Longer than the emulator's 15 s deadline: an invocation the killed
/// process never answered (and no process took again) ends as an error.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(20);

/// One function process and its emulator.
pub struct Supervised {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    emulator: RuntimeEmulator,
    child: tokio::sync::Mutex<Child>,
    pub kills: AtomicUsize,
    /// Invocations that were in the killed process's hands.
    pub abandoned: AtomicUsize,
    pub failed_invocations: AtomicUsize,
    pub invocations: AtomicUsize,
    /// Time spent in invocations, in microseconds (what Lambda bills).
    pub busy_us: AtomicU64,
    /// Its `MemorySize` in MB.
    pub memory_mb: u32,
}

impl Supervised {
    pub async fn start(name: String, binary: PathBuf, env: Vec<(String, String)>, memory_mb: u32) -> Result<Arc<Self>> {
        let emulator = RuntimeEmulator::start().await;
        let child = spawn(&emulator, &name, &binary, &env).with_context(|| format!("starting {}", binary.display()))?;
        emulator
            .wait_ready(Duration::from_secs(30))
            .await
            .with_context(|| format!("{name} never asked for work"))?;
        Ok(Arc::new(Self {
            name,
            binary,
            env,
            emulator,
            child: tokio::sync::Mutex::new(child),
            kills: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            failed_invocations: AtomicUsize::new(0),
            invocations: AtomicUsize::new(0),
            busy_us: AtomicU64::new(0),
            memory_mb,
        }))
    }

    /// One invocation; an error (the function's, a dead process's, or no
    /// answer in time) fails it as a whole.
    pub async fn invoke(&self, payload: Vec<u8>) -> Outcome {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(INVOKE_TIMEOUT, self.emulator.invoke(payload)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(bytes::Bytes::from_static(br#"{"errorType":"Sandbox.Timedout"}"#)),
        };
        if outcome.is_err() {
            self.failed_invocations.fetch_add(1, Ordering::Relaxed);
        }
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.busy_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        outcome
    }

    /// SIGKILL, `downtime` without a process (a cold start), then a new one.
    pub async fn kill_and_restart(&self, downtime: Duration) -> Result<()> {
        let mut child = self.child.lock().await;
        child.kill().await.context("SIGKILL")?;
        self.kills.fetch_add(1, Ordering::Relaxed);
        self.abandoned
            .fetch_add(self.emulator.abandon_in_flight(), Ordering::Relaxed);
        tokio::time::sleep(downtime).await;
        *child = spawn(&self.emulator, &self.name, &self.binary, &self.env)?;
        Ok(())
    }

    pub async fn stop(&self) {
        let _ = self.child.lock().await.kill().await;
    }
}

/// Where the functions' logs go: `MORAG_SOAK_LOGS` (a directory; one
/// file per process, appended across restarts), or nowhere.
fn spawn(
    emulator: &RuntimeEmulator,
    name: &str,
    binary: &std::path::Path,
    env: &[(String, String)],
) -> std::io::Result<Child> {
    let log = match std::env::var_os("MORAG_SOAK_LOGS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::path::Path::new(&dir).join(format!("{name}.log")))?;
            std::process::Stdio::from(file)
        }
        None => std::process::Stdio::null(),
    };
    emulator.spawn_logging(binary, env, log)
}

fn fail_all(event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = record.message_id.clone().unwrap_or_default();
        response.batch_item_failures.push(failure);
    }
    response
}

/// What the event-source mapping saw of each status event (by `event_id`,
/// all copies together): when it was first handed to a function, and when a
/// function last acknowledged it (the mapping then deletes it).
#[derive(Default)]
pub struct Seen {
    by_event: Mutex<HashMap<String, (Instant, Option<Instant>)>>,
}

impl Seen {
    fn handed(&self, event: &SqsEvent, at: Instant) {
        let mut by_event = self.by_event.lock().unwrap();
        for id in event.records.iter().filter_map(event_id) {
            by_event.entry(id).or_insert((at, None));
        }
    }

    fn acknowledged(&self, event: &SqsEvent, response: &SqsBatchResponse, at: Instant) {
        let mut by_event = self.by_event.lock().unwrap();
        for record in &event.records {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(&f.item_identifier) == record.message_id.as_ref());
            if let (false, Some(id)) = (failed, event_id(record)) {
                by_event.entry(id).or_insert((at, None)).1 = Some(at);
            }
        }
    }

    pub fn snapshot(&self) -> HashMap<String, (Instant, Option<Instant>)> {
        self.by_event.lock().unwrap().clone()
    }
}

fn event_id(record: &aws_lambda_events::event::sqs::SqsMessage) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(record.body.as_deref()?).ok()?;
    body["event_id"].as_str().map(str::to_owned)
}

/// The local event-source mapping: receives batches from `queue_url` and
/// invokes `function` with each until `stop` is set, telling `seen` what it
/// handed over and what came back acknowledged.
pub async fn pump(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    batch_size: i32,
    function: Arc<Supervised>,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    while !stop.load(Ordering::Relaxed) {
        let polled = morag_cli::esm::poll_once(&sqs, &queue_url, batch_size, Duration::from_secs(1), |event| {
            let (function, seen) = (function.clone(), seen.clone());
            async move {
                seen.handed(&event, Instant::now());
                let payload = serde_json::to_vec(&event).expect("SQS event as JSON");
                let response = match function.invoke(payload).await {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| fail_all(&event)),
                    Err(_) => fail_all(&event),
                };
                seen.acknowledged(&event, &response, Instant::now());
                response
            }
        })
        .await;
        if let Err(e) = polled {
            tracing::warn!(function = %function.name, error = %format!("{e:#}"), "poll failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
