//! Endpoint fan-out: what one status event costs when its tenant has 1, 10,
//! 40 and 100 endpoints (the per-tenant cap), and how fast the sender delivers
//! the deliveries it plans. The recorder and the sender run in process over
//! moto (its meter counts requests and DynamoDB units when the section runs
//! with `MORAG_METER=1`, as `make bench` starts it); every endpoint points
//! at one receiver on 127.0.0.1.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use morag_cli::stack;
use morag_shared::config::{RecorderConfig, SenderConfig};
use morag_shared::domain::{Endpoint, TaskId, WebhookEvent};
use morag_shared::ports::{EndpointStore, TaskStore};
use morag_tests::receiver::TestReceiver;
use morag_tests::soak::cost::{self, prices, Metered};

/// Tasks per row; each reports started, one progress and completed. The
/// 100-endpoint row runs `TASKS_AT_100` (on moto it is minutes per task).
const TASKS: usize = 10;
const TASKS_AT_100: usize = 4;
const EVENTS_PER_TASK: usize = 3;

/// Polls `queue_url` through `handler` until it is empty; how long it took.
async fn drain<F, Fut>(sqs: &aws_sdk_sqs::Client, queue_url: &str, handler: F) -> Result<Duration>
where
    F: Fn(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    let started = Instant::now();
    let mut idle = 0;
    while idle < 2 {
        let polled = morag_cli::esm::poll_once(sqs, queue_url, 10, Duration::from_millis(200), &handler).await?;
        if polled.failed > 0 {
            bail!("{} records failed their batch", polled.failed);
        }
        idle = if polled.received == 0 { idle + 1 } else { 0 };
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the queue did not drain in 10 minutes");
        }
    }
    Ok(started.elapsed())
}

fn sum(m: &std::collections::BTreeMap<String, f64>) -> f64 {
    m.values().sum()
}

fn requests_of(m: &Metered, service: &str) -> f64 {
    m.requests
        .iter()
        .filter(|(op, _)| op.starts_with(service) && !op.contains("(empty)") && !op.contains("GetQueueAttributes"))
        .map(|(_, n)| n)
        .sum()
}

pub async fn run(endpoint: &str) -> Result<Vec<String>> {
    let metering = cost::reset(endpoint).await?;
    let deployed = morag_tests::deploy(endpoint).await?;
    let overrides = stack::local_overrides(endpoint, true);
    let recorder_cfg: RecorderConfig = deployed.stack.config(stack::RECORDER, &overrides)?;
    // moto's 100-item transactions take seconds once its table grows: the
    // functions' 10 s call timeout would fail records the service would not
    let sdk = morag_tests::patient(&deployed.sdk);
    let recorder = morag_recorder::wiring::build(&sdk, &recorder_cfg);
    let sender_cfg: SenderConfig = deployed.stack.config(stack::WEBHOOK_SENDER, &overrides)?;
    let sender = morag_webhook_sender::wiring::build(&sdk, &sender_cfg)?;
    let sqs = morag_shared::adapters::aws::sqs(&deployed.sdk);
    let queues = &deployed.resources;
    let receiver = TestReceiver::always(204).await;
    let store = deployed.store.clone();

    let mut report = vec![
        "## Endpoint fan-out".to_owned(),
        String::new(),
        format!(
            "{TASKS} tasks per row ({TASKS_AT_100} at 100 endpoints), each reporting started, one progress and \
             completed ({} events at 10 tasks); every endpoint subscribes to every task event. Recorder and sender in process over moto, one poller \
             each (batches of 10; on AWS the event source runs several); the figures are per status event. \
             DynamoDB units and SQS requests from the emulator's meter{}.",
            TASKS * EVENTS_PER_TASK,
            if metering { "" } else { " (not running: start moto with MORAG_METER=1)" }
        ),
        String::new(),
        "| endpoints | deliveries planned | recorder (ms/event) | DynamoDB write units/event | SQS requests/event (recorder) | sent | superseded | sender (deliveries/s) | sender DynamoDB units/delivery (read + write) | USD per million events (recorder's DynamoDB + SQS) |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    // MORAG_BENCH_ENDPOINTS=100 runs one row (moto slows as its table grows)
    let rows: Vec<usize> = match std::env::var("MORAG_BENCH_ENDPOINTS") {
        Ok(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        Err(_) => vec![1, 10, 40, 100],
    };
    for n in rows {
        let tasks = if n >= 100 { TASKS_AT_100 } else { TASKS };
        let tenant: morag_shared::domain::TenantId = format!("fan{n}").parse()?;
        let now = morag_shared::time::now();
        for _ in 0..n {
            store
                .create_endpoint(&Endpoint::new(
                    tenant.clone(),
                    receiver.url(),
                    WebhookEvent::ALL.to_vec(),
                    now,
                ))
                .await?;
        }
        let mut bodies = Vec::new();
        for _ in 0..tasks {
            let id = TaskId::new().to_string();
            store
                .create_task(&morag_tests::sample_task(&id, tenant.as_str()), None)
                .await?;
            let at = morag_shared::time::now() - chrono::Duration::seconds(60);
            let ms = chrono::Duration::milliseconds;
            bodies.push(morag_tests::status_event(&id, "s", "started", None, at));
            bodies.push(morag_tests::status_event(&id, "p", "progress", Some(0.5), at + ms(1)));
            bodies.push(morag_tests::status_event(&id, "c", "completed", None, at + ms(2)));
        }
        for body in &bodies {
            sqs.send_message()
                .queue_url(&queues.status_events_queue_url)
                .message_body(body)
                .send()
                .await?;
        }
        let events = bodies.len() as f64;
        cost::reset(endpoint).await?;
        eprintln!("endpoints {n}: recording {} events", bodies.len());
        let recording = drain(&sqs, &queues.status_events_queue_url, |e| recorder.handle(e)).await?;
        eprintln!("endpoints {n}: recorded in {recording:?}; sending");
        let recorded = cost::read(endpoint).await?.unwrap_or_default();
        let before = receiver.received().len();
        cost::reset(endpoint).await?;
        let sending = drain(&sqs, &queues.webhook_queue_url, |e| sender.handle(e)).await?;
        let sent_metered = cost::read(endpoint).await?.unwrap_or_default();
        let sent = receiver.received().len() - before;
        eprintln!("endpoints {n}: {sent} sent in {sending:?}");
        let planned = tasks * EVENTS_PER_TASK * n;
        let write_units = sum(&recorded.write_units) / events;
        let sqs_requests = requests_of(&recorded, "sqs.") / events;
        let usd = (sum(&recorded.write_units) * prices::DYNAMODB_WRITE_UNIT
            + sum(&recorded.read_units) * prices::DYNAMODB_READ_UNIT
            + requests_of(&recorded, "sqs.") * prices::SQS_REQUEST)
            / events
            * 1e6;
        let sender_units = (sum(&sent_metered.read_units) + sum(&sent_metered.write_units)) / planned as f64;
        report.push(format!(
            "| {n} | {planned} | {:.1} | {write_units:.1} | {sqs_requests:.1} | {sent} | {} | {:.0} | {sender_units:.1} | {usd:.2} |",
            recording.as_secs_f64() * 1000.0 / events,
            planned - sent,
            planned as f64 / sending.as_secs_f64(),
        ));
        if sent < tasks * 2 * n {
            bail!("{n} endpoints: {sent} webhooks arrived, fewer than every started and completed");
        }
    }
    report.push(String::new());
    report.push(
        "Superseded: progress that the task's completion overtook before it was sent (every event is \
         recorded before the sender runs here). With 100 endpoints an event's deliveries exceed one \
         transaction: they are written in a second stage (fan-out markers expanded right after)."
            .to_owned(),
    );
    report.push(String::new());
    Ok(report)
}
