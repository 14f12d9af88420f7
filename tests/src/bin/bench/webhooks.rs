//! Webhook benchmarks: deliveries per second through the sender's handler
//! versus a bare reqwest loop at the same concurrency to the same receiver,
//! per-delivery added latency, and the release binary's peak RSS while
//! sending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use futures_util::future::join_all;

use morag_shared::adapters::memory::{MemoryDeadLetters, MemorySecretStore, MemoryTaskStore, MemoryVisibility};
use morag_shared::domain::delivery::{Signer, SigningSecret, WebhookEvent, USER_AGENT};
use morag_shared::domain::{Delivery, DeliveryMessage, DeliveryState, Retention};
use morag_shared::domain::{HistoryEntry, TaskId, TaskStatus};
use morag_shared::outbound::TargetPolicy;
use morag_shared::ports::{SecretStore, TaskStore};
use morag_tests::receiver::TestReceiver;
use morag_tests::runtime::{peak_rss_kib, RuntimeEmulator};

use super::{ms, percentile, release_binary};

const LOCAL: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_loopback: true,
};
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const BATCHES: usize = 100;
const PAYLOAD: &str = r#"{"event_type":"task_progress","timestamp":"2026-11-29T20:00:00.000Z","data":{"task_id":"0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b","status":"progress","message":"Chunked 3 of 6","progress":0.5,"metadata":{"project":"docs"}}}"#;

fn delivery(task_id: TaskId, i: usize, url: &str) -> Delivery {
    Delivery {
        task_id,
        tenant: "bench".parse().expect("tenant"),
        delivery_id: format!("msg_{i:024}").parse().expect("delivery id"),
        event_type: WebhookEvent::TaskProgress,
        url: url.to_owned(),
        payload: PAYLOAD.to_owned(),
        // many deliveries of one task here: without a sequence none is
        // checked for being overtaken (a real task has a handful)
        sequence: 0,
        endpoint_id: None,
        state: DeliveryState::Pending,
        created_at: morag_shared::time::now(),
        enqueued: true,
        cycle: 0,
        attempts: Vec::new(),
        attempts_total: 0,
    }
}

fn batch(deliveries: &[Delivery]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = deliveries
        .iter()
        .map(|d| {
            let mut m = SqsMessage::default();
            m.message_id = Some(d.delivery_id.to_string());
            m.receipt_handle = Some(format!("r-{}", d.delivery_id));
            m.body = Some(
                serde_json::to_string(&DeliveryMessage {
                    task_id: d.task_id,
                    delivery_id: d.delivery_id.clone(),
                    cycle: 0,
                    slot: None,
                })
                .expect("message"),
            );
            m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
            m
        })
        .collect();
    event
}

/// (deliveries per second, per-batch durations) through the handler, memory stores.
async fn handler_run(receiver: &TestReceiver) -> Result<(f64, Vec<Duration>)> {
    let store = Arc::new(MemoryTaskStore::default());
    let secrets = Arc::new(MemorySecretStore::default());
    secrets.rotate_secret(&"bench".parse()?, SECRET, None).await?;
    let task = TaskId::new();
    let all: Vec<Delivery> = (0..BATCHES * 10).map(|i| delivery(task, i, &receiver.url())).collect();
    for d in &all {
        store
            .deliveries
            .lock()
            .expect("lock")
            .insert(d.delivery_id.clone(), d.clone());
    }
    let sender = morag_webhook_sender::Sender::new(
        morag_webhook_sender::SenderPorts {
            deliveries: store.clone(),
            endpoints: store.clone(),
            webhooks: Arc::new(morag_shared::adapters::memory::MemoryWebhookQueue::default()),
            secrets,
            visibility: Arc::new(MemoryVisibility::default()),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
        },
        morag_shared::outbound::client(
            LOCAL,
            morag_shared::outbound::system_lookup(),
            Duration::from_secs(5),
            Duration::from_secs(15),
            USER_AGENT,
        )?,
        morag_webhook_sender::SenderSettings {
            schedule: Default::default(),
            policy: LOCAL,
            endpoint_failure_window: morag_shared::domain::endpoint::DEFAULT_FAILURE_WINDOW,
            probe_lease: Duration::from_secs(30),
            history_ttl: Duration::from_secs(86_400),
        },
    );
    let mut times = Vec::new();
    let started = Instant::now();
    for chunk in all.chunks(10) {
        let t = Instant::now();
        let res = sender.handle(batch(chunk)).await;
        if !res.batch_item_failures.is_empty() {
            bail!("sender failed {} deliveries", res.batch_item_failures.len());
        }
        times.push(t.elapsed());
    }
    let rate = (BATCHES * 10) as f64 / started.elapsed().as_secs_f64();
    let recorded = store
        .deliveries
        .lock()
        .expect("lock")
        .values()
        .filter(|d| d.attempts.len() == 1)
        .count();
    if recorded != BATCHES * 10 {
        bail!("only {recorded} attempts recorded");
    }
    Ok((rate, times))
}

/// The same POSTs (signed, same headers) with a bare reqwest client, 10 at a time.
async fn bare_run(receiver: &TestReceiver) -> Result<(f64, Vec<Duration>)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let signer = Signer::new(
        vec![SigningSecret::parse(SECRET).map_err(anyhow::Error::msg)?],
        Vec::new(),
    );
    let mut times = Vec::new();
    let started = Instant::now();
    for b in 0..BATCHES {
        let t = Instant::now();
        let sends = (0..10).map(|i| {
            let id = format!("msg_{:024}", b * 10 + i);
            let ts = morag_shared::time::now().timestamp();
            client
                .post(receiver.url())
                .header("content-type", "application/json")
                .header("user-agent", USER_AGENT)
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signer.sign(&id, ts, PAYLOAD.as_bytes()).signature)
                .body(PAYLOAD)
                .send()
        });
        for r in join_all(sends).await {
            let r = r?;
            if !r.status().is_success() {
                bail!("receiver answered {}", r.status());
            }
            r.bytes().await?;
        }
        times.push(t.elapsed());
    }
    Ok(((BATCHES * 10) as f64 / started.elapsed().as_secs_f64(), times))
}

/// The release binary against moto: deliveries per second with attempt
/// logging in DynamoDB, and its peak RSS.
async fn binary_run(endpoint: &str, receiver: &TestReceiver) -> Result<(f64, f64)> {
    let deployed = morag_tests::deploy(endpoint).await?;
    let store = deployed.store.clone();
    store.rotate_secret(&"bench".parse()?, SECRET, None).await?;
    let retention = Retention {
        history: Duration::from_secs(86_400),
        ended_task: Duration::from_secs(86_400),
    };
    let mut all = Vec::new();
    for t in 0..10 {
        let task = morag_tests::sample_task(&TaskId::new().to_string(), "bench");
        store.create_task(&task, None).await?;
        let mut after = task.clone();
        after.event_seq = 1;
        let entry = HistoryEntry {
            seq: 1,
            event_id: "e".into(),
            timestamp: morag_shared::time::now(),
            status: TaskStatus::Progress,
            progress: 0.5,
            message: "m".into(),
            metadata: Default::default(),
        };
        let deliveries: Vec<Delivery> = (0..50)
            .map(|i| delivery(task.task_id, t * 50 + i, &receiver.url()))
            .collect();
        store
            .apply_event(&task, &after, &entry, &deliveries, &retention)
            .await?;
        all.extend(deliveries);
    }
    let env = deployed.function_env(morag_cli::stack::WEBHOOK_SENDER, endpoint)?;
    let emulator = RuntimeEmulator::start().await;
    let child = emulator.spawn(&release_binary("morag-webhook-sender")?, &env)?;
    emulator.wait_ready(Duration::from_secs(10)).await;
    let started = Instant::now();
    for chunk in all.chunks(10) {
        let out = emulator
            .invoke(serde_json::to_vec(&batch(chunk))?)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let v: serde_json::Value = serde_json::from_slice(&out)?;
        if v["batchItemFailures"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!("binary reported failures: {v}");
        }
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    let rss = peak_rss_kib(child.id().unwrap_or(0)).unwrap_or(0) as f64 / 1024.0;
    drop(child);
    Ok((rate, rss))
}

pub async fn run(endpoint: &str) -> Result<Vec<String>> {
    let receiver = TestReceiver::always(200).await;
    // warm up both paths, then take the better of two runs each, alternating
    let _ = bare_run(&receiver).await?;
    let _ = handler_run(&receiver).await?;
    let (b1, bt1) = bare_run(&receiver).await?;
    let (h1, ht1) = handler_run(&receiver).await?;
    let (b2, bt2) = bare_run(&receiver).await?;
    let (h2, ht2) = handler_run(&receiver).await?;
    let (bare, mut bare_times) = if b1 >= b2 { (b1, bt1) } else { (b2, bt2) };
    let (handler, mut handler_times) = if h1 >= h2 { (h1, ht1) } else { (h2, ht2) };
    bare_times.sort();
    handler_times.sort();
    let added_p50 = (ms(percentile(&handler_times, 0.5)) - ms(percentile(&bare_times, 0.5))) / 10.0;
    let added_p99 = (ms(percentile(&handler_times, 0.99)) - ms(percentile(&bare_times, 0.99))) / 10.0;
    let (binary_rate, rss) = binary_run(endpoint, &receiver).await?;

    let ratio = handler / bare;
    Ok(vec![
        "## Webhooks".to_owned(),
        String::new(),
        format!("| {} deliveries, batches of 10 (concurrent within a batch), local receiver answering 200 | deliveries/s | ratio |", BATCHES * 10),
        "|---|---|---|".into(),
        format!("| bare reqwest, same signed requests, 10 at a time | {bare:.0} | 1.00 |"),
        format!("| sender handler (signing, pinned client, attempt logging in the in-memory store) | {handler:.0} | {ratio:.2} |"),
        format!("| release binary through the Runtime API emulator, attempt logging in DynamoDB on moto | {binary_rate:.0} | {:.2} |", binary_rate / bare),
        String::new(),
        format!("Added latency per delivery (handler batch time minus bare batch time, per delivery): median {added_p50:.3} ms, p99 {added_p99:.3} ms."),
        format!("Peak RSS of morag-webhook-sender after {} deliveries: {rss:.1} MB.", BATCHES * 10 / 2),
        String::new(),
        "Targets:".into(),
        String::new(),
        format!("- sender handler / bare reqwest >= 0.7 ({ratio:.2}): {}", if ratio >= 0.7 { "met" } else { "MISSED" }),
        String::new(),
    ])
}
