use http::StatusCode;
use serde_json::json;

use morag_tests::{call, spawn_env};

use crate::{doc_form, file_request, url_request};

fn with_key(mut req: http::Request<axum::body::Body>, key: &str) -> http::Request<axum::body::Body> {
    req.headers_mut().insert("idempotency-key", key.parse().unwrap());
    req
}

#[tokio::test]
async fn the_same_key_returns_the_first_response_and_creates_nothing_new() {
    let env = spawn_env().await;
    let first = call(&env.ingest, with_key(file_request(&env.key_a, doc_form()), "order-42")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let items = env.table_items().await;
    for _ in 0..3 {
        let again = call(&env.ingest, with_key(file_request(&env.key_a, doc_form()), "order-42")).await;
        assert_eq!(again.status, StatusCode::ACCEPTED);
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    assert_eq!(env.table_items().await, items, "no new task or record");
    assert_eq!(env.bucket_objects().await, 1);
    assert_eq!(env.queued_jobs().await, 1);
}

#[tokio::test]
async fn keys_are_per_tenant() {
    let env = spawn_env().await;
    let body = json!({"source_type": "web", "url": "https://example.com/"});
    let a = call(&env.ingest, with_key(url_request(&env.key_a, &body), "shared-key")).await;
    let b = call(&env.ingest, with_key(url_request(&env.key_b, &body), "shared-key")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(b.status, StatusCode::ACCEPTED);
    assert_ne!(a.body["task_id"], b.body["task_id"]);
    assert_eq!(env.queued_jobs().await, 2);
}

#[tokio::test]
async fn a_reused_key_with_a_different_request_is_refused() {
    let env = spawn_env().await;
    let body = json!({"source_type": "web", "url": "https://example.com/a"});
    let first = call(&env.ingest, with_key(url_request(&env.key_a, &body), "k-1")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let other = json!({"source_type": "web", "url": "https://example.com/b"});
    let res = call(&env.ingest, with_key(url_request(&env.key_a, &other), "k-1")).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.error_code(), "idempotency_key_reused");
    assert_eq!(env.queued_jobs().await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_task() {
    let env = spawn_env().await;
    let body = json!({"source_type": "web", "url": "https://example.com/race"});
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (router, req) = (env.ingest.clone(), with_key(url_request(&env.key_a, &body), "race"));
        set.spawn(async move { call(&router, req).await });
    }
    let results = set.join_all().await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .map(|r| r.body["task_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    // the rest were told to retry (the first was in flight), never given a
    // 202 for a task whose job might not exist
    for r in results.iter().filter(|r| r.status != StatusCode::ACCEPTED) {
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::CONFLICT, "request_in_progress"),
            "{r:?}"
        );
        assert_eq!(r.headers["retry-after"], "1");
        let retry = call(&env.ingest, with_key(url_request(&env.key_a, &body), "race")).await;
        assert_eq!(retry.status, StatusCode::ACCEPTED);
        assert!(ids.contains(retry.body["task_id"].as_str().unwrap()));
    }
    assert_eq!(env.queued_jobs().await, 1);
    assert_eq!(
        env.table_items().await,
        env.baseline_items + 2,
        "one task and one idempotency record"
    );
}
