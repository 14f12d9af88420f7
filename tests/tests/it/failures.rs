//! A dependency failing half-way answers 503 and leaves no task stuck in
//! `pending` without a job, and no orphaned upload. Each case swaps one real
//! adapter for one pointing at a resource that does not exist on the
//! emulator, so that step fails the way an outage does.

use std::sync::Arc;

use http::StatusCode;

use morag_ingest::{Ingest, Limits};
use morag_shared::adapters::{dynamodb::DynamoStore, s3::S3BlobStore, sqs::SqsQueue};
use morag_shared::http::Authenticator;
use morag_tests::{call, spawn_env, TestEnv};

use crate::{doc_form, file_request, status_request};

enum Broken {
    S3,
    DynamoDb,
    Sqs,
}

fn ingest_with(env: &TestEnv, broken: Broken) -> axum::Router {
    let sdk = &env.sdk;
    let cfg = &env.ingest_cfg;
    let missing = format!("{}-missing", env.resources.names.table);
    let tasks = DynamoStore::new(
        morag_shared::adapters::aws::dynamodb(sdk),
        if matches!(broken, Broken::DynamoDb) {
            missing.as_str()
        } else {
            cfg.api.table.as_str()
        },
    );
    let bucket = if matches!(broken, Broken::S3) {
        format!("{}-missing", cfg.uploads_bucket)
    } else {
        cfg.uploads_bucket.clone()
    };
    let queue = if matches!(broken, Broken::Sqs) {
        format!("{}-missing", cfg.processing_queue_url)
    } else {
        cfg.processing_queue_url.clone()
    };
    let auth_store = Arc::new(DynamoStore::new(
        morag_shared::adapters::aws::dynamodb(sdk),
        &cfg.api.table,
    ));
    let tasks = Arc::new(tasks);
    morag_ingest::router(Arc::new(Ingest {
        uploads: tasks.clone(),
        tasks,
        jobs: Arc::new(SqsQueue::new(morag_shared::adapters::aws::sqs(sdk), queue)),
        blobs: Arc::new(S3BlobStore::new(morag_shared::adapters::aws::s3(sdk), bucket)),
        auth: Arc::new(Authenticator::new(auth_store, cfg.api.auth_cache_ttl)),
        limits: Limits::new(cfg.max_upload_bytes, cfg.max_object_bytes, cfg.target_policy),
    }))
}

async fn assert_503(env: &TestEnv, router: &axum::Router, context: &str) {
    let res = call(router, file_request(&env.key_a, doc_form())).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{context}: {:?}", res.body);
    assert_eq!(res.error_code(), "service_unavailable");
    assert_eq!(res.headers["retry-after"], "1");
    // the answer does not leak internals
    let text = res.body.to_string();
    assert!(
        !text.contains("missing") && !text.contains("dynamodb") && !text.contains("arn:"),
        "{text}"
    );
}

#[tokio::test]
async fn s3_down_writes_nothing() {
    let env = spawn_env().await;
    let router = ingest_with(&env, Broken::S3);
    assert_503(&env, &router, "s3 down").await;
    env.assert_nothing_written("s3 down").await;
}

#[tokio::test]
async fn dynamodb_down_after_the_upload_removes_the_upload() {
    let env = spawn_env().await;
    let router = ingest_with(&env, Broken::DynamoDb);
    assert_503(&env, &router, "dynamodb down").await;
    env.assert_nothing_written("dynamodb down").await;
}

#[tokio::test]
async fn sqs_down_after_the_task_removes_the_task_and_the_upload() {
    let env = spawn_env().await;
    let router = ingest_with(&env, Broken::Sqs);
    assert_503(&env, &router, "sqs down").await;
    env.assert_nothing_written("sqs down").await;

    // with an idempotency key, the key is released too: a retry succeeds
    let mut req = file_request(&env.key_a, doc_form());
    req.headers_mut().insert("idempotency-key", "retry-me".parse().unwrap());
    assert_eq!(call(&router, req).await.status, StatusCode::SERVICE_UNAVAILABLE);
    env.assert_nothing_written("sqs down with idempotency key").await;
    let mut req = file_request(&env.key_a, doc_form());
    req.headers_mut().insert("idempotency-key", "retry-me".parse().unwrap());
    let res = call(&env.ingest, req).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap();
    assert_eq!(
        call(&env.status, status_request(&env.key_a, task_id)).await.status,
        StatusCode::OK
    );
    assert_eq!(env.queued_jobs().await, 1);
}

#[tokio::test]
async fn status_with_dynamodb_down_is_503() {
    let env = spawn_env().await;
    // authenticate against the real table, read through a store whose table is missing
    let mut cfg = env.status_cfg.clone();
    cfg.api.table = format!("{}-missing", cfg.api.table);
    let broken = morag_status::wiring::build(&env.sdk, &cfg);
    let state = Arc::new(morag_status::Status {
        tasks: broken.tasks,
        deliveries: broken.deliveries,
        webhooks: broken.webhooks,
        secrets: broken.secrets,
        endpoints: broken.endpoints,
        target_policy: broken.target_policy,
        auth: Arc::new(Authenticator::new(env.store.clone(), cfg.api.auth_cache_ttl)),
        cursors: broken.cursors,
    });
    let res = call(
        &morag_status::router(state),
        status_request(&env.key_a, &uuid::Uuid::new_v4().to_string()),
    )
    .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", res.body);
}
