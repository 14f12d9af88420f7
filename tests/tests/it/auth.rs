use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;

use morag_shared::domain::KeyHash;
use morag_tests::{call, spawn_env, TestResponse};

use crate::{doc_form, file_request, status_request, url_request};

fn assert_401(res: &TestResponse, context: &str) {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{context}");
    assert_eq!(res.error_code(), "unauthorized", "{context}");
    assert_eq!(res.headers["www-authenticate"], "Bearer", "{context}");
}

#[tokio::test]
async fn every_route_requires_a_valid_bearer_key() {
    let env = spawn_env().await;
    let task = uuid::Uuid::new_v4().to_string();
    let url_body = json!({"source_type": "web", "url": "https://example.com/"});
    for header in [
        None,
        Some("Bearer wrong-key"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("test-api-key"),
    ] {
        let with = |b: http::request::Builder| match header {
            Some(h) => b.header("authorization", h),
            None => b,
        };
        let reqs = [
            (
                &env.ingest,
                with(Request::post("/api/v1/ingest/url").header("content-type", "application/json"))
                    .body(Body::from(url_body.to_string()))
                    .unwrap(),
            ),
            (
                &env.ingest,
                with(
                    Request::post("/api/v1/ingest/file")
                        .header("content-type", morag_tests::multipart::Form::content_type()),
                )
                .body(Body::from(doc_form().build()))
                .unwrap(),
            ),
            (
                &env.status,
                with(Request::get(format!("/api/v1/status/{task}")))
                    .body(Body::empty())
                    .unwrap(),
            ),
        ];
        for (router, req) in reqs {
            let path = req.uri().path().to_owned();
            assert_401(&call(router, req).await, &format!("{header:?} {path}"));
        }
    }
    env.assert_nothing_written("unauthenticated requests").await;
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes() {
    let env = spawn_env().await;
    let hash = KeyHash::of(&env.key_a);
    let item = env
        .ddb
        .get_item()
        .table_name(&env.resources.names.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("APIKEY#{}", hash.as_hex())),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("KEY".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("key item");
    let dump = format!("{item:?}");
    assert!(!dump.contains(&env.key_a), "the key itself must not be stored");
    assert!(dump.contains(hash.as_hex()));
    assert!(dump.contains("acme"));
}

#[tokio::test]
async fn a_revoked_key_stops_working_once_the_cache_expires() {
    let env = spawn_env().await;
    // this env's routers cache lookups for 60 s; build one without a cache
    let mut cfg = env.status_cfg.clone();
    cfg.api.auth_cache_ttl = Duration::ZERO;
    let status = morag_status::router(std::sync::Arc::new(morag_status::wiring::build(&env.sdk, &cfg)));

    let created = call(&env.ingest, file_request(&env.key_a, doc_form())).await;
    let task_id = created.body["task_id"].as_str().unwrap();
    assert_eq!(
        call(&status, status_request(&env.key_a, task_id)).await.status,
        StatusCode::OK
    );

    let key_id = KeyHash::of(&env.key_a).key_id().to_owned();
    morag_cli::keys::revoke(env.store.as_ref(), &"acme".parse().unwrap(), &key_id)
        .await
        .unwrap();
    assert_401(&call(&status, status_request(&env.key_a, task_id)).await, "revoked key");
    // revoking twice, or another tenant's key, fails
    assert!(
        morag_cli::keys::revoke(env.store.as_ref(), &"acme".parse().unwrap(), &key_id)
            .await
            .is_err()
    );
    let other = KeyHash::of(&env.key_b).key_id().to_owned();
    assert!(
        morag_cli::keys::revoke(env.store.as_ref(), &"acme".parse().unwrap(), &other)
            .await
            .is_err()
    );
    // the other tenant is unaffected
    let res = call(
        &env.ingest,
        url_request(
            &env.key_b,
            &json!({"source_type": "web", "url": "https://example.com/"}),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn created_keys_are_listed_by_id_only() {
    let env = spawn_env().await;
    let tenant = "initech".parse().unwrap();
    let (key, record) = morag_cli::keys::create(env.store.as_ref(), &tenant, "ci")
        .await
        .unwrap();
    let listed = morag_shared::ports::KeyStore::list_keys(env.store.as_ref(), &tenant)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_hash, record.key_hash);
    assert_eq!(listed[0].description, "ci");
    // the new key works at once
    let res = call(
        &env.ingest,
        url_request(&key, &json!({"source_type": "web", "url": "https://example.com/"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
}
