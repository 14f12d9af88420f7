use http::StatusCode;

use morag_tests::{call, spawn_env};

use crate::{doc_form, file_request, status_request};

#[tokio::test]
async fn status_reads_back_the_task_with_the_contract_fields() {
    let env = spawn_env().await;
    let created = call(&env.ingest, file_request(&env.key_a, doc_form())).await;
    let task_id = created.body["task_id"].as_str().unwrap();
    let res = call(&env.status, status_request(&env.key_a, task_id)).await;
    assert_eq!(res.status, StatusCode::OK);
    let fields = morag_tests::sorted_keys(&res.body);
    // optional fields (started_at, completed_at, result, error) are absent while pending
    assert_eq!(
        fields,
        [
            "created_at",
            "deadline_at",
            "heartbeat_timeout_s",
            "message",
            "metadata",
            "progress",
            "source_type",
            "status",
            "task_id",
            "updated_at"
        ]
    );
    assert_eq!(res.body["task_id"], task_id);
    assert_eq!(res.body["message"], "Task queued for processing");
    assert_eq!(res.body["heartbeat_timeout_s"], 900);
    assert_eq!(res.headers["content-type"], "application/json");
}

#[tokio::test]
async fn another_tenants_task_is_indistinguishable_from_a_missing_one() {
    let env = spawn_env().await;
    let created = call(&env.ingest, file_request(&env.key_a, doc_form())).await;
    let task_id = created.body["task_id"].as_str().unwrap();

    let foreign = call(&env.status, status_request(&env.key_b, task_id)).await;
    let missing = call(
        &env.status,
        status_request(&env.key_b, &uuid::Uuid::new_v4().to_string()),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.body, missing.body);
    assert_eq!(foreign.error_code(), "not_found");
    // and the owner still sees it
    assert_eq!(
        call(&env.status, status_request(&env.key_a, task_id)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_task_ids_are_400() {
    let env = spawn_env().await;
    for bad in ["not-a-uuid", "123", "0B7E5A4E2F1C4C8E9D3A6F5B4E3D2C1B", "%2e%2e%2fetc"] {
        let res = call(&env.status, status_request(&env.key_a, bad)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.error_code(), "invalid_task_id", "{bad}");
    }
}

#[tokio::test]
async fn status_routes_answer_json_404_and_405() {
    let env = spawn_env().await;
    let req = http::Request::delete(format!("/api/v1/status/{}", uuid::Uuid::new_v4()))
        .header("authorization", format!("Bearer {}", env.key_a))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = call(&env.status, req).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.error_code(), "method_not_allowed");
    let req = http::Request::get("/api/v2/nothing")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = call(&env.status, req).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.error_code(), "not_found");
}

#[tokio::test]
async fn a_corrupt_item_is_an_opaque_500() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = spawn_env().await;
    let task_id = uuid::Uuid::new_v4().to_string();
    env.ddb
        .put_item()
        .table_name(&env.resources.names.table)
        .item("pk", AttributeValue::S(format!("TASK#{task_id}")))
        .item("sk", AttributeValue::S("STATE".into()))
        .item("tenant", AttributeValue::S("acme".into()))
        .item("status", AttributeValue::S("exploded".into()))
        .send()
        .await
        .unwrap();
    let res = call(&env.status, status_request(&env.key_a, &task_id)).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.error_code(), "internal_error");
    assert_eq!(res.body["error"]["message"], "internal error");
}
