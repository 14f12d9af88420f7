//! Test and benchmark support: `spawn_env()` gives each test its own table,
//! bucket and queues on the shared emulator (moto server, started by
//! `make test`), plus helpers to call the real routers and to count what was
//! written. `runtime` is a Lambda Runtime API emulator for running the real
//! release binaries.

pub mod multipart;
pub mod receiver;
pub mod runtime;
pub mod schema;
pub mod soak;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::QueueAttributeName;
use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use morag_cli::stack::{self, LocalStack};
use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::config::{IngestConfig, ProcessorConfig, RecorderConfig, SenderConfig, StatusConfig};
use morag_shared::domain::delivery::RetrySchedule;
use morag_shared::outbound::TargetPolicy;

/// The emulator's endpoint, from `MORAG_TEST_ENDPOINT` (set by `make test`).
pub fn endpoint() -> String {
    std::env::var("MORAG_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("MORAG_TEST_ENDPOINT is not set: run the integration tests with `make test`, which starts moto server")
    })
}

/// The cursor secret of every test env (the template's is a Secrets Manager
/// reference the emulator cannot resolve).
pub const TEST_CURSOR_SECRET: &str = "test-cursor-secret-0123456789abcdef";

/// The names of a test's table and bucket.
#[derive(Debug, Clone)]
pub struct Names {
    pub table: String,
    pub bucket: String,
}

/// A test's resources: the stack's outputs.
#[derive(Debug, Clone)]
pub struct Resources {
    pub names: Names,
    pub processing_queue_url: String,
    pub processing_dlq_url: String,
    pub status_events_queue_url: String,
    pub status_events_dlq_url: String,
    pub webhook_queue_url: String,
    pub webhook_dlq_url: String,
    pub secrets_key_arn: String,
}

impl Resources {
    /// The stack's table, sealing signing secrets with the stack's key (as
    /// the functions do).
    pub fn store(&self, sdk: &SdkConfig) -> DynamoStore {
        DynamoStore::new(aws::dynamodb(sdk), &self.names.table).with_secrets_cipher(Arc::new(
            morag_shared::adapters::kms::KmsCipher::new(aws::kms(sdk), &self.secrets_key_arn),
        ))
    }

    pub fn of(stack: &LocalStack) -> anyhow::Result<Self> {
        let out = |k: &str| stack.output(k).map(str::to_owned);
        Ok(Self {
            names: Names {
                table: out("TableName")?,
                bucket: out("UploadsBucketName")?,
            },
            processing_queue_url: out("ProcessingQueueUrl")?,
            processing_dlq_url: out("ProcessingDLQUrl")?,
            status_events_queue_url: out("StatusEventsQueueUrl")?,
            status_events_dlq_url: out("StatusEventsDLQUrl")?,
            webhook_queue_url: out("WebhookQueueUrl")?,
            webhook_dlq_url: out("WebhookDLQUrl")?,
            secrets_key_arn: out("SigningSecretsKeyArn")?,
        })
    }
}

/// One test's world: its own stack (template.yaml deployed on the emulator),
/// the real routers wired to it from the stack's own function configuration,
/// and API keys for two tenants.
pub struct TestEnv {
    pub sdk: SdkConfig,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub store: Arc<DynamoStore>,
    pub stack: LocalStack,
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

/// Unique, lower-case stack name.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// A global subscriber that records nothing but answers every callsite
/// "sometimes". Without one, a callsite first hit by one test while another
/// test is installing its thread-local subscriber (the log tests) can be
/// cached as never enabled (tracing's callsite-interest race), and that
/// test's subscriber never sees the event.
struct Quiet;

impl tracing::Subscriber for Quiet {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs [`Quiet`] once per test binary, before any function code runs.
pub fn quiet_global_subscriber() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Quiet);
    });
}

pub async fn spawn_env() -> TestEnv {
    spawn_env_with(|_| {}).await
}

/// Like `spawn_env`, with a chance to change the ingest configuration (the
/// routers are built after `tweak`).
pub async fn spawn_env_with(tweak: impl FnOnce(&mut IngestConfig)) -> TestEnv {
    spawn_env_configured(&RetrySchedule::default(), tweak).await
}

/// Like `spawn_env_with`, with the template's `WebhookRetrySchedule` set to
/// the schedule the test uses.
pub async fn spawn_env_configured(schedule: &RetrySchedule, tweak: impl FnOnce(&mut IngestConfig)) -> TestEnv {
    quiet_global_subscriber();
    let endpoint = endpoint();
    let sdk = aws::local(&endpoint);
    let stack = LocalStack::deploy(
        &endpoint,
        &unique_prefix(),
        &[("WebhookRetrySchedule", schedule.to_string())],
    )
    .await
    .expect("deploying template.yaml as a test stack");
    let resources = Resources::of(&stack).expect("stack outputs");
    let store = Arc::new(resources.store(&sdk));
    let (key_a, _) = morag_cli::keys::create(store.as_ref(), &"acme".parse().unwrap(), "test")
        .await
        .unwrap();
    let (key_b, _) = morag_cli::keys::create(store.as_ref(), &"globex".parse().unwrap(), "test")
        .await
        .unwrap();
    let mut ingest_cfg: IngestConfig = stack
        .config(stack::INGEST, &stack::local_overrides(&endpoint, false))
        .expect("ingest config from the stack");
    tweak(&mut ingest_cfg);
    let mut status_overrides = stack::local_overrides(&endpoint, false);
    status_overrides.push(("MORAG_CURSOR_SECRET", TEST_CURSOR_SECRET.to_owned()));
    let mut status_cfg: StatusConfig = stack
        .config(stack::STATUS, &status_overrides)
        .expect("status config from the stack");
    // endpoint URLs may point where task webhook URLs may
    status_cfg.target_policy = ingest_cfg.target_policy;
    let mut env = TestEnv {
        ddb: aws::dynamodb(&sdk),
        s3: aws::s3(&sdk),
        sqs: aws::sqs(&sdk),
        ingest: morag_ingest::router(Arc::new(morag_ingest::wiring::build(&sdk, &ingest_cfg))),
        status: morag_status::router(Arc::new(morag_status::wiring::build(&sdk, &status_cfg))),
        sdk,
        store,
        stack,
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
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            // messages sent back to wait (a replay's pace, a breaker, a rate limit)
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
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

/// A `task_started` delivery of `task` to `url`, as the event's transaction
/// writes it (pending, not enqueued, no attempt); tests set what differs.
pub fn sample_delivery(
    task: &morag_shared::domain::Task,
    delivery_id: &str,
    url: &str,
) -> morag_shared::domain::Delivery {
    use morag_shared::domain::{Delivery, DeliveryState, WebhookEvent};
    Delivery {
        task_id: task.task_id,
        tenant: task.tenant.clone(),
        delivery_id: delivery_id.parse().expect("delivery id"),
        event_type: WebhookEvent::TaskStarted,
        url: url.to_owned(),
        payload: r#"{"event_type":"task_started"}"#.to_owned(),
        sequence: 1,
        endpoint_id: None,
        state: DeliveryState::Pending,
        created_at: morag_shared::time::now(),
        enqueued: false,
        cycle: 0,
        attempts: Vec::new(),
        attempts_total: 0,
    }
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
    /// Local-mode settings on top of the stack's environment.
    fn overrides(&self, policy: TargetPolicy, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut v = stack::local_overrides(&endpoint(), false);
        v.push(("MORAG_ALLOW_HTTP_WEBHOOKS", policy.allow_http.to_string()));
        v.push(("MORAG_ALLOW_LOOPBACK_WEBHOOKS", policy.allow_loopback.to_string()));
        v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
        v
    }

    /// A function's environment from the stack, as its binary gets it (local
    /// overrides, and the test cursor secret for the status function).
    pub fn function_env(&self, logical_id: &str) -> Vec<(String, String)> {
        let mut overrides = self.overrides(TargetPolicy::default(), &[]);
        overrides.push(("MORAG_CURSOR_SECRET", TEST_CURSOR_SECRET.to_owned()));
        self.stack
            .env(logical_id, &overrides)
            .expect("function environment from the stack")
            .into_iter()
            .collect()
    }

    /// The recorder as the stack configures it.
    pub fn recorder(&self) -> morag_recorder::Recorder {
        let cfg: RecorderConfig = self
            .stack
            .config(stack::RECORDER, &self.overrides(TargetPolicy::default(), &[]))
            .expect("recorder config from the stack");
        morag_recorder::wiring::build(&self.sdk, &cfg)
    }

    /// The watchdog as the stack configures it.
    pub fn watchdog(&self) -> morag_watchdog::Watchdog {
        self.watchdog_over(&self.sdk)
    }

    /// The watchdog over `sdk` (see [`TestEnv::patient_sdk`]).
    pub fn watchdog_over(&self, sdk: &SdkConfig) -> morag_watchdog::Watchdog {
        let cfg: morag_shared::config::WatchdogConfig = self
            .stack
            .config(stack::WATCHDOG, &self.overrides(TargetPolicy::default(), &[]))
            .expect("watchdog config from the stack");
        morag_watchdog::wiring::build(sdk, &cfg)
    }

    /// The emulator with a minute per request instead of the functions' 4 s:
    /// for tests over tables of tens of thousands of items, which the
    /// single-threaded emulator scans on every index query (slow under the
    /// suite's load; real DynamoDB reads only the keys asked for). What such
    /// a test measures is the items evaluated, not the time.
    pub fn patient_sdk(&self) -> SdkConfig {
        patient(&self.sdk)
    }

    /// The processor as the stack configures it, with an outbound policy,
    /// 200-character chunks and a 5 s fetch timeout.
    pub fn processor(&self, policy: TargetPolicy) -> morag_processor::Processor {
        let cfg: ProcessorConfig = self
            .stack
            .config(
                stack::PROCESSOR,
                &self.overrides(
                    policy,
                    &[("MORAG_CHUNK_CHARS", "200"), ("MORAG_FETCH_TIMEOUT_SECONDS", "5")],
                ),
            )
            .expect("processor config from the stack");
        morag_processor::wiring::build(&self.sdk, &cfg).expect("processor")
    }

    /// The sender's configuration from the stack, with a retry schedule, a
    /// 1 s connect timeout, a request timeout and an outbound policy.
    pub fn sender_config(&self, schedule: &RetrySchedule, timeout: Duration, policy: TargetPolicy) -> SenderConfig {
        let schedule = schedule.to_string();
        let timeout = timeout.as_secs().max(1).to_string();
        self.stack
            .config(
                stack::WEBHOOK_SENDER,
                &self.overrides(
                    policy,
                    &[
                        ("MORAG_WEBHOOK_RETRY_SCHEDULE", &schedule),
                        ("MORAG_WEBHOOK_CONNECT_TIMEOUT_SECONDS", "1"),
                        ("MORAG_WEBHOOK_TIMEOUT_SECONDS", &timeout),
                    ],
                ),
            )
            .expect("sender config from the stack")
    }

    /// One batch (up to 10) from `queue_url` through `handler`, as the
    /// event-source mapping delivers it; nothing waits for messages.
    pub async fn poll<F, Fut>(&self, queue_url: &str, handler: F) -> morag_cli::esm::Polled
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
        morag_cli::esm::poll_once(&self.sqs, queue_url, 10, Duration::ZERO, handler)
            .await
            .expect("poll")
    }

    /// Runs the processor, then the recorder, through local event-source
    /// mappings until both queues are empty. Returns the batches run.
    pub async fn run_pipeline(&self, processor: &morag_processor::Processor) -> usize {
        let recorder = self.recorder();
        let mut batches = 0;
        loop {
            let jobs = self
                .poll(&self.resources.processing_queue_url, |b| processor.handle(b))
                .await;
            let events = self
                .poll(&self.resources.status_events_queue_url, |b| recorder.handle(b))
                .await;
            batches += usize::from(jobs.received > 0) + usize::from(events.received > 0);
            if jobs.received == 0 && events.received == 0 {
                return batches;
            }
        }
    }

    /// Sends raw bodies to the status-events queue.
    pub async fn send_status_events(&self, bodies: &[String]) {
        self.send_messages(&self.resources.status_events_queue_url, bodies)
            .await;
    }

    /// Sends each of `bodies` to `queue_url`, one message each.
    pub async fn send_messages(&self, queue_url: &str, bodies: &[String]) {
        for body in bodies {
            self.sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    }

    /// Drains a dead-letter queue: (body, reason attribute) pairs.
    pub async fn drain_dlq(&self, queue_url: &str) -> Vec<(String, String)> {
        drain_queue(&self.sqs, queue_url).await.expect("drain")
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
        state: morag_shared::domain::DeliveryState,
    ) -> morag_shared::domain::Delivery {
        use morag_shared::ports::TaskStore;
        let task = sample_task(task_id, tenant);
        self.store.create_task(&task, None).await.expect("task");
        let delivery = morag_shared::domain::Delivery {
            task_id: task.task_id,
            tenant: task.tenant.clone(),
            delivery_id: delivery_id.parse().expect("delivery id"),
            event_type: morag_shared::domain::WebhookEvent::TaskStarted,
            url: url.into(),
            payload: r#"{"event_type":"task_started"}"#.into(),
            sequence: 1,
            endpoint_id: None,
            state,
            created_at: morag_shared::time::now(),
            enqueued: true,
            cycle: 0,
            attempts: Vec::new(),
            attempts_total: 0,
        };
        let mut after = task.clone();
        after.event_seq = 1;
        self.write_event_with_delivery(&task, &after, &delivery).await;
        delivery
    }

    /// Writes `after` (one event past `before`) with its history entry and
    /// `delivery`, in the recorder's one transaction, and nothing else: no
    /// enqueue, as if the recorder died right after its write.
    pub async fn write_event_with_delivery(
        &self,
        before: &morag_shared::domain::Task,
        after: &morag_shared::domain::Task,
        delivery: &morag_shared::domain::Delivery,
    ) {
        use morag_shared::ports::TaskStore;
        let entry = morag_shared::domain::HistoryEntry {
            seq: after.event_seq,
            event_id: format!("e{}", after.event_seq),
            timestamp: morag_shared::time::now(),
            status: morag_shared::domain::TaskStatus::Started,
            progress: 0.0,
            message: "m".into(),
            metadata: Default::default(),
        };
        let retention = morag_shared::domain::Retention {
            history: Duration::from_secs(3600),
            ended_task: Duration::from_secs(3600),
        };
        self.store
            .apply_event(before, after, &entry, std::slice::from_ref(delivery), &retention)
            .await
            .expect("event and delivery");
    }
}

/// Runs `morag ingest` on a file holding `bytes`, named `name`, in a temp
/// directory, with `args` (`--api`, `--key`, ...); asserts it succeeds and
/// answers the task id it printed.
pub async fn morag_ingest(name: &str, bytes: &[u8], args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(unique_prefix());
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("file");
    let out = tokio::process::Command::new(debug_binary("morag"))
        .arg("ingest")
        .arg(&path)
        .args(args)
        .output()
        .await
        .expect("morag ingest");
    std::fs::remove_dir_all(&dir).expect("temp dir removed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
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
            let p = self
                .poll(&self.resources.status_events_queue_url, |b| recorder.handle(b))
                .await;
            assert_eq!(p.failed, 0, "no record may fail the batch");
            if p.received == 0 {
                return received;
            }
            received += p.received;
        }
    }
}

/// A fresh stack for a benchmark (tests use `spawn_env`).
pub struct Deployed {
    pub sdk: SdkConfig,
    pub stack: LocalStack,
    pub resources: Resources,
    pub store: Arc<DynamoStore>,
}

impl Deployed {
    /// A function's environment from the stack, for its binary: local
    /// overrides (http and loopback targets allowed) and a cursor secret.
    pub fn function_env(&self, logical_id: &str, endpoint: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut overrides = stack::local_overrides(endpoint, true);
        overrides.push(("MORAG_CURSOR_SECRET", TEST_CURSOR_SECRET.to_owned()));
        Ok(self.stack.env(logical_id, &overrides)?.into_iter().collect())
    }
}

/// Deploys `template.yaml` as a fresh stack on the emulator at `endpoint`.
pub async fn deploy(endpoint: &str) -> anyhow::Result<Deployed> {
    deploy_with(endpoint, &[]).await
}

/// `deploy` with template parameters.
pub async fn deploy_with(endpoint: &str, params: &[(&str, String)]) -> anyhow::Result<Deployed> {
    let sdk = aws::local(endpoint);
    let stack = LocalStack::deploy(endpoint, &unique_prefix(), params).await?;
    let resources = Resources::of(&stack)?;
    let store = Arc::new(resources.store(&sdk));
    Ok(Deployed {
        sdk,
        stack,
        resources,
        store,
    })
}

/// `sdk` with minutes, not the functions' seconds, per call: for work that
/// makes moto slow (its transactions copy the table once per item).
pub fn patient(sdk: &SdkConfig) -> SdkConfig {
    sdk.to_builder()
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .build()
}

/// Receives and deletes everything on a queue (a dead-letter queue, at the
/// end of a test): (body, `morag_reason` attribute) pairs.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        let res = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await?;
        let msgs = res.messages.unwrap_or_default();
        if msgs.is_empty() {
            return Ok(out);
        }
        for m in msgs {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("morag_reason"))
                .and_then(|v| v.string_value())
                .unwrap_or("")
                .to_owned();
            out.push((m.body().unwrap_or("").to_owned(), reason));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or(""))
                .send()
                .await?;
        }
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A binary of the workspace, built next to the test binary (`make test`
/// builds them all first).
pub fn debug_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe.parent().and_then(|d| d.parent()).expect("target dir").join(name);
    assert!(path.exists(), "{} missing: make test builds it", path.display());
    path
}

/// `morag dev` as `make dev` runs it, on a free port and a fresh stack, with
/// tenant `local`'s webhook secret; answers once it listens.
pub async fn spawn_morag_dev(webhook_secret: &str) -> (tokio::process::Child, u16) {
    let (child, port, _) = spawn_morag_dev_with(webhook_secret, &[]).await;
    (child, port)
}

/// `spawn_morag_dev` with extra environment variables; also answers the
/// local stack's name.
pub async fn spawn_morag_dev_with(webhook_secret: &str, env: &[(&str, &str)]) -> (tokio::process::Child, u16, String) {
    let port = free_port();
    let stack_name = unique_prefix();
    let child = tokio::process::Command::new(debug_binary("morag"))
        .envs(env.iter().copied())
        .env("MORAG_LOCAL_WEBHOOK_SECRET", webhook_secret)
        .env("MORAG_AWS_ENDPOINT_URL", endpoint())
        .args(["dev", "--addr", &format!("127.0.0.1:{port}"), "--stack", &stack_name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("morag dev");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("http://127.0.0.1:{port}/")).send().await.is_ok() {
            return (child, port, stack_name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("morag dev did not start listening");
}

/// A GET with `make dev`'s local key, as JSON.
pub async fn get_local_json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .header("authorization", format!("Bearer {}", morag_cli::stack::LOCAL_DEV_KEY))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// Writes `n` finished tasks straight into `table` (BatchWriteItem, 25 at a
/// time): the keys and listing attributes the adapter writes for an ended
/// task, and, like it, no due-index attributes. For tests and benchmarks
/// that need a full table.
pub async fn fill_finished_tasks(ddb: &aws_sdk_dynamodb::Client, table: &str, n: usize) {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let requests: Vec<WriteRequest> = (0..n)
        .map(|i| {
            let id = morag_shared::domain::TaskId::new();
            let item = [
                ("pk", s(&format!("TASK#{id}"))),
                ("sk", s("STATE")),
                ("task_id", s(&id.to_string())),
                ("tenant", s("filler")),
                ("status", s(if i % 2 == 0 { "completed" } else { "failed" })),
                ("gsi2pk", s("TASKS#filler")),
                ("gsi2sk", s(&format!("2026-11-01T00:00:00.000Z#{id}"))),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().expect("put request"))
                .build()
        })
        .collect();
    for chunk in requests.chunks(25) {
        let mut pending = Some(chunk.to_vec());
        while let Some(batch) = pending.take().filter(|r| !r.is_empty()) {
            let out = ddb
                .batch_write_item()
                .request_items(table, batch)
                .send()
                .await
                .expect("BatchWriteItem");
            pending = out.unprocessed_items.and_then(|mut u| u.remove(table));
        }
    }
}
