//! Lifecycle benchmarks: recent-events cost against table size, and
//! recorder throughput against bare transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tower::ServiceExt;

use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::config::RecorderConfig;
use morag_shared::config::SecretString;
use morag_shared::domain::{decide, Decision, EventStatus, HistoryEntry, StatusEvent, Task, TaskId, TaskStatus};
use morag_shared::http::cursor::CursorCodec;
use morag_shared::http::Authenticator;
use morag_shared::ports::TaskStore;

use super::{ms, percentile};

fn entries(n: u64, now: chrono::DateTime<chrono::Utc>) -> Vec<HistoryEntry> {
    // spread over the last 20 hours, newest last
    (1..=n)
        .map(|seq| HistoryEntry {
            seq,
            event_id: format!("e{seq}"),
            timestamp: now - chrono::Duration::seconds(((n - seq) * 72_000 / n) as i64),
            status: TaskStatus::Progress,
            progress: seq as f64 / n as f64,
            message: "working".to_owned(),
            metadata: Map::new(),
        })
        .collect()
}

async fn seed(store: &DynamoStore, tenants: &[String], now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    let expires = (now + chrono::Duration::days(7)).timestamp();
    for tenant in tenants {
        for _ in 0..10 {
            let task = morag_tests::sample_task(&TaskId::new().to_string(), tenant);
            store.load_history(&task, &entries(100, now), expires).await?;
        }
    }
    Ok(())
}

struct RecentRun {
    median: Duration,
    p99: Duration,
    /// One bare SDK Query of GSI1 (the newest bucket, limit 100), same table.
    bare_query: Duration,
    scanned_per_request: f64,
    events: usize,
}

async fn recent(endpoint: &str, other_tenants: usize) -> Result<RecentRun> {
    let morag_tests::Deployed {
        sdk, resources, store, ..
    } = morag_tests::deploy(endpoint).await?;
    let names = resources.names.clone();
    let (key, _) = morag_cli::keys::create(store.as_ref(), &"bench".parse()?, "bench").await?;
    let now = morag_shared::time::now();
    let mut tenants = vec!["bench".to_owned()];
    tenants.extend((0..other_tenants).map(|i| format!("other-{i}")));
    seed(&store, &tenants, now).await?;
    let status = morag_status::router(Arc::new(morag_status::Status {
        tasks: store.clone(),
        deliveries: store.clone(),
        webhooks: Arc::new(morag_shared::adapters::memory::MemoryWebhookQueue::default()),
        secrets: store.clone(),
        endpoints: store.clone(),
        target_policy: Default::default(),
        auth: Arc::new(Authenticator::new(store.clone(), Duration::from_secs(600))),
        cursors: CursorCodec::new(SecretString::from("bench-cursor-secret-0123456789abcdef".to_owned())),
    }));
    let request = || {
        http::Request::get("/api/v1/status/events/recent?hours=24&limit=100")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request")
    };
    let mut events = 0;
    for _ in 0..3 {
        let res = status.clone().oneshot(request()).await?;
        let body: Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
        events = body["count"].as_u64().unwrap_or(0) as usize;
    }
    let before = store.items_scanned();
    let mut samples = Vec::new();
    const N: usize = 30;
    for _ in 0..N {
        let started = Instant::now();
        let res = status.clone().oneshot(request()).await?;
        if res.status() != 200 {
            bail!("recent events answered {}", res.status());
        }
        res.into_body().collect().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let ddb = morag_shared::adapters::aws::dynamodb(&sdk);
    let mut bare = Vec::new();
    for _ in 0..N {
        let started = Instant::now();
        ddb.query()
            .table_name(&names.table)
            .index_name("GSI1")
            .key_condition_expression("gsi1pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!(
                    "RECENT#bench#{}",
                    morag_shared::time::hour_bucket(now)
                )),
            )
            .scan_index_forward(false)
            .limit(100)
            .send()
            .await?;
        bare.push(started.elapsed());
    }
    bare.sort();
    // moto copies every table on each transaction: drop the big one before
    // the recorder is measured
    morag_shared::adapters::aws::dynamodb(&sdk)
        .delete_table()
        .table_name(&names.table)
        .send()
        .await?;
    Ok(RecentRun {
        bare_query: percentile(&bare, 0.5),
        median: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        scanned_per_request: (store.items_scanned() - before) as f64 / N as f64,
        events,
    })
}

fn record(id: usize, event: &StatusEvent) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(format!("m{id}"));
    m.body = Some(serde_json::to_string(event).expect("event"));
    m
}

fn events_for(task: &Task, n: usize, t0: chrono::DateTime<chrono::Utc>) -> Vec<StatusEvent> {
    (0..n)
        .map(|i| StatusEvent {
            event_id: format!("{}-{i}", task.task_id),
            task_id: task.task_id,
            status: if i == 0 {
                EventStatus::Started
            } else {
                EventStatus::Progress
            },
            progress: (i > 0).then(|| i as f64 / n as f64),
            message: Some("working".to_owned()),
            result: None,
            error: None,
            metadata: None,
            occurred_at: t0 + chrono::Duration::milliseconds(i as i64),
        })
        .collect()
}

/// A fresh stack with `tasks` pending tasks and `filler` finished ones, and
/// the recorder as the stack configures it.
async fn recorder_env(
    endpoint: &str,
    tasks: usize,
    filler: usize,
) -> Result<(Arc<DynamoStore>, morag_recorder::Recorder, Vec<Task>)> {
    let deployed = morag_tests::deploy(endpoint).await?;
    let store = deployed.store.clone();
    morag_tests::fill_finished_tasks(
        &morag_shared::adapters::aws::dynamodb(&deployed.sdk),
        &deployed.resources.names.table,
        filler,
    )
    .await;
    let mut created = Vec::new();
    for _ in 0..tasks {
        let task = morag_tests::sample_task(&TaskId::new().to_string(), "bench");
        store.create_task(&task, None).await?;
        created.push(task);
    }
    let cfg: RecorderConfig = deployed.stack.config(
        morag_cli::stack::RECORDER,
        &morag_cli::stack::local_overrides(endpoint, false),
    )?;
    let recorder = morag_recorder::wiring::build(&deployed.sdk, &cfg);
    Ok((store, recorder, created))
}

/// Events per second through the recorder's handler, batches of 10, with
/// `filler` finished tasks in the table.
async fn handler_rate(endpoint: &str, events_per_task_per_batch: usize, filler: usize) -> Result<f64> {
    let (_, recorder, tasks) = recorder_env(endpoint, 100, filler).await?;
    let t0 = morag_shared::time::now() - chrono::Duration::minutes(5);
    let per_task: Vec<Vec<StatusEvent>> = tasks.iter().map(|t| events_for(t, 10, t0)).collect();
    let mut batches: Vec<SqsEvent> = Vec::new();
    let mut n = 0;
    if events_per_task_per_batch == 10 {
        for events in &per_task {
            let mut b = SqsEvent::default();
            b.records = events
                .iter()
                .map(|e| {
                    n += 1;
                    record(n, e)
                })
                .collect();
            batches.push(b);
        }
    } else {
        // round robin: each batch has one event of ten different tasks
        for round in 0..10 {
            for group in per_task.chunks(10) {
                let mut b = SqsEvent::default();
                b.records = group
                    .iter()
                    .map(|events| {
                        n += 1;
                        record(n, &events[round])
                    })
                    .collect();
                batches.push(b);
            }
        }
    }
    let started = Instant::now();
    let mut applied = 0;
    for b in batches {
        let (mut res, mut stats) = recorder.handle_with_stats(b.clone()).await;
        // as SQS would: give failed records (an emulator timeout) back, up to 3 times
        for _ in 0..3 {
            if res.batch_item_failures.is_empty() {
                break;
            }
            let failed: Vec<&str> = res
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            let mut retry = SqsEvent::default();
            retry.records = b
                .records
                .iter()
                .filter(|r| r.message_id.as_deref().is_some_and(|id| failed.contains(&id)))
                .cloned()
                .collect();
            applied += stats.applied + stats.duplicate;
            (res, stats) = recorder.handle_with_stats(retry).await;
        }
        if !res.batch_item_failures.is_empty() {
            bail!("recorder failed records: {res:?}");
        }
        // an SDK retry of a transaction that did commit comes back as a
        // duplicate (moto ignores the idempotency token): applied once either way
        applied += stats.applied + stats.duplicate;
    }
    let elapsed = started.elapsed();
    if applied != 1000 {
        bail!("applied {applied} of 1000 events");
    }
    Ok(1000.0 / elapsed.as_secs_f64())
}

/// One TransactWriteItems per event (task put + history put), nothing else.
async fn bare_rate(endpoint: &str) -> Result<f64> {
    let (store, recorder, tasks) = recorder_env(endpoint, 100, 0).await?;
    let t0 = morag_shared::time::now() - chrono::Duration::minutes(5);
    let mut writes = Vec::new();
    for task in &tasks {
        let mut current = task.clone();
        for e in events_for(task, 10, t0) {
            if let Decision::Apply { task: after, entry, .. } = decide(&current, &e) {
                writes.push((current.clone(), (*after).clone(), entry));
                current = *after;
            }
        }
    }
    let started = Instant::now();
    for (before, after, entry) in &writes {
        store
            .apply_event(before, after, entry, &[], &recorder.retention)
            .await?;
    }
    Ok(writes.len() as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(endpoint: &str, with_recent: bool) -> Result<Vec<String>> {
    let mut report = vec!["## Lifecycle".to_owned(), String::new()];
    let mut ratio = 0.0;
    let mut scanned_ratio = 0.0;
    if with_recent {
        let small = recent(endpoint, 0).await?;
        let large = recent(endpoint, 49).await?;
        ratio = ms(large.median) / ms(small.median);
        report.push("| recent events, `hours=24&limit=100`, 30 requests | events answered | median (ms) | p99 (ms) | items DynamoDB evaluated per request |".into());
        report.push("|---|---|---|---|---|".into());
        for (name, r) in [
            ("1,000 history events in the table", &small),
            ("50,000 history events in the table (49 other tenants)", &large),
        ] {
            report.push(format!(
                "| {name} | {} | {:.2} | {:.2} | {:.0} |",
                r.events,
                ms(r.median),
                ms(r.p99),
                r.scanned_per_request
            ));
        }
        scanned_ratio = large.scanned_per_request / small.scanned_per_request;
        report.push(format!(
            "| ratio 50,000 / 1,000 | | {ratio:.2} | | {scanned_ratio:.2} |"
        ));
        report.push(String::new());
        let bare_ratio = ms(large.bare_query) / ms(small.bare_query);
        report.push(format!(
        "A bare SDK Query of one GSI1 bucket (limit 100) on the same tables: {:.2} ms at 1,000, {:.2} ms at 50,000 (ratio {bare_ratio:.2}): moto evaluates a GSI query by walking every item of the table, so its latency grows with the table whatever the query; DynamoDB's does not.",
        ms(small.bare_query),
        ms(large.bare_query)
    ));
        report.push(String::new());
    }

    let bare = bare_rate(endpoint).await?;
    let grouped = handler_rate(endpoint, 10, 0).await?;
    let spread = handler_rate(endpoint, 1, 0).await?;
    // the pace as the table fills: the emulator's transactions must not
    // cost time proportional to the table (the launcher's moto_txn.py)
    let at_1k = handler_rate(endpoint, 1, 1_000).await?;
    let at_50k = handler_rate(endpoint, 1, 50_000).await?;
    let pace = at_1k / at_50k;
    report.push("| recorder, 1,000 events | events/s | ratio to bare |".into());
    report.push("|---|---|---|".into());
    report.push(format!(
        "| bare: one TransactWriteItems per event (task + history), sequential | {bare:.0} | 1.00 |"
    ));
    report.push(format!(
        "| handler, batches of 10 events of one task | {grouped:.0} | {:.2} |",
        grouped / bare
    ));
    report.push(format!(
        "| handler, batches of 10 tasks with one event each | {spread:.0} | {:.2} |",
        spread / bare
    ));
    report.push(format!(
        "| handler, batches of 10 tasks, 1,000 finished tasks in the table | {at_1k:.0} | |"
    ));
    report.push(format!(
        "| handler, batches of 10 tasks, 50,000 finished tasks in the table | {at_50k:.0} | |"
    ));
    report.push(String::new());
    report.push("Targets:".into());
    report.push(String::new());
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    if with_recent {
        report.push(format!(
            "- recent events latency 50k/1k <= 1.5 ({ratio:.2}): {}",
            met(ratio <= 1.5)
        ));
        report.push(format!(
            "- recent events items evaluated 50k/1k <= 1.5 ({scanned_ratio:.2}): {}",
            met(scanned_ratio <= 1.5)
        ));
    }
    report.push(format!(
        "- recorder handler/bare >= 0.7 (one task per batch {:.2}, ten tasks per batch {:.2}): {}",
        grouped / bare,
        spread / bare,
        met(grouped / bare >= 0.7 && spread / bare >= 0.7)
    ));
    report.push(format!(
        "- recorder pace, 1,000 / 50,000 items in the table <= 2 ({pace:.2}): {}",
        met(pace <= 2.0)
    ));
    Ok(report)
}
