//! Test and benchmark support: `spawn_env()` gives each test its own table,
//! bucket and queues on the shared emulator (moto server, started by
//! `make test`), plus helpers to call the real routers and to count what was
//! written. `runtime` is a Lambda Runtime API emulator for running the real
//! release binaries.

pub mod multipart;
pub mod receiver;
pub mod runtime;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use morag_cli::local::{self, Names, Resources};
use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::aws::SdkConfig;
use morag_shared::config::{ApiSettings, AwsSettings, IngestConfig, StatusConfig, DEFAULT_MAX_UPLOAD_BYTES};
use morag_shared::net::TargetPolicy;

/// The emulator's endpoint, from `MORAG_TEST_ENDPOINT` (set by `make test`).
pub fn endpoint() -> String {
    std::env::var("MORAG_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("MORAG_TEST_ENDPOINT is not set: run the integration tests with `make test`, which starts moto server")
    })
}

/// One test's world: its own resources, the real routers wired to them, and
/// API keys for two tenants.
pub struct TestEnv {
    pub sdk: SdkConfig,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub store: Arc<DynamoStore>,
    pub resources: Resources,
    pub ingest_cfg: IngestConfig,
    pub status_cfg: StatusConfig,
    pub ingest: Router,
    pub status: Router,
    /// Tenant `acme`.
    pub key_a: String,
    /// Tenant `globex`.
    pub key_b: String,
    /// Table items present before the test does anything (the API keys).
    pub baseline_items: i64,
}

/// Unique, lower-case resource prefix.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

pub async fn spawn_env() -> TestEnv {
    spawn_env_with(|_| {}).await
}

/// Like `spawn_env`, with a chance to change the ingest configuration (the
/// routers are built after `tweak`).
pub async fn spawn_env_with(tweak: impl FnOnce(&mut IngestConfig)) -> TestEnv {
    spawn_env_configured(morag_shared::webhook::RetrySchedule::default().attempts(), tweak).await
}

/// Like `spawn_env_with`, with the webhook queue's `maxReceiveCount` (the
/// attempt budget of the retry schedule the test uses).
pub async fn spawn_env_configured(webhook_attempts: u32, tweak: impl FnOnce(&mut IngestConfig)) -> TestEnv {
    let endpoint = endpoint();
    let sdk = morag_shared::aws::local(&endpoint);
    let names = Names::with_prefix(&unique_prefix());
    let resources = local::provision_with(&sdk, &names, webhook_attempts)
        .await
        .expect("provisioning test resources");
    let store = Arc::new(DynamoStore::new(morag_shared::aws::dynamodb(&sdk), &names.table));
    let (key_a, _) = morag_cli::keys::create(store.as_ref(), &"acme".parse().unwrap(), "test")
        .await
        .unwrap();
    let (key_b, _) = morag_cli::keys::create(store.as_ref(), &"globex".parse().unwrap(), "test")
        .await
        .unwrap();
    let aws = AwsSettings {
        endpoint_url: Some(endpoint),
    };
    let api = ApiSettings {
        table: names.table.clone(),
        auth_cache_ttl: Duration::from_secs(60),
    };
    let mut ingest_cfg = IngestConfig {
        api: api.clone(),
        uploads_bucket: names.bucket.clone(),
        processing_queue_url: resources.processing_queue_url.clone(),
        max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        target_policy: TargetPolicy::default(),
        aws: aws.clone(),
    };
    tweak(&mut ingest_cfg);
    let status_cfg = StatusConfig {
        api,
        cursor_secret: morag_shared::config::SecretString::from("test-cursor-secret-0123456789abcdef".to_owned()),
        webhook_queue_url: resources.webhook_queue_url.clone(),
        aws,
    };
    let mut env = TestEnv {
        ddb: morag_shared::aws::dynamodb(&sdk),
        s3: morag_shared::aws::s3(&sdk),
        sqs: morag_shared::aws::sqs(&sdk),
        ingest: morag_ingest::router(Arc::new(morag_ingest::Ingest::from_sdk(&sdk, &ingest_cfg))),
        status: morag_status::router(Arc::new(morag_status::Status::from_sdk(&sdk, &status_cfg))),
        sdk,
        store,
        resources,
        ingest_cfg,
        status_cfg,
        key_a,
        key_b,
        baseline_items: 0,
    };
    env.baseline_items = env.table_items().await;
    env
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }
}

/// Sends a request through a router, the way Lambda's adapter does.
pub async fn call<B>(router: &Router, request: Request<B>) -> TestResponse
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let response = router
        .clone()
        .oneshot(request.map(Body::new))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    TestResponse { status, headers, body }
}

impl TestEnv {
    /// Items in the table (moto's `ItemCount` is live; AWS's is not).
    pub async fn table_items(&self) -> i64 {
        self.ddb
            .describe_table()
            .table_name(&self.resources.names.table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.item_count)
            .unwrap_or(-1)
    }

    pub async fn bucket_objects(&self) -> usize {
        self.s3
            .list_objects_v2()
            .bucket(&self.resources.names.bucket)
            .send()
            .await
            .unwrap()
            .contents
            .map_or(0, |c| c.len())
    }

    pub async fn queued_jobs(&self) -> u64 {
        self.queue_depth(&self.resources.processing_queue_url).await
    }

    /// Messages on the webhook queue, visible or in flight.
    pub async fn webhook_queue_depth(&self) -> u64 {
        self.queue_depth(&self.resources.webhook_queue_url).await
    }

    async fn queue_depth(&self, queue_url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
    }

    /// Asserts that a request wrote nothing anywhere.
    pub async fn assert_nothing_written(&self, context: &str) {
        assert_eq!(
            self.table_items().await,
            self.baseline_items,
            "{context}: table items written"
        );
        assert_eq!(self.bucket_objects().await, 0, "{context}: objects written");
        assert_eq!(self.queued_jobs().await, 0, "{context}: jobs enqueued");
    }

    /// Receives up to 10 jobs from the processing queue (and deletes them).
    pub async fn receive_jobs(&self) -> Vec<Value> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.resources.processing_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let mut jobs = Vec::new();
        for m in out.messages.unwrap_or_default() {
            jobs.push(serde_json::from_str(m.body().unwrap()).unwrap());
            self.sqs
                .delete_message()
                .queue_url(&self.resources.processing_queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        jobs
    }

    pub async fn object_bytes(&self, key: &str) -> Vec<u8> {
        self.s3
            .get_object()
            .bucket(&self.resources.names.bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec()
    }
}

/// A `pending` task with a chosen id, for tests that need one to exist.
pub fn sample_task(task_id: &str, tenant: &str) -> morag_shared::domain::Task {
    use morag_shared::domain::{Source, SourceType, Task};
    Task::pending(
        task_id.parse().expect("task id"),
        tenant.parse().expect("tenant"),
        SourceType::Document,
        Source::Url {
            url: "https://example.com/".into(),
        },
        None,
        Default::default(),
        morag_shared::time::now(),
    )
}

/// The keys of a JSON object, sorted (for asserting a contract's exact shape).
pub fn sorted_keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

impl TestEnv {
    /// The recorder wired to this env's table and status-events DLQ.
    pub fn recorder(&self) -> morag_recorder::Recorder {
        morag_recorder::Recorder::from_sdk(
            &self.sdk,
            &morag_shared::config::RecorderConfig {
                table: self.resources.names.table.clone(),
                status_events_dlq_url: self.resources.status_events_dlq_url.clone(),
                webhook_queue_url: self.resources.webhook_queue_url.clone(),
                retention: morag_shared::ports::Retention {
                    history: Duration::from_secs(7 * 86_400),
                    ended_task: Duration::from_secs(30 * 86_400),
                },
                aws: self.ingest_cfg.aws.clone(),
            },
        )
    }

    /// The processor wired to this env's queues, with an outbound policy.
    pub fn processor(&self, policy: TargetPolicy) -> morag_processor::Processor {
        morag_processor::Processor::from_sdk(
            &self.sdk,
            &morag_shared::config::ProcessorConfig {
                status_events_queue_url: self.resources.status_events_queue_url.clone(),
                processing_dlq_url: self.resources.processing_dlq_url.clone(),
                max_source_bytes: DEFAULT_MAX_UPLOAD_BYTES,
                fetch_timeout: Duration::from_secs(5),
                chunk_chars: 200,
                target_policy: policy,
                aws: self.ingest_cfg.aws.clone(),
            },
        )
    }

    /// Runs the processor, then the recorder, through local event-source
    /// mappings until both queues are empty. Returns the batches run.
    pub async fn run_pipeline(&self, processor: &morag_processor::Processor) -> usize {
        let recorder = self.recorder();
        let mut batches = 0;
        loop {
            let jobs = morag_cli::esm::poll_once(
                &self.sqs,
                &self.resources.processing_queue_url,
                10,
                Duration::ZERO,
                |b| processor.handle(b),
            )
            .await
            .unwrap();
            let events = morag_cli::esm::poll_once(
                &self.sqs,
                &self.resources.status_events_queue_url,
                10,
                Duration::ZERO,
                |b| recorder.handle(b),
            )
            .await
            .unwrap();
            batches += usize::from(jobs.received > 0) + usize::from(events.received > 0);
            if jobs.received == 0 && events.received == 0 {
                return batches;
            }
        }
    }

    /// Sends raw bodies to the status-events queue.
    pub async fn send_status_events(&self, bodies: &[String]) {
        for body in bodies {
            self.sqs
                .send_message()
                .queue_url(&self.resources.status_events_queue_url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    }

    /// Drains a dead-letter queue: (body, reason attribute) pairs.
    pub async fn drain_dlq(&self, queue_url: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let res = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            let msgs = res.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get("morag_reason"))
                    .and_then(|v| v.string_value())
                    .unwrap_or("")
                    .to_owned();
                out.push((m.body().unwrap_or("").to_owned(), reason));
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// A GET through the status router.
    pub async fn get(&self, key: &str, path: &str) -> TestResponse {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        call(&self.status, request).await
    }
}

impl TestEnv {
    /// Creates task `task_id` of `tenant` with one webhook delivery, written
    /// the way the recorder writes them (one transaction with the event).
    pub async fn insert_delivery(
        &self,
        task_id: &str,
        tenant: &str,
        delivery_id: &str,
        url: &str,
        state: morag_shared::ports::DeliveryState,
    ) -> morag_shared::ports::Delivery {
        use morag_shared::ports::TaskStore;
        let task = sample_task(task_id, tenant);
        self.store.create_task(&task, None).await.expect("task");
        let mut after = task.clone();
        after.event_seq = 1;
        let entry = morag_shared::domain::HistoryEntry {
            seq: 1,
            event_id: "e".into(),
            timestamp: morag_shared::time::now(),
            status: morag_shared::domain::TaskStatus::Started,
            progress: 0.0,
            message: "m".into(),
            metadata: Default::default(),
        };
        let delivery = morag_shared::ports::Delivery {
            task_id: task.task_id,
            tenant: task.tenant.clone(),
            delivery_id: delivery_id.into(),
            event_type: morag_shared::webhook::WebhookEvent::TaskStarted,
            url: url.into(),
            payload: r#"{"event_type":"task_started"}"#.into(),
            state,
            created_at: morag_shared::time::now(),
            enqueued: true,
            cycle: 0,
            attempts: Vec::new(),
        };
        let retention = morag_shared::ports::Retention {
            history: Duration::from_secs(3600),
            ended_task: Duration::from_secs(3600),
        };
        self.store
            .apply_event(&task, &after, &entry, std::slice::from_ref(&delivery), &retention)
            .await
            .expect("delivery");
        delivery
    }
}

/// A status-event message body as a pipeline sends it; `completed` carries
/// `result: {"chunks": 2}`, `failed` an error.
pub fn status_event(
    task_id: &str,
    event_id: &str,
    status: &str,
    progress: Option<f64>,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut v = serde_json::json!({"event_id": event_id, "task_id": task_id, "status": status, "occurred_at": at});
    if let Some(p) = progress {
        v["progress"] = p.into();
    }
    match status {
        "completed" => v["result"] = serde_json::json!({"chunks": 2}),
        "failed" => v["error"] = "boom".into(),
        _ => {}
    }
    v.to_string()
}

impl TestEnv {
    /// Runs the recorder over the status-events queue until it is empty,
    /// asserting that no record fails its batch; returns the records received.
    pub async fn record_all(&self) -> usize {
        let recorder = self.recorder();
        let mut received = 0;
        loop {
            let p = morag_cli::esm::poll_once(
                &self.sqs,
                &self.resources.status_events_queue_url,
                10,
                Duration::ZERO,
                |b| recorder.handle(b),
            )
            .await
            .expect("poll");
            assert_eq!(p.failed, 0, "no record may fail the batch");
            if p.received == 0 {
                return received;
            }
            received += p.received;
        }
    }
}
