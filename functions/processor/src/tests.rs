//! The processor with in-memory adapters and real HTTP sources on 127.0.0.1.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use morag_shared::adapters::memory::{MemoryBlobStore, MemoryDeadLetters, MemoryEventSink};
use morag_shared::domain::{EventStatus, StatusEvent, TaskId};
use morag_shared::ports::BlobStore;

use super::*;

struct Fixture {
    blobs: Arc<MemoryBlobStore>,
    events: Arc<MemoryEventSink>,
    dlq: Arc<MemoryDeadLetters>,
    processor: Processor,
}

fn fixture(policy: TargetPolicy) -> Fixture {
    fixture_with(policy, |_| {})
}

fn fixture_with(policy: TargetPolicy, tweak: impl FnOnce(&mut Settings)) -> Fixture {
    let blobs = Arc::new(MemoryBlobStore::default());
    let events = Arc::new(MemoryEventSink::default());
    let dlq = Arc::new(MemoryDeadLetters::default());
    let lookup = outbound::static_lookup(HashMap::from([(
        "docs.internal-test".to_owned(),
        vec!["10.1.2.3".parse().unwrap()],
    )]));
    let processor = Processor {
        blobs: blobs.clone(),
        events: events.clone(),
        dead_letters: dlq.clone(),
        http: outbound::client(
            policy,
            lookup,
            Duration::from_secs(2),
            Duration::from_secs(5),
            USER_AGENT,
        )
        .unwrap(),
        settings: Settings {
            max_source_bytes: 64 * 1024,
            chunk_chars: 100,
            target_policy: policy,
            time_budget: Duration::from_secs(10),
        },
    };
    let mut processor = processor;
    tweak(&mut processor.settings);
    Fixture {
        blobs,
        events,
        dlq,
        processor,
    }
}

const LOCAL: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_loopback: true,
};

fn job(source_type: SourceType, source: Source) -> JobMessage {
    let task_id = TaskId::new();
    JobMessage {
        job_id: format!("job_{task_id}"),
        task_id,
        tenant: "acme".parse().unwrap(),
        source_type,
        source,
        metadata: Map::new(),
        submitted_at: morag_shared::time::now(),
    }
}

fn object(key: &str) -> Source {
    Source::Object {
        bucket: "b".into(),
        key: key.into(),
        sha256: None,
    }
}

impl Fixture {
    fn events(&self) -> Vec<StatusEvent> {
        self.events.events.lock().unwrap().clone()
    }

    fn statuses(&self) -> Vec<EventStatus> {
        self.events().iter().map(|e| e.status).collect()
    }

    fn last(&self) -> StatusEvent {
        self.events().last().cloned().expect("an event")
    }
}

#[tokio::test]
async fn markdown_upload_is_chunked_and_reported() {
    let f = fixture(TargetPolicy::default());
    let doc = "# Title\n\nFirst paragraph of the notes.\n\n".repeat(20);
    f.blobs
        .put("uploads/acme/t/notes.md", Bytes::from(doc.clone()), "text/markdown")
        .await
        .unwrap();
    f.processor
        .process(&job(SourceType::Document, object("uploads/acme/t/notes.md")))
        .await
        .unwrap();

    let statuses = f.statuses();
    assert_eq!(statuses.first(), Some(&EventStatus::Started));
    assert_eq!(statuses.last(), Some(&EventStatus::Completed));
    let progress: Vec<f64> = f.events().iter().filter_map(|e| e.progress).collect();
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]));
    let result = f.last().result.unwrap();
    assert_eq!(result["sha256"], hex::encode(Sha256::digest(doc.as_bytes())));
    assert_eq!(result["words"], doc.split_whitespace().count());
    assert_eq!(result["characters"], doc.chars().count());
    assert_eq!(result["chunks"], text::chunk(&doc, 100).len());
}

#[tokio::test]
async fn what_it_cannot_read_fails_the_task_with_a_clear_error() {
    let f = fixture(TargetPolicy::default());
    f.blobs
        .put("a.pdf", Bytes::from_static(b"%PDF-1.7"), "application/pdf")
        .await
        .unwrap();
    f.blobs
        .put("a.png", Bytes::from_static(b"\x89PNG"), "image/png")
        .await
        .unwrap();
    f.blobs
        .put("bin.txt", Bytes::from_static(b"\xff\xfe\x00"), "text/plain")
        .await
        .unwrap();
    f.blobs
        .put("blank.txt", Bytes::from_static(b" \n\n "), "text/plain")
        .await
        .unwrap();
    let cases = [
        (job(SourceType::Audio, object("a.pdf")), "text and document sources"),
        (job(SourceType::Document, object("a.pdf")), "the PDF could not be read"),
        (job(SourceType::Document, object("a.png")), "unsupported content type"),
        (job(SourceType::Document, object("bin.txt")), "not UTF-8"),
        (job(SourceType::Text, object("blank.txt")), "no text"),
        (job(SourceType::Document, object("missing.md")), "no longer exists"),
    ];
    for (job, expected) in cases {
        f.events.events.lock().unwrap().clear();
        f.processor.process(&job).await.unwrap();
        let last = f.last();
        assert_eq!(last.status, EventStatus::Failed);
        assert!(
            last.error.as_deref().unwrap().contains(expected),
            "{:?} vs {expected}",
            last.error
        );
    }
}

async fn source_server() -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/page.html",
            axum::routing::get(|| async {
                (
                    [("content-type", "text/html")],
                    "<html><body><h1>Hi</h1><p>Some text here.</p></body></html>",
                )
                    .into_response()
            }),
        )
        .route("/gone", axum::routing::get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/hangs",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .route(
            "/moved",
            axum::routing::get(|| async { (StatusCode::FOUND, [("location", "http://10.0.0.1/")]).into_response() }),
        )
        .route(
            "/huge.txt",
            axum::routing::get(|| async { ([("content-type", "text/plain")], "x".repeat(100 * 1024)).into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn urls_are_fetched_under_the_target_policy() {
    let addr = source_server().await;
    let f = fixture(LOCAL);
    f.processor
        .process(&job(
            SourceType::Text,
            Source::Url {
                url: format!("http://{addr}/page.html"),
            },
        ))
        .await
        .unwrap();
    let last = f.last();
    assert_eq!(last.status, EventStatus::Completed, "{last:?}");
    assert_eq!(last.result.unwrap()["words"], 4);

    for (path, expected) in [
        ("/gone", "HTTP 404"),
        ("/moved", "redirects are not followed"),
        ("/huge.txt", "larger than"),
    ] {
        f.events.events.lock().unwrap().clear();
        f.processor
            .process(&job(
                SourceType::Text,
                Source::Url {
                    url: format!("http://{addr}{path}"),
                },
            ))
            .await
            .unwrap();
        let last = f.last();
        assert_eq!(last.status, EventStatus::Failed);
        assert!(
            last.error.as_deref().unwrap().contains(expected),
            "{path}: {:?}",
            last.error
        );
    }

    // a name that resolves to a private address, even in local mode
    f.events.events.lock().unwrap().clear();
    let url = format!("http://docs.internal-test:{}/page.html", addr.port());
    f.processor
        .process(&job(SourceType::Text, Source::Url { url }))
        .await
        .unwrap();
    assert!(f.last().error.unwrap().contains("non-public"));

    // production policy: loopback literals are refused before any connection
    let strict = fixture(TargetPolicy::default());
    strict
        .processor
        .process(&job(
            SourceType::Text,
            Source::Url {
                url: format!("http://{addr}/page.html"),
            },
        ))
        .await
        .unwrap();
    let last = strict.last();
    assert_eq!(last.status, EventStatus::Failed);
    assert!(last.error.unwrap().contains("non-public"));
}

fn record(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body.to_owned());
    m
}

#[tokio::test]
async fn batches_park_malformed_jobs_and_retry_infrastructure_failures() {
    let f = fixture(TargetPolicy::default());
    f.blobs
        .put("n.txt", Bytes::from_static(b"hello world"), "text/plain")
        .await
        .unwrap();
    let good = serde_json::to_string(&job(SourceType::Text, object("n.txt"))).unwrap();
    let mut batch = SqsEvent::default();
    batch.records = vec![record("m1", &good), record("m2", "{}")];
    let res = f.processor.handle(batch.clone()).await;
    assert!(res.batch_item_failures.is_empty());
    assert_eq!(f.dlq.parked.lock().unwrap()[0].1, "invalid_job");

    f.events.fail.store(true, Ordering::SeqCst);
    let mut batch = SqsEvent::default();
    batch.records = vec![record("m3", &good)];
    let res = f.processor.handle(batch).await;
    assert_eq!(res.batch_item_failures.len(), 1);
    assert_eq!(res.batch_item_failures[0].item_identifier, "m3");
}

fn batch_of(jobs: &[&JobMessage]) -> SqsEvent {
    let mut batch = SqsEvent::default();
    batch.records = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| record(&format!("m{i}"), &serde_json::to_string(j).unwrap()))
        .collect();
    batch
}

impl Fixture {
    /// The last event of each task.
    fn outcome_of(&self, job: &JobMessage) -> StatusEvent {
        self.events()
            .into_iter()
            .rev()
            .find(|e| e.task_id == job.task_id)
            .expect("an event for the task")
    }
}

/// 5 MiB without a single space (the input that used to stall the processor
/// for 37 s) in one batch with small documents: every job completes, and the
/// runtime keeps running other work while the big one is cut (the chunking
/// runs off the async runtime).
#[tokio::test]
async fn a_poison_input_does_not_hold_up_its_batch_or_the_runtime() {
    let f = fixture_with(TargetPolicy::default(), |s| s.max_source_bytes = 6 * 1024 * 1024);
    let poison = "x".repeat(5 * 1024 * 1024);
    f.blobs
        .put("poison.txt", Bytes::from(poison.clone()), "text/plain")
        .await
        .unwrap();
    f.blobs
        .put("small.txt", Bytes::from_static(b"a small note"), "text/plain")
        .await
        .unwrap();
    let jobs = [
        job(SourceType::Text, object("small.txt")),
        job(SourceType::Text, object("poison.txt")),
        job(SourceType::Text, object("small.txt")),
    ];
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    tokio::task::yield_now().await;
    let before = ticks.load(Ordering::SeqCst);
    let res = f.processor.handle(batch_of(&[&jobs[0], &jobs[1], &jobs[2]])).await;
    let after = ticks.load(Ordering::SeqCst);
    ticker.abort();
    assert!(res.batch_item_failures.is_empty());
    for j in &jobs {
        assert_eq!(f.outcome_of(j).status, EventStatus::Completed);
    }
    let result = f.outcome_of(&jobs[1]).result.unwrap();
    assert_eq!(result["chunks"], poison.len().div_ceil(100));
    assert!(
        after > before,
        "the async runtime ran nothing else while the big document was processed"
    );
}

/// A job whose source hangs past the time budget fails with a clear error,
/// and the other job of its batch completes: one job never outlives the
/// function or holds its batch.
#[tokio::test]
async fn a_job_over_its_time_budget_fails_and_the_batch_goes_on() {
    let addr = source_server().await;
    let f = fixture_with(LOCAL, |s| s.time_budget = Duration::from_secs(1));
    f.blobs
        .put("small.txt", Bytes::from_static(b"a small note"), "text/plain")
        .await
        .unwrap();
    let slow = job(
        SourceType::Text,
        Source::Url {
            url: format!("http://{addr}/hangs"),
        },
    );
    let quick = job(SourceType::Text, object("small.txt"));
    let res = f.processor.handle(batch_of(&[&slow, &quick])).await;
    assert!(res.batch_item_failures.is_empty(), "a source problem is not a retry");
    let failed = f.outcome_of(&slow);
    assert_eq!(failed.status, EventStatus::Failed);
    assert!(
        failed.error.as_deref().unwrap().starts_with("time_budget_exceeded"),
        "{:?}",
        failed.error
    );
    assert_eq!(f.outcome_of(&quick).status, EventStatus::Completed);
}

/// The checksum declared at upload is checked where the bytes are read.
#[tokio::test]
async fn an_object_that_is_not_the_declared_one_fails_its_task() {
    let f = fixture(TargetPolicy::default());
    f.blobs
        .put("u.txt", Bytes::from_static(b"the real words"), "text/plain")
        .await
        .unwrap();
    let with = |sha256: &str| {
        job(
            SourceType::Text,
            Source::Object {
                bucket: "b".into(),
                key: "u.txt".into(),
                sha256: Some(sha256.to_owned()),
            },
        )
    };
    let right = with(&hex::encode(Sha256::digest(b"the real words")));
    f.processor.process(&right).await.unwrap();
    assert_eq!(f.outcome_of(&right).status, EventStatus::Completed);
    let wrong = with(&hex::encode(Sha256::digest(b"other words")));
    f.processor.process(&wrong).await.unwrap();
    let failed = f.outcome_of(&wrong);
    assert_eq!(failed.status, EventStatus::Failed);
    assert!(failed.error.unwrap().starts_with("checksum_mismatch"));
}

/// A PDF yields its text.
#[tokio::test]
async fn a_pdf_yields_its_text() {
    let f = fixture(TargetPolicy::default());
    let pdf = include_bytes!("../../../tests/fixtures/notes.pdf");
    f.blobs
        .put("notes.pdf", Bytes::from_static(pdf), "application/pdf")
        .await
        .unwrap();
    let j = job(SourceType::Document, object("notes.pdf"));
    f.processor.process(&j).await.unwrap();
    let done = f.outcome_of(&j);
    assert_eq!(done.status, EventStatus::Completed, "{:?}", done.error);
    let result = done.result.unwrap();
    // "Notes for the MoRAG pipeline." (5), the next line (8), the last (6)
    assert_eq!(result["words"], 19, "{result:?}");
    assert_eq!(result["sha256"], hex::encode(Sha256::digest(pdf)));
}
