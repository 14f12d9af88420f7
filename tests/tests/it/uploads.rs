//! Direct uploads: `POST /api/v1/uploads` grants a presigned PUT, the file
//! goes straight to S3 (moto), `POST /api/v1/ingest/upload` turns it into a
//! task. moto checks neither the signature nor the signed length or checksum
//! of a presigned PUT (real S3 does): those are tested as signed headers, and
//! `/ingest/upload` checks size and checksum itself with `HeadObject`.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use morag_shared::outbound::TargetPolicy;
use morag_tests::{call, spawn_env, TestEnv, TestResponse};

use crate::json_post;

async fn grant(env: &TestEnv, key: &str, body: Value) -> TestResponse {
    call(&env.ingest, json_post("/api/v1/uploads", key, &body)).await
}

async fn ingest_upload(env: &TestEnv, key: &str, upload_id: &str) -> TestResponse {
    let body = json!({"upload_id": upload_id, "source_type": "document", "metadata": {"via": "upload"}});
    call(&env.ingest, json_post("/api/v1/ingest/upload", key, &body)).await
}

/// PUTs `body` to a granted upload with exactly the headers it names
/// (`overrides` replace some, to play a client that lies).
async fn put(granted: &Value, body: Vec<u8>, overrides: &[(&str, &str)]) -> reqwest::StatusCode {
    let mut headers: HashMap<String, String> = granted["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap().to_owned()))
        .collect();
    for (k, v) in overrides {
        headers.insert((*k).to_owned(), (*v).to_owned());
    }
    let mut request = reqwest::Client::new().put(granted["url"].as_str().unwrap()).body(body);
    for (k, v) in &headers {
        if k != "content-length" {
            request = request.header(k, v);
        }
    }
    request.send().await.unwrap().status()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// 50 MiB through a presigned PUT, then `/ingest/upload`, then the pipeline:
/// the task completes with the document's own SHA-256, and the object is
/// retagged claimed (out of reach of the rule for abandoned uploads).
#[tokio::test]
async fn a_50_mib_upload_goes_to_s3_directly_and_reaches_completed() {
    let env = spawn_env().await;
    let doc: Vec<u8> = "A paragraph of a big document.\n\n"
        .bytes()
        .cycle()
        .take(50 * 1024 * 1024)
        .collect();
    let res = grant(
        &env,
        &env.key_a,
        json!({"filename": "../notes/big doc.md", "content_type": "Text/Markdown", "size_bytes": doc.len(), "sha256": sha256_hex(&doc)}),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let granted = res.body;
    assert_eq!(granted["method"], "PUT");
    let upload_id = granted["upload_id"].as_str().unwrap();
    assert!(upload_id.starts_with("upl_"));
    // length, type, checksum and the pending tag are signed: S3 refuses a PUT without them
    let url = url::Url::parse(granted["url"].as_str().unwrap()).unwrap();
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    let signed = &query["X-Amz-SignedHeaders"];
    for h in [
        "content-length",
        "content-type",
        "x-amz-checksum-sha256",
        "x-amz-tagging",
    ] {
        assert!(signed.split(';').any(|s| s == h), "{h} not signed: {signed}");
    }
    assert!(
        url.path().contains(&format!("/uploads/acme/{upload_id}/big_doc.md")),
        "{url}"
    );
    assert_eq!(granted["headers"]["content-type"], "text/markdown");
    assert_eq!(granted["headers"]["x-amz-tagging"], "morag-upload=pending");

    assert!(put(&granted, doc.clone(), &[]).await.is_success());
    let res = ingest_upload(&env, &env.key_a, upload_id).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    let key = format!("uploads/acme/{upload_id}/big_doc.md");
    let tags = env
        .s3
        .get_object_tagging()
        .bucket(&env.resources.names.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].value(), "claimed");

    env.run_pipeline(&env.processor(TargetPolicy::default())).await;
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "completed", "{:?}", status.body);
    assert_eq!(status.body["result"]["sha256"], sha256_hex(&doc));
    assert_eq!(status.body["metadata"], json!({"via": "upload"}));
}

/// Unknown, foreign, malformed, not-yet-uploaded, wrong-sized, expired and
/// already-used uploads are clear 4xx answers, and none of them
/// writes a task; a replay with the same `Idempotency-Key` is the first answer.
#[tokio::test]
async fn upload_ids_are_tenant_bound_single_use_and_checked() {
    let env = spawn_env().await;
    let doc = b"# Notes\n\nshort".to_vec();
    let body = json!({"filename": "n.md", "content_type": "text/markdown", "size_bytes": doc.len(), "sha256": sha256_hex(&doc)});
    let granted = grant(&env, &env.key_a, body.clone()).await.body;
    let id = granted["upload_id"].as_str().unwrap().to_owned();
    let items = env.table_items().await;

    let cases = [
        (
            env.key_a.clone(),
            "upl_00000000000000000000000000000000".to_owned(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (env.key_b.clone(), id.clone(), StatusCode::NOT_FOUND, "not_found"),
        (
            env.key_a.clone(),
            "upl_nope".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_upload_id",
        ),
        (env.key_a.clone(), id.clone(), StatusCode::CONFLICT, "upload_incomplete"),
    ];
    for (key, upload_id, status, code) in cases {
        let res = ingest_upload(&env, &key, &upload_id).await;
        assert_eq!(
            (res.status, res.error_code()),
            (status, code),
            "{upload_id}: {:?}",
            res.body
        );
    }
    // a short body (moto does not enforce the signed length; real S3 does)
    assert!(put(&granted, doc[..5].to_vec(), &[("content-length", "5")])
        .await
        .is_success());
    let res = ingest_upload(&env, &env.key_a, &id).await;
    assert_eq!(
        (res.status, res.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "upload_size_mismatch")
    );
    assert_eq!(env.table_items().await, items, "nothing written by refused submissions");
    assert_eq!(env.queued_jobs().await, 0);

    // the right bytes: one task, once
    assert!(put(&granted, doc.clone(), &[]).await.is_success());
    let keyed = || {
        idempotent(json_post(
            "/api/v1/ingest/upload",
            &env.key_a,
            &json!({"upload_id": id, "source_type": "document"}),
        ))
    };
    let first = call(&env.ingest, keyed()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let replay = call(&env.ingest, keyed()).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body["task_id"], first.body["task_id"]);
    let again = ingest_upload(&env, &env.key_a, &id).await;
    assert_eq!(
        (again.status, again.error_code()),
        (StatusCode::CONFLICT, "upload_already_used")
    );
    assert_eq!(env.queued_jobs().await, 1);

    // expired: past its URL's expiry and the day after it
    let late = grant(&env, &env.key_a, body).await.body;
    let late_id = late["upload_id"].as_str().unwrap();
    assert!(put(&late, doc.clone(), &[]).await.is_success());
    env.ddb
        .update_item()
        .table_name(&env.resources.names.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("UPLOAD#{late_id}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("UPLOAD".into()))
        .update_expression("SET url_expires_at = :t")
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::S("2020-01-01T00:00:00Z".into()),
        )
        .send()
        .await
        .unwrap();
    let res = ingest_upload(&env, &env.key_a, late_id).await;
    assert_eq!((res.status, res.error_code()), (StatusCode::GONE, "upload_expired"));
}

fn idempotent(mut request: http::Request<axum::body::Body>) -> http::Request<axum::body::Body> {
    request
        .headers_mut()
        .insert("idempotency-key", http::HeaderValue::from_static("upload-once"));
    request
}

/// Other bytes of the declared length under the declared checksum: real S3
/// refuses the PUT (the checksum is signed); moto stores it and reports no
/// checksum, so the task is accepted and the processor, which checks the
/// declared SHA-256 where it reads the bytes, fails it.
#[tokio::test]
async fn bytes_other_than_declared_fail_the_task_where_they_are_read() {
    let env = spawn_env().await;
    let doc = b"the document as declared".to_vec();
    let forged = b"another document, same len".to_vec()[..doc.len()].to_vec();
    let granted = grant(
        &env,
        &env.key_a,
        json!({"filename": "n.txt", "content_type": "text/plain", "size_bytes": doc.len(), "sha256": sha256_hex(&doc)}),
    )
    .await
    .body;
    assert!(put(&granted, forged, &[]).await.is_success());
    let res = ingest_upload(&env, &env.key_a, granted["upload_id"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    env.run_pipeline(&env.processor(TargetPolicy::default())).await;
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "failed");
    assert!(
        status.body["error"].as_str().unwrap().starts_with("checksum_mismatch"),
        "{:?}",
        status.body
    );
}

/// Requests for an upload that cannot be granted: 4xx, nothing written.
#[tokio::test]
async fn bad_upload_requests_are_refused_and_write_nothing() {
    let env = spawn_env().await;
    let cases = [
        (json!({"content_type": "text/plain", "size_bytes": 1}), "missing_field"),
        (json!({"filename": "a", "content_type": "text/plain"}), "missing_field"),
        (
            json!({"filename": "a", "content_type": "text/plain", "size_bytes": 0}),
            "invalid_size_bytes",
        ),
        (
            json!({"filename": "a", "content_type": "text/plain", "size_bytes": -5}),
            "invalid_size_bytes",
        ),
        (
            json!({"filename": "a", "content_type": "text/plain", "size_bytes": 5_368_709_121u64}),
            "invalid_size_bytes",
        ),
        (
            json!({"filename": "a", "content_type": "plain", "size_bytes": 1}),
            "invalid_content_type",
        ),
        (
            json!({"filename": "a", "content_type": "text/plain; x=\"y\"", "size_bytes": 1}),
            "invalid_content_type",
        ),
        (
            json!({"filename": "a", "content_type": "text/plain", "size_bytes": 1, "sha256": "xyz"}),
            "invalid_sha256",
        ),
        (
            json!({"filename": "  ", "content_type": "text/plain", "size_bytes": 1}),
            "invalid_filename",
        ),
        (
            json!({"filename": "a", "content_type": "text/plain", "size_bytes": 1, "bucket": "x"}),
            "unknown_field",
        ),
    ];
    for (body, code) in cases {
        let res = grant(&env, &env.key_a, body.clone()).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {:?}", res.body);
        assert_eq!(res.error_code(), code, "{body}");
    }
    let no_key = call(
        &env.ingest,
        http::Request::post("/api/v1/uploads")
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    env.assert_nothing_written("refused upload requests").await;
}

/// `morag ingest FILE` against the API: a file above `/ingest/file`'s
/// ceiling goes through the upload flow and its task id is printed.
#[tokio::test]
async fn morag_ingest_uploads_a_file_of_any_size_and_prints_its_task() {
    let env = spawn_env().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let app = env.ingest.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let doc: Vec<u8> = "Words for the CLI.\n\n".bytes().cycle().take(6 * 1024 * 1024).collect();
    let task_id = morag_tests::morag_ingest(
        "big notes.md",
        &doc,
        &["--api", &api, "--key", &env.key_a, "--metadata", r#"{"via":"cli"}"#],
    )
    .await;
    assert!(task_id.parse::<morag_shared::domain::TaskId>().is_ok(), "{task_id}");
    let jobs = env.receive_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["task_id"], task_id);
    assert_eq!(jobs[0]["source"]["sha256"], sha256_hex(&doc));
    assert_eq!(jobs[0]["metadata"], json!({"via": "cli"}));
    let key = jobs[0]["source"]["key"].as_str().unwrap();
    assert!(
        key.starts_with("uploads/acme/upl_") && key.ends_with("/big_notes.md"),
        "{key}"
    );
    assert_eq!(env.object_bytes(key).await, doc);
}

/// A PDF goes through the upload flow and the processor extracts its text.
#[tokio::test]
async fn an_uploaded_pdf_yields_its_text() {
    let env = spawn_env().await;
    let pdf = include_bytes!("../../fixtures/notes.pdf").to_vec();
    let granted = grant(
        &env,
        &env.key_a,
        json!({"filename": "notes.pdf", "content_type": "application/pdf", "size_bytes": pdf.len(), "sha256": sha256_hex(&pdf)}),
    )
    .await
    .body;
    assert!(put(&granted, pdf.clone(), &[]).await.is_success());
    let res = ingest_upload(&env, &env.key_a, granted["upload_id"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    env.run_pipeline(&env.processor(TargetPolicy::default())).await;
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "completed", "{:?}", status.body);
    assert_eq!(status.body["result"]["words"], 19);
}
