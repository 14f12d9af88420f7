//! Unit tests of the ingest flow with in-memory adapters: every failure
//! half-way leaves nothing behind. The same cases run against the emulator in
//! `tests/`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use morag_shared::adapters::memory::{MemoryBlobStore, MemoryJobQueue, MemoryKeyStore, MemoryTaskStore};
use morag_shared::domain::{ApiKeyRecord, KeyHash};
use morag_shared::http::Authenticator;
use morag_shared::outbound::TargetPolicy;

use super::*;

struct Fixture {
    tasks: Arc<MemoryTaskStore>,
    jobs: Arc<MemoryJobQueue>,
    blobs: Arc<MemoryBlobStore>,
    app: Router,
}

/// Key `k` of tenant `acme`.
fn acme_key() -> Arc<MemoryKeyStore> {
    let keys = Arc::new(MemoryKeyStore::default());
    keys.insert(ApiKeyRecord {
        key_hash: KeyHash::of("k"),
        tenant: "acme".parse().unwrap(),
        created_at: morag_shared::time::now(),
        description: String::new(),
    });
    keys
}

fn fixture() -> Fixture {
    let keys = acme_key();
    let tasks = Arc::new(MemoryTaskStore::default());
    let jobs = Arc::new(MemoryJobQueue::default());
    let blobs = Arc::new(MemoryBlobStore::default());
    let state = Arc::new(Ingest {
        tasks: tasks.clone(),
        jobs: jobs.clone(),
        blobs: blobs.clone(),
        uploads: tasks.clone(),
        auth: Arc::new(Authenticator::new(keys, Duration::from_secs(60))),
        limits: Limits {
            max_upload_bytes: 1024,
            max_object_bytes: 1 << 30,
            target_policy: TargetPolicy::default(),
        },
    });
    Fixture {
        tasks,
        jobs,
        blobs,
        app: router(state),
    }
}

fn multipart(file: &[u8]) -> Request<Body> {
    let mut body = Vec::new();
    body.extend_from_slice(b"--XX\r\nContent-Disposition: form-data; name=\"source_type\"\r\n\r\ndocument\r\n");
    body.extend_from_slice(b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.md\"\r\nContent-Type: text/markdown\r\n\r\n");
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--XX--\r\n");
    Request::post("/api/v1/ingest/file")
        .header("authorization", "Bearer k")
        .header("content-type", "multipart/form-data; boundary=XX")
        .body(Body::from(body))
        .unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

impl Fixture {
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.tasks.tasks.lock().unwrap().len(),
            self.blobs.objects.lock().unwrap().len(),
            self.jobs.jobs.lock().unwrap().len(),
        )
    }
}

#[tokio::test]
async fn happy_path_writes_object_task_and_job() {
    let f = fixture();
    let (status, body) = call(&f.app, multipart(b"# hello")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(f.counts(), (1, 1, 1));
    assert_eq!(body["status"], "pending");
}

#[tokio::test]
async fn s3_down_writes_nothing() {
    let f = fixture();
    f.blobs.fail.store(true, Ordering::SeqCst);
    let (status, body) = call(&f.app, multipart(b"# hello")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(f.counts(), (0, 0, 0));
}

#[tokio::test]
async fn dynamodb_down_removes_the_upload() {
    let f = fixture();
    f.tasks.fail.store(true, Ordering::SeqCst);
    let (status, _) = call(&f.app, multipart(b"# hello")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(f.counts(), (0, 0, 0));
}

#[tokio::test]
async fn sqs_down_removes_task_and_upload() {
    let f = fixture();
    f.jobs.fail.store(true, Ordering::SeqCst);
    let (status, _) = call(&f.app, multipart(b"# hello")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(f.counts(), (0, 0, 0));
}

#[tokio::test]
async fn over_the_limit_is_413_and_writes_nothing() {
    let f = fixture();
    let (status, body) = call(&f.app, multipart(&[b'a'; 1025])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(f.counts(), (0, 0, 0));
    // exactly at the limit is fine
    let (status, _) = call(&f.app, multipart(&[b'a'; 1024])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

fn json(path: &str, body: serde_json::Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", "Bearer k")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Grants an upload for `doc` and lands `landed` under its key, with the
/// checksum S3 would report for what landed.
async fn landed_upload(f: &Fixture, doc: &[u8], landed: &[u8]) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let (status, granted) = call(
        &f.app,
        json(
            "/api/v1/uploads",
            serde_json::json!({"filename": "d.txt", "content_type": "text/plain", "size_bytes": doc.len(), "sha256": hex::encode(Sha256::digest(doc))}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    let upload_id = granted["upload_id"].as_str().unwrap().to_owned();
    let key = format!("uploads/acme/{upload_id}/d.txt");
    morag_shared::ports::BlobStore::put(
        f.blobs.as_ref(),
        &key,
        bytes::Bytes::copy_from_slice(landed),
        "text/plain",
    )
    .await
    .unwrap();
    f.blobs.checksums.lock().unwrap().insert(
        key,
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(landed)),
    );
    upload_id
}

/// Where S3 reports a stored checksum (real S3, for a PUT made with one),
/// `/ingest/upload` compares it with the declared one.
#[tokio::test]
async fn an_upload_whose_stored_checksum_differs_is_refused() {
    let f = fixture();
    let good = landed_upload(&f, b"declared bytes", b"declared bytes").await;
    let bad = landed_upload(&f, b"declared bytes", b"different byte").await;
    let body = |id: &str| serde_json::json!({"upload_id": id, "source_type": "text"});
    let (status, res) = call(&f.app, json("/api/v1/ingest/upload", body(&bad))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{res}");
    assert_eq!(res["error"]["code"], "upload_checksum_mismatch");
    assert_eq!(f.tasks.tasks.lock().unwrap().len(), 0);
    let (status, res) = call(&f.app, json("/api/v1/ingest/upload", body(&good))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(f.blobs.claimed.lock().unwrap().len(), 1);
}

/// A failed enqueue removes the task and releases the upload's claim, so the
/// client can retry with the same upload.
#[tokio::test]
async fn a_failed_enqueue_releases_the_upload_for_a_retry() {
    let f = fixture();
    let id = landed_upload(&f, b"some text", b"some text").await;
    let body = serde_json::json!({"upload_id": id, "source_type": "text"});
    f.jobs.fail.store(true, Ordering::SeqCst);
    let (status, _) = call(&f.app, json("/api/v1/ingest/upload", body.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(f.tasks.tasks.lock().unwrap().len(), 0);
    f.jobs.fail.store(false, Ordering::SeqCst);
    let (status, res) = call(&f.app, json("/api/v1/ingest/upload", body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(f.counts().2, 1);
}

/// A processing queue that stops inside `enqueue` until released (and can
/// fail there), to drive the interleavings of two requests with one key.
#[derive(Default)]
struct GatedQueue {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    fail: std::sync::atomic::AtomicBool,
    inner: MemoryJobQueue,
}

#[async_trait::async_trait]
impl morag_shared::ports::JobQueue for GatedQueue {
    async fn enqueue(&self, job: &morag_shared::domain::JobMessage) -> Result<String, morag_shared::error::StoreError> {
        self.entered.notify_one();
        self.release.notified().await;
        if self.fail.load(Ordering::SeqCst) {
            return Err(morag_shared::error::StoreError::unavailable(
                "sqs",
                "SendMessage",
                "injected",
            ));
        }
        self.inner.enqueue(job).await
    }
}

fn gated_app(tasks: Arc<MemoryTaskStore>, queue: Arc<GatedQueue>) -> Router {
    let keys = acme_key();
    router(Arc::new(Ingest {
        tasks: tasks.clone(),
        jobs: queue,
        blobs: Arc::new(MemoryBlobStore::default()),
        uploads: tasks,
        auth: Arc::new(Authenticator::new(keys, Duration::from_secs(60))),
        limits: Limits::new(1024, 1 << 30, TargetPolicy::default()),
    }))
}

/// Starts a keyed request and waits until it is inside `enqueue`.
async fn in_flight(app: &Router, queue: &GatedQueue) -> tokio::task::JoinHandle<(StatusCode, http::HeaderMap, Value)> {
    let first = tokio::spawn({
        let app = app.clone();
        async move { call_full(&app, keyed_url_request()).await }
    });
    queue.entered.notified().await;
    first
}

fn keyed_url_request() -> Request<Body> {
    let mut request = json(
        "/api/v1/ingest/url",
        serde_json::json!({"source_type": "web", "url": "https://example.com/a"}),
    );
    request
        .headers_mut()
        .insert("idempotency-key", http::HeaderValue::from_static("key-1"));
    request
}

async fn call_full(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// While the first request is between its write and its enqueue, a retry is
/// `409 request_in_progress` (never a 202 for a job that may not exist); once
/// it is enqueued, the retry gets the first answer.
#[tokio::test]
async fn a_retry_while_the_first_request_is_in_flight_is_409_then_the_first_answer() {
    let tasks = Arc::new(MemoryTaskStore::default());
    let queue = Arc::new(GatedQueue::default());
    let app = gated_app(tasks.clone(), queue.clone());
    let first = in_flight(&app, &queue).await;
    let (status, headers, body) = call_full(&app, keyed_url_request()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "request_in_progress");
    assert_eq!(headers["retry-after"], "1");

    queue.release.notify_one();
    let (status, _, first_body) = first.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, headers, body) = call_full(&app, keyed_url_request()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(body["task_id"], first_body["task_id"]);
    assert_eq!(queue.inner.jobs.lock().unwrap().len(), 1);
}

/// The first request dies between writing its task and enqueueing its job
/// (its future is dropped mid-enqueue, as a killed process would stop): a
/// retry within the lease is told to wait; past the lease it enqueues that
/// task's job and answers with it. Exactly one job, for the first task.
#[tokio::test]
async fn a_first_request_that_died_half_way_is_completed_by_the_retry() {
    let tasks = Arc::new(MemoryTaskStore::default());
    let queue = Arc::new(GatedQueue::default());
    let app = gated_app(tasks.clone(), queue.clone());
    let first = in_flight(&app, &queue).await;
    first.abort();
    let _ = first.await;
    let (status, _, _) = call_full(&app, keyed_url_request()).await;
    assert_eq!(status, StatusCode::CONFLICT, "within the lease: wait");
    let task_id = *tasks.tasks.lock().unwrap().keys().next().unwrap();
    // the lease passes
    for record in tasks.idempotency.lock().unwrap().values_mut() {
        record.created_at -= morag_shared::domain::idempotency::IN_FLIGHT_LEASE + chrono::TimeDelta::seconds(1);
    }
    let retry = tokio::spawn({
        let app = app.clone();
        async move { call_full(&app, keyed_url_request()).await }
    });
    queue.entered.notified().await;
    queue.release.notify_one();
    let (status, headers, body) = retry.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(body["task_id"], task_id.to_string());
    let jobs = queue.inner.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].task_id, task_id);
    assert_eq!(tasks.tasks.lock().unwrap().len(), 1);
}

/// A first request that failed at SQS removed its task and its key: the
/// retry is a fresh submission, not a replay of a task that never had a job.
#[tokio::test]
async fn a_first_request_that_failed_at_sqs_is_not_replayed() {
    let tasks = Arc::new(MemoryTaskStore::default());
    let queue = Arc::new(GatedQueue::default());
    let app = gated_app(tasks.clone(), queue.clone());
    queue.fail.store(true, Ordering::SeqCst);
    queue.release.notify_one();
    let (status, _, _) = call_full(&app, keyed_url_request()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(tasks.tasks.lock().unwrap().is_empty());
    assert!(tasks.idempotency.lock().unwrap().is_empty());
    queue.fail.store(false, Ordering::SeqCst);
    queue.release.notify_one();
    let (status, headers, _) = call_full(&app, keyed_url_request()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(queue.inner.jobs.lock().unwrap().len(), 1);
}

/// `size_bytes` up to the deployment's object limit exactly is granted; one
/// byte more is refused before anything is written.
#[tokio::test]
async fn the_upload_size_limit_is_exact() {
    let f = fixture();
    let body = |size: u64| serde_json::json!({"filename": "a.txt", "content_type": "text/plain", "size_bytes": size});
    let (status, res) = call(&f.app, json("/api/v1/uploads", body(1 << 30))).await;
    assert_eq!(status, StatusCode::CREATED, "{res}");
    let (status, res) = call(&f.app, json("/api/v1/uploads", body((1 << 30) + 1))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{res}");
    assert_eq!(res["error"]["code"], "invalid_size_bytes");
    assert_eq!(f.tasks.uploads.lock().unwrap().len(), 1);
}
