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
        },
    };
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
    JobMessage {
        task_id: TaskId::new(),
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
        .put("bin.txt", Bytes::from_static(b"\xff\xfe\x00"), "text/plain")
        .await
        .unwrap();
    f.blobs
        .put("blank.txt", Bytes::from_static(b" \n\n "), "text/plain")
        .await
        .unwrap();
    let cases = [
        (job(SourceType::Audio, object("a.pdf")), "text and document sources"),
        (job(SourceType::Document, object("a.pdf")), "unsupported content type"),
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
