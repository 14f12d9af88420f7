//! Real documents: chunking throughput (in process), and for 1 MiB, 100 MiB
//! and 1 GiB text files the time from upload to `completed` and the
//! processor's peak RSS: a presigned PUT to the emulator's S3, then the
//! release processor binary through the Runtime API emulator reading the
//! object as a stream, then the recorder applying its events.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::Value;

use morag_cli::stack;
use morag_processor::stream::TextStream;
use morag_shared::domain::{Source, SourceType, Task, TaskId, TaskStatus};
use morag_shared::ports::TaskStore;
use morag_tests::runtime::{peak_rss_kib, RuntimeEmulator};

use super::release_binary;

const MIB: usize = 1024 * 1024;

/// Text like a real document: paragraphs of sentences.
fn document(bytes: usize) -> Vec<u8> {
    let paragraph = "The ingestion pipeline reads the document. It cuts it into chunks of about a thousand \
                     characters, at paragraph and sentence boundaries! Does it keep up? It should.\n\n";
    paragraph.bytes().cycle().take(bytes).collect()
}

fn chunking() -> Vec<String> {
    let mut report = vec![
        "| chunking (release, in process) | input | MB/s |".to_owned(),
        "|---|---|---|".to_owned(),
    ];
    let cases = [
        ("streamed document text", document(100 * MIB)),
        ("one 5 MiB token", vec![b'x'; 5 * MIB]),
        ("5 MiB of one-letter words", b"a ".repeat(5 * MIB / 2)),
    ];
    for (name, input) in cases {
        let started = Instant::now();
        let mut text = TextStream::new(1000);
        for piece in input.chunks(MIB) {
            text.push(piece).expect("utf-8");
        }
        let counts = text.finish().expect("utf-8");
        let secs = started.elapsed().as_secs_f64();
        report.push(format!(
            "| {name} ({} chunks) | {:.0} MiB | {:.0} |",
            counts.chunks,
            input.len() as f64 / MIB as f64,
            input.len() as f64 / 1e6 / secs
        ));
    }
    let token = "x".repeat(5 * MIB);
    let started = Instant::now();
    let n = morag_processor::text::chunk(&token, 1000).len();
    report.push(format!(
        "| `text::chunk` of one 5 MiB token ({n} chunks; 37 s before the fix) | 5 MiB | {:.0} |",
        5.0 * MIB as f64 / 1e6 / started.elapsed().as_secs_f64()
    ));
    let page = "<div class=\"row\"><p>Some <b>bold</b> text &amp; a <a href=\"/x?a=1&b=2\">link</a>.</p>\
                <script>var x = '<p>' + 1;</script></div>\n";
    let html = page.repeat(16 * MIB / page.len());
    let soup = "<a href=x><b>".repeat(5 * MIB / 13);
    for (name, input) in [
        ("`text::html_to_text` of a 16 MiB page", &html),
        ("`text::html_to_text` of 5 MiB tag soup", &soup),
    ] {
        let started = Instant::now();
        let text = morag_processor::text::html_to_text(input.as_bytes());
        let secs = started.elapsed().as_secs_f64();
        report.push(format!(
            "| {name} ({} characters of text) | {:.0} MiB | {:.0} |",
            text.len(),
            input.len() as f64 / MIB as f64,
            input.len() as f64 / 1e6 / secs
        ));
    }
    report
}

fn job_event(job: &Value) -> Result<Vec<u8>> {
    let mut record = SqsMessage::default();
    record.message_id = Some("bench-job".into());
    record.body = Some(job.to_string());
    record.receipt_handle = Some("r".into());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    Ok(serde_json::to_vec(&event)?)
}

/// Upload (presigned-style PUT), processor binary, recorder: seconds and the
/// processor's peak RSS in MiB.
async fn one_document(endpoint: &str, size: usize) -> Result<(f64, f64, f64, f64)> {
    let deployed = morag_tests::deploy(endpoint).await?;
    let r = &deployed.resources;
    let task = Task::pending(
        TaskId::new(),
        "bench".parse()?,
        SourceType::Document,
        Source::Object {
            bucket: r.names.bucket.clone(),
            key: format!("uploads/bench/{size}/doc.md"),
            sha256: None,
        },
        None,
        Default::default(),
        morag_shared::time::now(),
    );
    deployed.store.create_task(&task, None).await?;
    let Source::Object { key, .. } = &task.source else {
        unreachable!()
    };
    let body = document(size);

    let started = Instant::now();
    // the functions' clients give up after 10 s; a GiB into the emulator takes longer
    let patient = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(1800))
        .operation_attempt_timeout(Duration::from_secs(1800))
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&deployed.sdk)
            .force_path_style(true)
            .timeout_config(patient)
            .build(),
    );
    s3.put_object()
        .bucket(&r.names.bucket)
        .key(key)
        .content_type("text/markdown")
        .body(body.into())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("PutObject: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    let uploaded = started.elapsed();

    let mut env = deployed.function_env(stack::PROCESSOR, endpoint)?;
    // the emulator's S3 is slower than S3: time is not what this measures
    env.push(("MORAG_JOB_TIME_BUDGET_SECONDS".into(), "3000".into()));
    let emulator = RuntimeEmulator::start().await;
    let child = emulator.spawn(&release_binary("morag-processor")?, &env)?;
    emulator
        .wait_ready(Duration::from_secs(10))
        .await
        .context("processor never ready")?;
    let processing = Instant::now();
    let out = emulator
        .invoke(job_event(&serde_json::to_value(task.job())?)?)
        .await
        .map_err(|e| anyhow::anyhow!("invocation error: {}", String::from_utf8_lossy(&e)))?;
    let processed = processing.elapsed();
    let rss_mib = peak_rss_kib(child.id().unwrap_or(0)).unwrap_or(0) as f64 / 1024.0;
    drop(child);
    let answer: Value = serde_json::from_slice(&out)?;
    if answer["batchItemFailures"].as_array().is_some_and(|f| !f.is_empty()) {
        bail!("the processor failed the job: {answer}");
    }

    // the recorder applies the events: the task completes
    let recorder_cfg = deployed
        .stack
        .config(stack::RECORDER, &stack::local_overrides(endpoint, false))?;
    let recorder = morag_recorder::wiring::build(&deployed.sdk, &recorder_cfg);
    let sqs = morag_shared::adapters::aws::sqs(&deployed.sdk);
    loop {
        let polled = morag_cli::esm::poll_once(&sqs, &r.status_events_queue_url, 10, Duration::ZERO, |b| {
            recorder.handle(b)
        })
        .await?;
        if polled.received == 0 {
            break;
        }
    }
    let total = started.elapsed();
    let done = deployed.store.get_task(&task.task_id).await?.context("task")?;
    if done.status != TaskStatus::Completed {
        bail!("{size} bytes: task ended {:?}: {:?}", done.status, done.error);
    }
    Ok((
        uploaded.as_secs_f64(),
        processed.as_secs_f64(),
        total.as_secs_f64(),
        rss_mib,
    ))
}

pub async fn run(endpoint: &str) -> Result<Vec<String>> {
    let mut report = vec!["## Documents".to_owned(), String::new()];
    report.extend(chunking());
    report.push(String::new());
    report.push(
        "| text file | upload (s) | processor (s) | upload to `completed` (s) | processor peak RSS (MiB) | RSS / file |"
            .to_owned(),
    );
    report.push("|---|---|---|---|---|---|".to_owned());
    let mut verdicts = Vec::new();
    for (name, size) in [("1 MiB", MIB), ("100 MiB", 100 * MIB), ("1 GiB", 1024 * MIB)] {
        let (up, proc_s, total, rss) = one_document(endpoint, size).await?;
        report.push(format!(
            "| {name} | {up:.1} | {proc_s:.1} | {total:.1} | {rss:.1} | {:.3} |",
            rss / (size as f64 / MIB as f64)
        ));
        if size == 1024 * MIB {
            verdicts.push(format!(
                "1 GiB text processed in bounded memory (peak RSS {rss:.1} MiB, far below the file): {}",
                if rss < 256.0 { "met" } else { "MISSED" }
            ));
        }
    }
    report.push(String::new());
    report.extend(verdicts);
    report.push(String::new());
    report.push(
        "(upload: one PutObject to the emulator; processor: the release binary through the Runtime API emulator, \
         S3 read as a stream; then the recorder applies the events. `make bench documents`)"
            .to_owned(),
    );
    Ok(report)
}
