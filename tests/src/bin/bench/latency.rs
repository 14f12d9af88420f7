//! Status event → webhook latency on the local stack: the release recorder
//! and sender (two processes each, behind the Runtime API emulator and local
//! event-source mappings, as `make soak` runs them), from a pipeline's
//! SendMessage to the webhook's arrival at a receiver on 127.0.0.1; idle (one
//! event at a time) and under a burst of 100 documents reporting at once.
//! And the timeline's long-poll: from the status event's SendMessage to the
//! answer of a `wait=20` request already waiting in the release status
//! binary (behind the Runtime API emulator).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use morag_cli::stack;
use morag_shared::domain::delivery::WebhookEvent;
use morag_shared::domain::{DeliveryId, TaskId};
use morag_shared::ports::{SecretStore, TaskStore};
use morag_tests::receiver::TestReceiver;
use morag_tests::runtime::RuntimeEmulator;
use morag_tests::soak::functions::{pump, Seen, Supervised};

use super::{ms, percentile, release_binary};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const IDLE_SAMPLES: usize = 30;
const LONG_POLL_SAMPLES: usize = 50;
const BURST_DOCUMENTS: usize = 100;

/// A document's events as a pipeline reports them, and the webhook each
/// one triggers (`started`, the 25/50/75 % milestones, `completed`).
const EVENTS: [(&str, Option<f64>, WebhookEvent, &str); 5] = [
    ("started", None, WebhookEvent::TaskStarted, "once"),
    ("progress", Some(0.3), WebhookEvent::TaskProgress, "25"),
    ("progress", Some(0.6), WebhookEvent::TaskProgress, "50"),
    ("progress", Some(0.8), WebhookEvent::TaskProgress, "75"),
    ("completed", None, WebhookEvent::TaskCompleted, "once"),
];

struct Stack {
    deployed: morag_tests::Deployed,
    endpoint: String,
    sqs: aws_sdk_sqs::Client,
    status_queue: String,
    store: Arc<morag_shared::adapters::dynamodb::DynamoStore>,
    receiver: TestReceiver,
    _functions: Vec<Arc<Supervised>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn start(endpoint: &str) -> Result<Stack> {
    let deployed = morag_tests::deploy(endpoint).await?;
    let sqs = morag_shared::adapters::aws::sqs(&deployed.sdk);
    deployed.store.rotate_secret(&"bench".parse()?, SECRET, None).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut functions = Vec::new();
    for (binary, logical_id, queue) in [
        (
            "morag-recorder",
            stack::RECORDER,
            &deployed.resources.status_events_queue_url,
        ),
        (
            "morag-webhook-sender",
            stack::WEBHOOK_SENDER,
            &deployed.resources.webhook_queue_url,
        ),
    ] {
        for i in 0..2 {
            let f = Supervised::start(
                format!("{binary}-{i}"),
                release_binary(binary)?,
                deployed.function_env(logical_id, endpoint)?,
                deployed.stack.function(logical_id)?.memory_mb,
            )
            .await?;
            tokio::spawn(pump(
                sqs.clone(),
                queue.clone(),
                deployed.stack.queue_event(logical_id)?.batch_size,
                f.clone(),
                stop.clone(),
                Arc::new(Seen::default()),
            ));
            functions.push(f);
        }
    }
    Ok(Stack {
        endpoint: endpoint.to_owned(),
        sqs,
        status_queue: deployed.resources.status_events_queue_url.clone(),
        store: deployed.store.clone(),
        receiver: TestReceiver::always(200).await,
        _functions: functions,
        stop,
        deployed,
    })
}

impl Stack {
    async fn task(&self) -> Result<TaskId> {
        let id = TaskId::new();
        let mut task = morag_tests::sample_task(&id.to_string(), "bench");
        task.webhook_url = Some(self.receiver.url());
        self.store.create_task(&task, None).await?;
        Ok(id)
    }

    /// Sends event `i` of `task`; answers the delivery it should trigger and when it was sent.
    async fn send(&self, task: TaskId, i: usize) -> Result<(String, Instant)> {
        let (status, progress, webhook, discriminator) = EVENTS[i];
        let body = morag_tests::status_event(
            &task.to_string(),
            &format!("lat-{task}-{i}"),
            status,
            progress,
            morag_shared::time::now(),
        );
        let sent = Instant::now();
        self.sqs
            .send_message()
            .queue_url(&self.status_queue)
            .message_body(body)
            .send()
            .await?;
        Ok((
            DeliveryId::derive(&task, webhook, discriminator).as_str().to_owned(),
            sent,
        ))
    }

    /// Waits until every delivery in `sent` has arrived; their latencies.
    async fn latencies(&self, sent: &HashMap<String, Instant>, timeout: Duration) -> Result<Vec<Duration>> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived: HashMap<String, Instant> = self
                .receiver
                .received()
                .into_iter()
                .map(|r| (r.header("webhook-id").to_owned(), r.at))
                .collect();
            if sent.keys().all(|id| arrived.contains_key(id)) {
                let mut out: Vec<Duration> = sent.iter().map(|(id, at)| arrived[id].duration_since(*at)).collect();
                out.sort();
                return Ok(out);
            }
            if Instant::now() > deadline {
                let missing = sent.keys().filter(|id| !arrived.contains_key(*id)).count();
                bail!("{missing} of {} webhooks did not arrive in {timeout:?}", sent.len());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The timeline request for `task`, after `after`, waiting up to 20 s.
fn timeline_event(key: &str, task: &TaskId) -> Result<String> {
    let fixture = include_str!("../../../../events/status-timeline.json");
    let mut event = super::task_route_event(fixture, key, &task.to_string(), "/timeline")?;
    event["rawQueryString"] = "after=0&wait=20".into();
    event["queryStringParameters"] = serde_json::json!({"after": "0", "wait": "20"});
    Ok(event.to_string())
}

/// From a status event's SendMessage to the answer of a long-poll that was
/// waiting for it, each sample on a fresh task; the event is sent at a
/// different point of the poll cycle each time.
async fn long_poll(stack: &Stack) -> Result<Vec<Duration>> {
    let (key, _) = morag_cli::keys::create(stack.store.as_ref(), &"bench".parse()?, "long-poll").await?;
    let emulator = Arc::new(RuntimeEmulator::start().await);
    let mut child = emulator.spawn(
        &release_binary("morag-status")?,
        &stack.deployed.function_env(stack::STATUS, &stack.endpoint)?,
    )?;
    emulator
        .wait_ready(Duration::from_secs(10))
        .await
        .ok_or_else(|| anyhow::anyhow!("status never ready"))?;
    let mut samples = Vec::new();
    for n in 0..LONG_POLL_SAMPLES + 3 {
        let task = stack.task().await?;
        let waiting = {
            let (emulator, event) = (emulator.clone(), timeline_event(&key, &task)?);
            tokio::spawn(async move {
                let out = emulator.invoke(event).await;
                (out, Instant::now())
            })
        };
        // somewhere in the 250/500 ms poll cycle
        tokio::time::sleep(Duration::from_millis(300 + (n as u64 * 97) % 700)).await;
        let (_, sent) = stack.send(task, 0).await?;
        let (out, answered) = waiting.await?;
        let out = out.map_err(|e| anyhow::anyhow!("invocation error: {e:?}"))?;
        let response: serde_json::Value = serde_json::from_slice(&out)?;
        let body: serde_json::Value = serde_json::from_str(response["body"].as_str().unwrap_or("null"))?;
        if body["entries"][0]["status"] != "started" {
            bail!("the long-poll answered without the event: {response}");
        }
        if n >= 3 {
            samples.push(answered.duration_since(sent));
        }
    }
    // before the emulator goes (its runtime loop would report the lost API)
    child.kill().await?;
    samples.sort();
    Ok(samples)
}

pub async fn run(endpoint: &str) -> Result<Vec<String>> {
    let stack = start(endpoint).await?;
    // idle: one event at a time, nothing else in flight
    let mut idle = Vec::new();
    for n in 0..IDLE_SAMPLES + 3 {
        let task = stack.task().await?;
        let (id, at) = stack.send(task, 0).await?;
        let latency = stack
            .latencies(&HashMap::from([(id, at)]), Duration::from_secs(30))
            .await?;
        if n >= 3 {
            idle.extend(latency); // the first three warm the processes up
        }
    }
    idle.sort();
    let polled = long_poll(&stack).await?;

    // burst: 100 documents report their five events each, interleaved, at once
    let mut tasks = Vec::new();
    for _ in 0..BURST_DOCUMENTS {
        tasks.push(stack.task().await?);
    }
    let started = Instant::now();
    let mut sent = HashMap::new();
    for i in 0..EVENTS.len() {
        let sends = tasks.iter().map(|t| stack.send(*t, i));
        for result in futures_util::future::join_all(sends).await {
            let (id, at) = result?;
            sent.insert(id, at);
        }
    }
    let send_time = started.elapsed();
    let burst = stack.latencies(&sent, Duration::from_secs(300)).await?;
    let drained = started.elapsed();

    let row = |name: String, v: &[Duration]| {
        format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} |",
            v.len(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().expect("samples"))
        )
    };
    Ok(vec![
        "## Status event → webhook latency (local stack)".to_owned(),
        String::new(),
        "From the pipeline's SendMessage to the webhook's arrival at a receiver on 127.0.0.1: release recorder and sender, two processes each, behind the Runtime API emulator and local event-source mappings, DynamoDB and SQS on moto.".to_owned(),
        String::new(),
        "| load | webhooks | p50 ms | p99 ms | max ms |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
        row("idle: one `started` event at a time".to_owned(), &idle),
        row(
            format!(
                "burst: {BURST_DOCUMENTS} documents × 5 events sent in {:.1} s (all delivered {:.1} s after the first)",
                send_time.as_secs_f64(),
                drained.as_secs_f64()
            ),
            &burst,
        ),
        String::new(),
        "## Status event → timeline long-poll answer (local stack)".to_owned(),
        String::new(),
        format!("From the status event's SendMessage to the answer of a `GET .../timeline?after=0&wait=20` already waiting in the release status binary (Runtime API emulator), {LONG_POLL_SAMPLES} fresh tasks, the event sent 300–1000 ms into the wait (all phases of the 250/500 ms poll cycle). It includes the recorder's SQS pickup and write, as the webhook figures above do."),
        String::new(),
        "| | answers | p50 ms | p99 ms | max ms |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
        row("long-poll answer".to_owned(), &polled),
        String::new(),
    ])
}
