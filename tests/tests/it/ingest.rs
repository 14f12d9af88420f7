use http::StatusCode;
use serde_json::{json, Value};

use morag_tests::multipart::Form;
use morag_tests::{call, spawn_env};

use crate::{file_request, status_request, url_request, DOC};

#[tokio::test]
async fn file_ingest_stores_the_upload_creates_the_task_and_enqueues_the_job() {
    let env = spawn_env().await;
    let form = Form::new()
        .text("source_type", "document")
        .file("file", "../../My Notes (v2).md", "text/markdown", DOC)
        .text("webhook_url", "https://hooks.example.com/morag?token=abc")
        .text("metadata", r#"{"project":"docs","tags":["a","b"],"n":1.5}"#);
    let res = call(&env.ingest, file_request(&env.key_a, form)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);

    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    assert_eq!(res.body["status"], "pending");
    assert!(res.body["status_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/v1/status/{task_id}")));
    assert!(res.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        res.headers["location"].to_str().unwrap(),
        res.body["status_url"].as_str().unwrap()
    );

    // the object: under the tenant and task, sanitized name, same bytes
    let key = format!("uploads/acme/{task_id}/My_Notes__v2_.md");
    assert_eq!(env.object_bytes(&key).await, DOC);
    assert_eq!(env.bucket_objects().await, 1);

    // the job: exactly the contract's fields
    let jobs = env.receive_jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    let fields = morag_tests::sorted_keys(job);
    assert_eq!(
        fields,
        [
            "job_id",
            "metadata",
            "source",
            "source_type",
            "submitted_at",
            "task_id",
            "tenant"
        ]
    );
    assert_eq!(job["task_id"], task_id.as_str());
    assert_eq!(job["job_id"], format!("job_{task_id}"));
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["source_type"], "document");
    assert_eq!(job["source"], json!({"bucket": env.resources.names.bucket, "key": key}));
    assert_eq!(
        job["metadata"],
        json!({"project": "docs", "tags": ["a", "b"], "n": 1.5})
    );
    assert_eq!(job["submitted_at"], res.body["created_at"]);

    // the task item, through the status route
    let status = call(&env.status, status_request(&env.key_a, &task_id)).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["status"], "pending");
    assert_eq!(status.body["progress"], 0.0);
    assert_eq!(status.body["source_type"], "document");
    assert_eq!(
        status.body["metadata"],
        json!({"project": "docs", "tags": ["a", "b"], "n": 1.5})
    );
    assert_eq!(status.body["created_at"], res.body["created_at"]);
    assert_eq!(env.table_items().await, env.baseline_items + 1);
}

#[tokio::test]
async fn url_ingest_creates_the_task_and_enqueues_a_url_job() {
    let env = spawn_env().await;
    let body = json!({
        "source_type": "web",
        "url": "https://example.com/articles/rag.html",
        "webhook_url": "https://hooks.example.com/morag",
        "metadata": {"project": "docs"}
    });
    let res = call(&env.ingest, url_request(&env.key_b, &body)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap();

    let jobs = env.receive_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0]["source"],
        json!({"url": "https://example.com/articles/rag.html"})
    );
    assert_eq!(jobs[0]["tenant"], "globex");
    assert_eq!(jobs[0]["source_type"], "web");
    assert_eq!(env.bucket_objects().await, 0);

    let status = call(&env.status, status_request(&env.key_b, task_id)).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["source_type"], "web");
    assert_eq!(status.body["metadata"], json!({"project": "docs"}));
    // webhook_url is not echoed in status answers (it may carry a token)
    assert_eq!(status.body.get("webhook_url"), None);
}

#[tokio::test]
async fn every_source_type_is_accepted() {
    let env = spawn_env().await;
    for t in ["document", "audio", "video", "image", "web", "youtube", "text"] {
        let body = json!({"source_type": t, "url": "https://example.com/x"});
        let res = call(&env.ingest, url_request(&env.key_a, &body)).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{t}: {:?}", res.body);
    }
    assert_eq!(env.table_items().await, env.baseline_items + 7);
    assert_eq!(env.queued_jobs().await, 7);
}

#[tokio::test]
async fn local_policy_allows_loopback_http_webhooks() {
    let env = morag_tests::spawn_env_with(|cfg| {
        cfg.target_policy.allow_http = true;
        cfg.target_policy.allow_loopback = true;
    })
    .await;
    let form = crate::doc_form().text("webhook_url", "http://127.0.0.1:8001/webhook");
    let res = call(&env.ingest, file_request(&env.key_a, form)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    // private ranges stay refused even locally
    let form = crate::doc_form().text("webhook_url", "http://10.1.2.3/webhook");
    let res = call(&env.ingest, file_request(&env.key_a, form)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.error_code(), "invalid_webhook_url");
}

#[tokio::test]
async fn upload_limit_is_configurable_and_exact() {
    let env = morag_tests::spawn_env_with(|cfg| cfg.max_upload_bytes = 1000).await;
    let at_limit = Form::new()
        .text("source_type", "text")
        .file("file", "a.txt", "text/plain", &[b'a'; 1000]);
    let res = call(&env.ingest, file_request(&env.key_a, at_limit)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let jobs = env.receive_jobs().await;
    assert_eq!(jobs.len(), 1);

    let over = Form::new()
        .text("source_type", "text")
        .file("file", "a.txt", "text/plain", &[b'a'; 1001]);
    let res = call(&env.ingest, file_request(&env.key_a, over)).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.error_code(), "payload_too_large");
    assert_eq!(env.bucket_objects().await, 1);
    assert_eq!(env.queued_jobs().await, 0);
    let _: Value = res.body;
}

/// axum's multipart extractor refuses more than 2 MiB unless told
/// otherwise: a 3 MiB document goes through, byte for byte.
#[tokio::test]
async fn a_3_mib_file_goes_through_ingest_file() {
    let env = spawn_env().await;
    let doc: Vec<u8> = (0..3 * 1024 * 1024).map(|i| b"abcdefgh \n"[i % 10]).collect();
    let form = Form::new()
        .text("source_type", "text")
        .file("file", "big.txt", "text/plain", &doc);
    let res = call(&env.ingest, file_request(&env.key_a, form)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let jobs = env.receive_jobs().await;
    let key = jobs[0]["source"]["key"].as_str().unwrap();
    assert_eq!(env.object_bytes(key).await, doc);
}

/// Above what API Gateway can carry into a Lambda event (base64 in 6 MB) the
/// answer is the JSON 413 naming the limit, even when the deployment's
/// setting is higher, and nothing is written.
#[tokio::test]
async fn above_the_api_gateway_ceiling_is_a_json_413_whatever_the_setting() {
    let env = morag_tests::spawn_env_with(|cfg| cfg.max_upload_bytes = 5 * 1024 * 1024).await;
    let over = Form::new().text("source_type", "text").file(
        "file",
        "big.txt",
        "text/plain",
        &vec![b'a'; morag_ingest::MAX_DIRECT_FILE + 1],
    );
    let res = call(&env.ingest, file_request(&env.key_a, over)).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", res.body);
    assert_eq!(res.error_code(), "payload_too_large");
    let message = res.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&morag_ingest::MAX_DIRECT_FILE.to_string()),
        "{message}"
    );
    env.assert_nothing_written("over the ceiling").await;

    let at = Form::new().text("source_type", "text").file(
        "file",
        "big.txt",
        "text/plain",
        &vec![b'a'; morag_ingest::MAX_DIRECT_FILE],
    );
    let res = call(&env.ingest, file_request(&env.key_a, at)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
}
