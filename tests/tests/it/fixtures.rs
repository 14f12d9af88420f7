//! Every `events/` fixture through the real handler, the way Lambda's
//! adapter turns an API Gateway v2 event into a request.

use http::StatusCode;

use morag_shared::ports::TaskStore;
use morag_tests::{call, sample_task, spawn_env, TestEnv};

const FIXTURE_TASK: &str = "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b";

macro_rules! fixture {
    ($name:literal) => {
        ($name, include_str!(concat!("../../../events/", $name, ".json")))
    };
}

async fn run(env: &TestEnv, (name, json): (&str, &str)) -> morag_tests::TestResponse {
    let request =
        lambda_http::request::from_str(json).unwrap_or_else(|e| panic!("{name}: not an API Gateway v2 event: {e}"));
    let router = if name.starts_with("ingest") {
        &env.ingest
    } else {
        &env.status
    };
    call(router, request).await
}

#[tokio::test]
async fn every_fixture_gives_its_documented_answer() {
    let env = spawn_env().await;
    morag_cli::local::seed_local_key(&env.store).await.unwrap();
    env.store
        .create_task(&sample_task(FIXTURE_TASK, "local"), None)
        .await
        .unwrap();
    let items_before = env.table_items().await;

    let bad = [
        (
            fixture!("ingest-file-empty"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_file",
        ),
        (
            fixture!("ingest-file-wrong-content-type"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            fixture!("ingest-url-bad-source-type"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_source_type",
        ),
        (
            fixture!("ingest-url-private-webhook"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook_url",
        ),
        (fixture!("ingest-url-no-auth"), StatusCode::UNAUTHORIZED, "unauthorized"),
        (fixture!("status-get-unknown"), StatusCode::NOT_FOUND, "not_found"),
        (
            fixture!("status-get-bad-id"),
            StatusCode::BAD_REQUEST,
            "invalid_task_id",
        ),
        (
            fixture!("status-get-wrong-key"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (fixture, status, code) in bad {
        let res = run(&env, fixture).await;
        assert_eq!(
            (res.status, res.error_code()),
            (status, code),
            "{}: {:?}",
            fixture.0,
            res.body
        );
    }
    assert_eq!(env.table_items().await, items_before);
    assert_eq!(env.bucket_objects().await, 0);
    assert_eq!(env.queued_jobs().await, 0);

    let res = run(&env, fixture!("status-get")).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["task_id"], FIXTURE_TASK);

    let res = run(&env, fixture!("ingest-url")).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    // API Gateway's Host and X-Forwarded-Proto make the status URL absolute
    let status_url = res.body["status_url"].as_str().unwrap();
    assert!(
        status_url.starts_with("https://abc123defg.execute-api.us-east-1.amazonaws.com/api/v1/status/"),
        "{status_url}"
    );

    let res = run(&env, fixture!("ingest-file")).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap();
    let key = format!("uploads/local/{task_id}/notes.md");
    assert_eq!(
        env.object_bytes(&key).await,
        b"# Retrieval notes\n\nChunk by paragraph.\n\nKeep headings with their text.\n"
    );
    assert_eq!(env.queued_jobs().await, 2);
}
