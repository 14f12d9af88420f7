//! The real function binaries, run as Lambda runs them: through the Runtime
//! API emulator, with their configuration in the environment.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use morag_cli::stack;
use morag_shared::ports::TaskStore;
use morag_tests::runtime::RuntimeEmulator;
use morag_tests::{sample_delivery, sample_task, spawn_env};

/// `target/debug/<name>`, built by `make test` before the tests run.
fn binary(name: &str) -> PathBuf {
    morag_tests::debug_binary(name)
}

/// `binary` under a fresh emulator, once it polls for work.
async fn started(binary: &std::path::Path, vars: &[(String, String)]) -> (RuntimeEmulator, tokio::process::Child) {
    let emulator = RuntimeEmulator::start().await;
    let child = emulator.spawn(binary, vars).unwrap();
    assert!(
        emulator.wait_ready(Duration::from_secs(20)).await.is_some(),
        "{} never polled for work",
        binary.display()
    );
    (emulator, child)
}

fn lambda_response(outcome: morag_tests::runtime::Outcome) -> (u16, Value) {
    let bytes = outcome.unwrap_or_else(|e| panic!("invocation error: {}", String::from_utf8_lossy(&e)));
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    // a 204 has no body
    let body = match response["body"].as_str() {
        None | Some("") => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap(),
    };
    (response["statusCode"].as_u64().unwrap() as u16, body)
}

#[tokio::test]
async fn the_status_binary_answers_api_gateway_events() {
    let env = spawn_env().await;
    morag_cli::stack::seed_local_key(&env.store).await.unwrap();
    let mut task = sample_task("0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b", "local");
    task.source_type = morag_shared::domain::SourceType::Text;
    env.store.create_task(&task, None).await.unwrap();

    let (emulator, mut child) = started(&binary("morag-status"), &env.function_env(stack::STATUS)).await;

    let (status, body) = lambda_response(emulator.invoke(include_str!("../../../events/status-get.json")).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task_id"], "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b");
    assert_eq!(body["source_type"], "text");

    let (status, body) = lambda_response(
        emulator
            .invoke(include_str!("../../../events/status-get-bad-id.json"))
            .await,
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_task_id");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_ingest_binary_accepts_a_url_and_enqueues_the_job() {
    let env = spawn_env().await;
    morag_cli::stack::seed_local_key(&env.store).await.unwrap();
    let (emulator, mut child) = started(&binary("morag-ingest"), &env.function_env(stack::INGEST)).await;

    let (status, body) = lambda_response(emulator.invoke(include_str!("../../../events/ingest-url.json")).await);
    assert_eq!(status, 202, "{body}");
    assert_eq!(env.queued_jobs().await, 1);
    let (status, body) = lambda_response(emulator.invoke(include_str!("../../../events/ingest-file.json")).await);
    assert_eq!(status, 202, "{body}");
    assert_eq!(env.bucket_objects().await, 1);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_binary_without_its_configuration_refuses_to_start() {
    let emulator = RuntimeEmulator::start().await;
    let mut child = emulator.spawn(&binary("morag-ingest"), &[]).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(!status.success());
    assert!(
        emulator.first_next().is_none(),
        "must not take work while misconfigured"
    );
}

#[tokio::test]
async fn the_recorder_binary_reports_partial_batch_failures_as_lambda_expects() {
    let env = spawn_env().await;
    env.store
        .create_task(&sample_task("0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b", "local"), None)
        .await
        .unwrap();
    let vars = env.function_env(stack::RECORDER);
    let (emulator, mut child) = started(&binary("morag-recorder"), &vars).await;

    let out = emulator
        .invoke(include_str!("../../../events/sqs-status-events.json"))
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(response, serde_json::json!({"batchItemFailures": []}));
    let task = env
        .store
        .get_task(&"0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.event_seq, 2);

    // with the table gone, every record is reported failed (and nothing is lost)
    env.ddb
        .delete_table()
        .table_name(&env.resources.names.table)
        .send()
        .await
        .unwrap();
    let out = emulator
        .invoke(include_str!("../../../events/sqs-status-events.json"))
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&out).unwrap();
    let failed = response["batchItemFailures"].as_array().unwrap();
    assert_eq!(failed.len(), 3, "{response}");
    assert!(failed
        .iter()
        .all(|f| f["itemIdentifier"].as_str().unwrap().starts_with("059f36b4-")));
    child.kill().await.unwrap();
}

/// What each API fixture answers, in the order they run (they build on each
/// other: the endpoint is patched, recovered, then deleted).
const API_FIXTURES: [(&str, u16); 32] = [
    ("status-get", 200),
    ("status-get-unknown", 404),
    ("status-get-bad-id", 400),
    ("status-get-wrong-key", 401),
    ("status-history", 200),
    ("status-timeline", 200),
    ("openapi-get", 200),
    ("status-recent", 200),
    ("tasks-list", 200),
    ("status-webhooks", 200),
    ("status-webhooks-redeliver", 202),
    ("webhooks-secret-get", 200),
    ("webhooks-secret-rotate", 200),
    ("webhooks-public-keys-get", 200),
    ("webhooks-public-keys-rotate", 200),
    ("webhooks-signing-put", 200),
    ("endpoints-list", 200),
    ("endpoints-create", 201),
    ("endpoints-get", 200),
    ("endpoints-patch", 200),
    ("endpoints-deliveries", 200),
    ("endpoints-recover", 202),
    ("endpoints-delete", 204),
    ("ingest-url", 202),
    ("ingest-url-no-auth", 401),
    ("ingest-url-bad-source-type", 422),
    ("ingest-url-private-webhook", 422),
    ("ingest-file", 202),
    ("ingest-file-empty", 422),
    ("ingest-file-wrong-content-type", 415),
    ("uploads-create", 201),
    ("ingest-upload", 202),
];

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every route has an `events/` fixture (its `routeKey`), and every API
/// fixture gives its documented answer from its real binary under the
/// Runtime API emulator, as `sam local invoke -e events/X.json` would.
#[tokio::test]
async fn every_api_fixture_answers_from_its_binary() {
    use morag_shared::domain::{Delivery, DeliveryState, Endpoint, EndpointId, Upload, UploadId};
    use morag_shared::ports::{DeliveryStore, EndpointStore, UploadStore};
    let mut keys: Vec<String> = API_FIXTURES
        .iter()
        .map(|(name, _)| {
            let event: Value = serde_json::from_str(&fixture(name)).unwrap();
            event["routeKey"].as_str().unwrap().to_owned()
        })
        .collect();
    keys.sort();
    keys.dedup();
    for (method, path, _) in crate::auth::ROUTES.iter().chain(crate::auth::PUBLIC_ROUTES.iter()) {
        let key = format!(
            "{method} {}",
            path.replace("{task}", "{task_id}")
                .replace("{delivery}", "{delivery_id}")
                .replace("{endpoint}", "{endpoint_id}")
        );
        assert!(keys.contains(&key), "no events/ fixture for {key}");
    }

    let env = spawn_env().await;
    morag_cli::stack::seed_local_key(&env.store).await.unwrap();
    let task_id = "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b";
    let task = sample_task(task_id, "local");
    env.store.create_task(&task, None).await.unwrap();
    let now = morag_shared::time::now();
    // the task's failed delivery, to an endpoint of the tenant
    let endpoint_id: EndpointId = "ep_0123456789abcdef01234567".parse().unwrap();
    let endpoint = Endpoint {
        endpoint_id: endpoint_id.clone(),
        ..Endpoint::new(
            "local".parse().unwrap(),
            "https://hooks.example.com/fixture".into(),
            morag_shared::domain::WebhookEvent::ALL.to_vec(),
            now,
        )
    };
    env.store.create_endpoint(&endpoint).await.unwrap();
    let delivery = Delivery {
        endpoint_id: Some(endpoint_id),
        state: DeliveryState::Failed,
        enqueued: true,
        ..sample_delivery(&task, "msg_0123456789abcdef01234567", &endpoint.url)
    };
    env.store
        .insert_delivery(&delivery, now + chrono::Duration::days(1))
        .await
        .unwrap();
    // an upload whose object is in the bucket
    let bytes = b"# Retrieval notes\n\nChunk by paragraph.\n\nKeep headings with their text.\n";
    let upload_id: UploadId = "upl_0123456789abcdef0123456789abcdef".parse().unwrap();
    let upload = Upload {
        key: format!("uploads/local/{upload_id}/notes.md"),
        upload_id,
        tenant: "local".parse().unwrap(),
        filename: "notes.md".into(),
        content_type: "text/markdown".into(),
        size_bytes: bytes.len() as u64,
        sha256: None,
        created_at: now,
        expires_at: now + chrono::Duration::minutes(15),
        task_id: None,
    };
    env.s3
        .put_object()
        .bucket(&env.resources.names.bucket)
        .key(&upload.key)
        .content_type("text/markdown")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(bytes))
        .send()
        .await
        .unwrap();
    env.store.put_upload(&upload).await.unwrap();

    let (status_fn, mut status_child) = started(&binary("morag-status"), &env.function_env(stack::STATUS)).await;
    let (ingest_fn, mut ingest_child) = started(&binary("morag-ingest"), &env.function_env(stack::INGEST)).await;
    for (name, expected) in API_FIXTURES {
        let emulator = if name.starts_with("ingest") || name.starts_with("uploads") {
            &ingest_fn
        } else {
            &status_fn
        };
        let (status, body) = lambda_response(emulator.invoke(fixture(name)).await);
        assert_eq!(status, expected, "events/{name}.json: {body}");
    }
    status_child.kill().await.unwrap();
    ingest_child.kill().await.unwrap();
}

/// The webhook sender's binary takes `events/sqs-webhook-delivery.json`: the
/// delivery it names reaches its URL signed, once; the malformed record is
/// parked as `invalid_message`, not failed.
#[tokio::test]
async fn the_sender_binary_delivers_the_sqs_fixture() {
    use morag_shared::domain::{Delivery, DeliveryState};
    use morag_shared::ports::{DeliveryStore, SecretStore};
    let env = spawn_env().await;
    let task = sample_task("0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b", "local");
    env.store.create_task(&task, None).await.unwrap();
    let secret = crate::webhooks::SECRET;
    env.store.rotate_secret(&task.tenant, secret, None).await.unwrap();
    let receiver = morag_tests::receiver::TestReceiver::always(204).await;
    let delivery = Delivery {
        enqueued: true,
        ..sample_delivery(&task, "msg_0123456789abcdef01234567", &receiver.url())
    };
    env.store
        .insert_delivery(&delivery, morag_shared::time::now() + chrono::Duration::days(1))
        .await
        .unwrap();
    let mut vars = env.function_env(stack::WEBHOOK_SENDER);
    vars.push(("MORAG_ALLOW_HTTP_WEBHOOKS".into(), "true".into()));
    vars.push(("MORAG_ALLOW_LOOPBACK_WEBHOOKS".into(), "true".into()));
    let (emulator, mut child) = started(&binary("morag-webhook-sender"), &vars).await;
    let out = emulator
        .invoke(include_str!("../../../events/sqs-webhook-delivery.json"))
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(response, serde_json::json!({"batchItemFailures": []}));
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.header("webhook-id"), "msg_0123456789abcdef01234567");
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    let signer = morag_shared::domain::delivery::SigningSecret::parse(secret).unwrap();
    assert_eq!(
        r.header("webhook-signature"),
        signer.sign(r.header("webhook-id"), ts, &r.body)
    );
    let stored = env
        .store
        .get_delivery(&task.task_id, &delivery.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, DeliveryState::Succeeded);
    let parked = env.drain_dlq(&env.resources.webhook_dlq_url).await;
    assert_eq!(
        parked.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
        ["invalid_message"]
    );
    child.kill().await.unwrap();
}

/// The processor's binary takes `events/sqs-processing-job.json` (its
/// reports reach the status-events queue; the malformed record is parked as
/// `invalid_job`), and the watchdog's takes `events/schedule-watchdog.json`
/// (its answer is the run's report).
#[tokio::test]
async fn the_processor_and_watchdog_binaries_take_their_fixtures() {
    let env = spawn_env().await;
    env.store
        .create_task(&sample_task("0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b", "local"), None)
        .await
        .unwrap();
    let s3 = &env.s3;
    let _ = s3.create_bucket().bucket("morag-fixture-uploads").send().await;
    s3.put_object()
        .bucket("morag-fixture-uploads")
        .key("uploads/local/0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b/notes.md")
        .content_type("text/markdown")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"# Notes\n\nOne paragraph.\n\nAnother one.",
        ))
        .send()
        .await
        .unwrap();
    let (emulator, mut child) = started(&binary("morag-processor"), &env.function_env(stack::PROCESSOR)).await;
    let out = emulator
        .invoke(include_str!("../../../events/sqs-processing-job.json"))
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(response, serde_json::json!({"batchItemFailures": []}));
    let parked = env.drain_dlq(&env.resources.processing_dlq_url).await;
    assert_eq!(parked.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(), ["invalid_job"]);
    assert!(env.record_all().await >= 2, "started and completed reported");
    let task = env
        .store
        .get_task(&"0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status.as_str(), "completed");
    child.kill().await.unwrap();

    let (emulator, mut child) = started(&binary("morag-watchdog"), &env.function_env(stack::WATCHDOG)).await;
    let out = emulator
        .invoke(include_str!("../../../events/schedule-watchdog.json"))
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["out_of_time"], false, "{report}");
    assert!(report["entries_read"].is_u64(), "{report}");
    child.kill().await.unwrap();
}
