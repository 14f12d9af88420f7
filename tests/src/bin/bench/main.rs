//! `make bench`: the release binaries, run through the Runtime API emulator
//! against moto server (endpoint in `MORAG_BENCH_ENDPOINT`). Prints figures
//! and ratios as Markdown; docs/BENCHMARKS.md records them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use morag_cli::stack;
use morag_shared::domain::TaskId;
use morag_shared::ports::TaskStore;
use morag_tests::runtime::{peak_rss_kib, RuntimeEmulator};

const COLD_STARTS: usize = 20;
/// Each binary and its function in `template.yaml`.
const FUNCTIONS: [(&str, &str); 6] = [
    ("morag-ingest", stack::INGEST),
    ("morag-status", stack::STATUS),
    ("morag-recorder", stack::RECORDER),
    ("morag-processor", stack::PROCESSOR),
    ("morag-webhook-sender", stack::WEBHOOK_SENDER),
    ("morag-watchdog", stack::WATCHDOG),
];
const REQUESTS: usize = 1000;
const WARMUP: usize = 50;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn release_binary(name: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    if !path.exists() {
        bail!(
            "{} is missing: make bench builds it with `cargo build --release`",
            path.display()
        );
    }
    Ok(path)
}

/// An `events/` API Gateway fixture for `task_id` with `key`: its path
/// (`suffix` after the task) and path parameter rewritten.
pub(crate) fn task_route_event(fixture: &str, key: &str, task_id: &str, suffix: &str) -> Result<Value> {
    let mut event: Value = serde_json::from_str(fixture)?;
    event["headers"]["authorization"] = Value::String(format!("Bearer {key}"));
    event["rawPath"] = Value::String(format!("/api/v1/status/{task_id}{suffix}"));
    event["requestContext"]["http"]["path"] = event["rawPath"].clone();
    event["pathParameters"]["task_id"] = Value::String(task_id.to_owned());
    Ok(event)
}

fn status_event(key: &str, task_id: &str) -> Result<String> {
    let fixture = include_str!("../../../../events/status-get.json");
    Ok(task_route_event(fixture, key, task_id, "")?.to_string())
}

fn check(name: &str, ok: bool) -> String {
    format!("{name}: {}", if ok { "met" } else { "MISSED" })
}

#[tokio::main]
async fn main() -> Result<()> {
    // the functions' warnings and errors on stderr (the report is stdout)
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let endpoint = std::env::var("MORAG_BENCH_ENDPOINT").context("MORAG_BENCH_ENDPOINT (make bench sets it)")?;
    let section = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    let mut report = Vec::new();
    if section == "all" || section == "intake" {
        report.extend(intake(&endpoint).await?);
    }
    if section == "all" || section == "lifecycle" || section == "recorder" {
        report.extend(lifecycle::run(&endpoint, section != "recorder").await?);
    }
    if section == "all" || section == "webhooks" {
        report.extend(webhooks::run(&endpoint).await?);
    }
    if section == "all" || section == "latency" {
        report.extend(latency::run(&endpoint).await?);
    }
    if section == "all" || section == "endpoints" {
        report.extend(endpoints::run(&endpoint).await?);
    }
    if section == "all" || section == "documents" {
        report.extend(documents::run(&endpoint).await?);
    }
    println!("{}", report.join("\n"));
    Ok(())
}

async fn intake(endpoint: &str) -> Result<Vec<String>> {
    let endpoint = endpoint.to_owned();
    let deployed = morag_tests::deploy(&endpoint).await?;
    let (sdk, store) = (deployed.sdk.clone(), deployed.store.clone());
    let (key, _) = morag_cli::keys::create(store.as_ref(), &"bench".parse()?, "bench").await?;
    let task_id = TaskId::new();
    store
        .create_task(&morag_tests::sample_task(&task_id.to_string(), "bench"), None)
        .await?;
    // each binary runs with its function's environment from the stack
    let mut envs = std::collections::HashMap::new();
    for (binary, function) in FUNCTIONS {
        envs.insert(binary, deployed.function_env(function, &endpoint)?);
    }

    let mut report = vec!["## Intake and status".to_owned(), String::new()];
    let mut verdicts = Vec::new();

    // --- binary sizes
    report.push("| binary | size (MB) |".into());
    report.push("|---|---|".into());
    let mut largest = 0.0f64;
    for (name, _) in FUNCTIONS {
        let size = std::fs::metadata(release_binary(name)?)?.len() as f64 / 1_000_000.0;
        largest = largest.max(size);
        report.push(format!("| {name} | {size:.2} |"));
    }
    verdicts.push(check(
        &format!("binary <= 10 MB (largest {largest:.2} MB)"),
        largest <= 10.0,
    ));
    report.push(String::new());

    // --- cold starts
    report.push(format!(
        "| cold start, {COLD_STARTS} runs | median (ms) | min (ms) | max (ms) |"
    ));
    report.push("|---|---|---|---|".into());
    let mut worst_median = Duration::ZERO;
    for (name, _) in FUNCTIONS {
        let binary = release_binary(name)?;
        let mut samples = Vec::new();
        for _ in 0..COLD_STARTS {
            let emulator = RuntimeEmulator::start().await;
            let started = Instant::now();
            let mut child = emulator.spawn(&binary, &envs[name])?;
            let ready = emulator
                .wait_ready(Duration::from_secs(10))
                .await
                .with_context(|| format!("{name} never polled for work"))?;
            samples.push(ready.duration_since(started));
            child.kill().await?;
        }
        samples.sort();
        let median = percentile(&samples, 0.5);
        worst_median = worst_median.max(median);
        report.push(format!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            ms(median),
            ms(samples[0]),
            ms(samples[samples.len() - 1])
        ));
    }
    verdicts.push(check(
        &format!("cold start <= 30 ms (worst median {:.1} ms)", ms(worst_median)),
        worst_median <= Duration::from_millis(30),
    ));
    report.push(String::new());

    // --- status latency through the handler vs a bare GetItem, and peak RSS
    let emulator = RuntimeEmulator::start().await;
    let status_env = &envs["morag-status"];
    let child = emulator.spawn(&release_binary("morag-status")?, status_env)?;
    emulator
        .wait_ready(Duration::from_secs(10))
        .await
        .context("status never ready")?;
    let event = status_event(&key, &task_id.to_string())?;
    let no_db_event = status_event(&key, "not-a-task-id")?;
    let ddb = morag_shared::adapters::aws::dynamodb(&sdk);
    let in_process = morag_status::router(Arc::new(morag_status::wiring::build(
        &sdk,
        &<morag_shared::config::StatusConfig as morag_shared::config::FromEnv>::from_lookup(&|k| {
            status_env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })?,
    )));
    // Interleaved, so that drift in the emulator's speed hits every series alike.
    let (mut handler, mut no_db, mut local, mut bare) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..WARMUP + REQUESTS {
        let started = Instant::now();
        let out = emulator
            .invoke(event.clone())
            .await
            .map_err(|e| anyhow::anyhow!("invocation error: {e:?}"))?;
        let t_handler = started.elapsed();
        if i == 0 {
            let v: Value = serde_json::from_slice(&out)?;
            if v["statusCode"] != 200 {
                bail!("status answered {v}");
            }
        }

        let started = Instant::now();
        emulator
            .invoke(no_db_event.clone())
            .await
            .map_err(|e| anyhow::anyhow!("invocation error: {e:?}"))?;
        let t_no_db = started.elapsed();

        let started = Instant::now();
        let request = lambda_http::request::from_str(&event)?;
        let response = tower::ServiceExt::oneshot(in_process.clone(), request.map(axum::body::Body::new)).await?;
        if response.status() != 200 {
            bail!("in-process handler answered {}", response.status());
        }
        let t_local = started.elapsed();

        let started = Instant::now();
        ddb.get_item()
            .table_name(&deployed.resources.names.table)
            .key("pk", AttributeValue::S(format!("TASK#{task_id}")))
            .key("sk", AttributeValue::S("STATE".into()))
            .consistent_read(true)
            .send()
            .await?;
        let t_bare = started.elapsed();
        if i >= WARMUP {
            handler.push(t_handler);
            no_db.push(t_no_db);
            local.push(t_local);
            bare.push(t_bare);
        }
    }
    let pid = child.id().context("status pid")?;
    let rss_mb = peak_rss_kib(pid).context("VmHWM")? as f64 / 1024.0;
    drop(child);

    for v in [&mut handler, &mut no_db, &mut local, &mut bare] {
        v.sort();
    }
    let row = |name: &str, v: &[Duration]| {
        let (m, p) = (percentile(v, 0.5), percentile(v, 0.99));
        format!(
            "| {name} | {:.3} | {:.3} | {:.2} | {:.2} |",
            ms(m),
            ms(p),
            ms(m) / ms(percentile(&bare, 0.5)),
            ms(p) / ms(percentile(&bare, 0.99))
        )
    };
    report.push(format!("| status latency, {REQUESTS} requests each, interleaved | median (ms) | p99 (ms) | ratio to GetItem, median | ratio, p99 |"));
    report.push("|---|---|---|---|---|".into());
    report.push(row("bare SDK GetItem (consistent read), same moto", &bare));
    report.push(row(
        "handler in process: API Gateway event -> router -> GetItem",
        &local,
    ));
    report.push(row("release binary through the Runtime API emulator", &handler));
    report.push(row(
        "release binary, 400 path (no DynamoDB call): runtime + emulator overhead",
        &no_db,
    ));
    let ratio50 = ms(percentile(&local, 0.5)) / ms(percentile(&bare, 0.5));
    let ratio99 = ms(percentile(&local, 0.99)) / ms(percentile(&bare, 0.99));
    let emu50 = ms(percentile(&handler, 0.5)) / ms(percentile(&bare, 0.5));
    report.push(String::new());
    report.push(format!(
        "Peak RSS of morag-status after {} requests: {rss_mb:.1} MB",
        WARMUP + REQUESTS
    ));
    verdicts.push(check(&format!("peak RSS <= 40 MB ({rss_mb:.1} MB)"), rss_mb <= 40.0));
    verdicts.push(check(
        &format!("handler/GetItem ratio <= 1.2, handler in process (median {ratio50:.2}, p99 {ratio99:.2})"),
        ratio50 <= 1.2,
    ));
    verdicts.push(check(
        &format!("handler/GetItem ratio <= 1.2, binary through the emulator (median {emu50:.2})"),
        emu50 <= 1.2,
    ));

    report.push(String::new());
    report.push("Targets:".into());
    report.push(String::new());
    report.extend(verdicts.into_iter().map(|v| format!("- {v}")));
    report.push(String::new());
    Ok(report)
}

mod documents;
mod endpoints;
mod latency;
mod lifecycle;
mod webhooks;
