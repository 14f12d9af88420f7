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
    morag_cli::stack::seed_local_key(&env.store).await.unwrap();
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

#[tokio::test]
async fn the_sqs_fixtures_run_through_the_recorder_and_the_processor() {
    use aws_lambda_events::event::sqs::SqsEvent;
    let env = spawn_env().await;
    env.store
        .create_task(&sample_task(FIXTURE_TASK, "local"), None)
        .await
        .unwrap();

    let batch: SqsEvent = serde_json::from_str(include_str!("../../../events/sqs-status-events.json")).unwrap();
    let (response, stats) = env.recorder().handle_with_stats(batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((stats.applied, stats.duplicate, stats.parked_malformed), (2, 1, 1));
    let task = env
        .store
        .get_task(&FIXTURE_TASK.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.status.as_str(), task.progress, task.message.as_str()),
        ("progress", 0.5, "Halfway")
    );
    let parked = env.drain_dlq(&env.resources.status_events_dlq_url).await;
    assert_eq!(
        parked.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
        ["invalid_progress"]
    );

    // the processing job reads its object from the bucket the fixture names
    let s3 = &env.s3;
    let _ = s3.create_bucket().bucket("morag-fixture-uploads").send().await;
    s3.put_object()
        .bucket("morag-fixture-uploads")
        .key(format!("uploads/local/{FIXTURE_TASK}/notes.md"))
        .content_type("text/markdown")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"# Notes\n\nOne paragraph.\n\nAnother one.",
        ))
        .send()
        .await
        .unwrap();
    let batch: SqsEvent = serde_json::from_str(include_str!("../../../events/sqs-processing-job.json")).unwrap();
    let response = env
        .processor(morag_shared::outbound::TargetPolicy::default())
        .handle(batch)
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let parked = env.drain_dlq(&env.resources.processing_dlq_url).await;
    assert_eq!(parked.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(), ["invalid_job"]);
    // the processor's reports reach the status-events queue; the recorder applies them
    env.run_pipeline(&env.processor(morag_shared::outbound::TargetPolicy::default()))
        .await;
    let task = env
        .store
        .get_task(&FIXTURE_TASK.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status.as_str(), "completed");
    assert_eq!(task.result.unwrap()["words"], 6);
}
