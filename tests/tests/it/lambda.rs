//! The real function binaries, run as Lambda runs them: through the Runtime
//! API emulator, with their configuration in the environment.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use morag_cli::stack;
use morag_shared::ports::TaskStore;
use morag_tests::runtime::RuntimeEmulator;
use morag_tests::{sample_task, spawn_env};

/// `target/debug/<name>`, built by `make test` before the tests run.
fn binary(name: &str) -> PathBuf {
    morag_tests::debug_binary(name)
}

fn lambda_response(outcome: morag_tests::runtime::Outcome) -> (u16, Value) {
    let bytes = outcome.unwrap_or_else(|e| panic!("invocation error: {}", String::from_utf8_lossy(&e)));
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap();
    (response["statusCode"].as_u64().unwrap() as u16, body)
}

#[tokio::test]
async fn the_status_binary_answers_api_gateway_events() {
    let env = spawn_env().await;
    morag_cli::stack::seed_local_key(&env.store).await.unwrap();
    let mut task = sample_task("0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b", "local");
    task.source_type = morag_shared::domain::SourceType::Text;
    env.store.create_task(&task, None).await.unwrap();

    let emulator = RuntimeEmulator::start().await;
    let mut child = emulator
        .spawn(&binary("morag-status"), &env.function_env(stack::STATUS))
        .unwrap();
    assert!(
        emulator.wait_ready(Duration::from_secs(20)).await.is_some(),
        "never polled for work"
    );

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
    let emulator = RuntimeEmulator::start().await;
    let mut child = emulator
        .spawn(&binary("morag-ingest"), &env.function_env(stack::INGEST))
        .unwrap();
    assert!(emulator.wait_ready(Duration::from_secs(20)).await.is_some());

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
    let emulator = RuntimeEmulator::start().await;
    let mut child = emulator.spawn(&binary("morag-recorder"), &vars).unwrap();
    assert!(
        emulator.wait_ready(Duration::from_secs(20)).await.is_some(),
        "never polled for work"
    );

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
