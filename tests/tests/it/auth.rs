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

/// Every route of the API: method, path (`{task}`, `{delivery}`,
/// `{endpoint}` stand for ids) and which function serves it.
pub(crate) const ROUTES: [(&str, &str, Function); 23] = [
    ("POST", "/api/v1/ingest/file", Function::Ingest),
    ("POST", "/api/v1/ingest/url", Function::Ingest),
    ("POST", "/api/v1/ingest/upload", Function::Ingest),
    ("POST", "/api/v1/uploads", Function::Ingest),
    ("GET", "/api/v1/status/{task}", Function::Status),
    ("GET", "/api/v1/status/{task}/history", Function::Status),
    ("GET", "/api/v1/status/{task}/timeline", Function::Status),
    ("GET", "/api/v1/status/events/recent", Function::Status),
    ("GET", "/api/v1/tasks", Function::Status),
    ("GET", "/api/v1/status/{task}/webhooks", Function::Status),
    (
        "POST",
        "/api/v1/status/{task}/webhooks/{delivery}/redeliver",
        Function::Status,
    ),
    ("GET", "/api/v1/webhooks/secret", Function::Status),
    ("POST", "/api/v1/webhooks/secret/rotate", Function::Status),
    ("GET", "/api/v1/webhooks/public-keys", Function::Status),
    ("POST", "/api/v1/webhooks/public-keys/rotate", Function::Status),
    ("PUT", "/api/v1/webhooks/signing", Function::Status),
    ("GET", "/api/v1/webhooks/endpoints", Function::Status),
    ("POST", "/api/v1/webhooks/endpoints", Function::Status),
    ("GET", "/api/v1/webhooks/endpoints/{endpoint}", Function::Status),
    ("PATCH", "/api/v1/webhooks/endpoints/{endpoint}", Function::Status),
    ("DELETE", "/api/v1/webhooks/endpoints/{endpoint}", Function::Status),
    (
        "GET",
        "/api/v1/webhooks/endpoints/{endpoint}/deliveries",
        Function::Status,
    ),
    (
        "POST",
        "/api/v1/webhooks/endpoints/{endpoint}/recover",
        Function::Status,
    ),
];

/// Routes that take no key: the OpenAPI document.
pub(crate) const PUBLIC_ROUTES: [(&str, &str, Function); 1] = [("GET", "/api/v1/openapi.json", Function::Status)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Ingest,
    Status,
}

/// `ROUTES` names every route the routers declare: read from their source
/// (`.route("path", get(..).post(..))`), so a new route without an entry
/// fails here, and so without the auth and tenancy checks below.
#[test]
fn the_route_table_names_every_route_of_the_routers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut declared = Vec::new();
    for file in ["functions/ingest/src/lib.rs", "functions/status/src/lib.rs"] {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        for (_, rest) in source.match_indices(".route(").map(|(i, _)| ((), &source[i + 7..])) {
            let call = &rest[..rest.find("\n        .").unwrap_or(rest.len())];
            let path = call.split('"').nth(1).unwrap();
            let path = path
                .replace("{task_id}", "{task}")
                .replace("{delivery_id}", "{delivery}")
                .replace("{endpoint_id}", "{endpoint}");
            for method in ["get", "post", "put", "patch", "delete"] {
                let at_start = call.contains(&format!(" {method}(")) || call.contains(&format!("\n{method}("));
                if call.contains(&format!(".{method}(")) || call.contains(&format!("({method}(")) || at_start {
                    declared.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    declared.sort();
    let mut listed: Vec<(String, String)> = ROUTES
        .iter()
        .chain(PUBLIC_ROUTES.iter())
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    listed.sort();
    assert_eq!(declared, listed);
}

fn concrete(path: &str, task: &str, delivery: &str, endpoint: &str) -> String {
    path.replace("{task}", task)
        .replace("{delivery}", delivery)
        .replace("{endpoint}", endpoint)
}

/// Every route answers 401 `unauthorized` (with `WWW-Authenticate: Bearer`)
/// to a missing, wrong, malformed or non-Bearer key, and writes nothing.
#[tokio::test]
async fn every_route_requires_a_valid_bearer_key() {
    let env = spawn_env().await;
    let task = uuid::Uuid::new_v4().to_string();
    let (delivery, endpoint) = ("msg_0123456789abcdef01234567", "ep_0123456789abcdef01234567");
    let url_body = json!({"source_type": "web", "url": "https://example.com/"});
    for header in [
        None,
        Some("Bearer wrong-key"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("test-api-key"),
    ] {
        for (method, path, function) in ROUTES {
            let path = concrete(path, &task, delivery, endpoint);
            let mut req = Request::builder().method(method).uri(&path);
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let req = if path == "/api/v1/ingest/file" {
                req.header("content-type", morag_tests::multipart::Form::content_type())
                    .body(Body::from(doc_form().build()))
            } else {
                req.header("content-type", "application/json")
                    .body(Body::from(url_body.to_string()))
            }
            .unwrap();
            let router = match function {
                Function::Ingest => &env.ingest,
                Function::Status => &env.status,
            };
            assert_401(&call(router, req).await, &format!("{header:?} {method} {path}"));
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

/// What tenant A sees of its own things, to compare before and after
/// another tenant's sweep.
async fn tenant_view(env: &morag_tests::TestEnv, key: &str, task: &str, endpoint: &str) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/api/v1/status/{task}"),
        format!("/api/v1/status/{task}/history"),
        format!("/api/v1/status/{task}/timeline"),
        format!("/api/v1/status/{task}/webhooks"),
        "/api/v1/tasks".to_owned(),
        "/api/v1/status/events/recent".to_owned(),
        "/api/v1/webhooks/secret".to_owned(),
        "/api/v1/webhooks/public-keys".to_owned(),
        "/api/v1/webhooks/endpoints".to_owned(),
        format!("/api/v1/webhooks/endpoints/{endpoint}"),
        format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries"),
    ] {
        let res = env.get(key, &path).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {:?}", res.body);
        seen.push(res.body);
    }
    seen
}

/// Another tenant's valid key reaches nothing of a tenant on any route: a
/// task, delivery, endpoint or upload of the tenant is a 404 to it (as if it
/// did not exist), its listings, secrets and keys are its own, and after it
/// has called every route with the tenant's ids nothing of the tenant
/// changed.
#[tokio::test]
async fn another_tenants_key_reaches_nothing_of_the_tenant_on_any_route() {
    use crate::webhooks::{event, submit, webhook_env};
    let (env, _) = webhook_env("1").await;
    let (a, b) = (env.key_a.clone(), env.key_b.clone());
    let task = submit(&env, "https://hooks.example.com/own", None).await;
    env.send_status_events(&[event(&task, "s", "started", None, 1)]).await;
    env.record_all().await;
    let delivery = env.get(&a, &format!("/api/v1/status/{task}/webhooks")).await.body["deliveries"][0]["delivery_id"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    let created = call(
        &env.status,
        crate::json_post(
            "/api/v1/webhooks/endpoints",
            &a,
            &json!({"url": "https://hooks.example.com/ep"}),
        ),
    )
    .await;
    let endpoint = created.body["endpoint_id"].as_str().unwrap().to_owned();
    let granted = call(
        &env.ingest,
        crate::json_post(
            "/api/v1/uploads",
            &a,
            &json!({"filename": "a.txt", "content_type": "text/plain", "size_bytes": 5}),
        ),
    )
    .await;
    let upload = granted.body["upload_id"].as_str().expect("an upload").to_owned();
    let before = tenant_view(&env, &a, &task, &endpoint).await;

    for (method, path, function) in ROUTES {
        let mut path = concrete(path, &task, &delivery, &endpoint);
        if path.ends_with("/recover") {
            // a well-formed request, so that only the tenancy can refuse it
            path.push_str("?since=2026-01-01T00:00:00Z");
        }
        let body = match path.as_str() {
            "/api/v1/ingest/upload" => json!({"upload_id": upload, "source_type": "document"}),
            "/api/v1/webhooks/signing" => json!({"schemes": ["v1", "v1a"]}),
            "/api/v1/uploads" => json!({"filename": "b.txt", "content_type": "text/plain", "size_bytes": 5}),
            p if p.contains("/webhooks/endpoints") => json!({"url": "https://hooks.example.com/b", "disabled": true}),
            _ => json!({"source_type": "web", "url": "https://example.com/"}),
        };
        let req = Request::builder()
            .method(method)
            .uri(&path)
            .header("authorization", format!("Bearer {b}"));
        let req = if path == "/api/v1/ingest/file" {
            req.header("content-type", morag_tests::multipart::Form::content_type())
                .body(Body::from(doc_form().build()))
        } else {
            req.header("content-type", "application/json")
                .body(Body::from(body.to_string()))
        }
        .unwrap();
        let router = match function {
            Function::Ingest => &env.ingest,
            Function::Status => &env.status,
        };
        let res = call(router, req).await;
        let names_a_thing = path.contains(&task) || path.contains(&endpoint) || path == "/api/v1/ingest/upload";
        if names_a_thing {
            assert_eq!(
                (res.status, res.error_code()),
                (StatusCode::NOT_FOUND, "not_found"),
                "{method} {path}: {:?}",
                res.body
            );
        } else {
            assert!(res.status.is_success(), "{method} {path}: its own: {:?}", res.body);
            let text = res.body.to_string();
            for id in [&task, &endpoint, &delivery, &upload] {
                assert!(
                    !text.contains(id.as_str()),
                    "{method} {path} shows the tenant's {id}: {text}"
                );
            }
        }
    }
    assert_eq!(
        tenant_view(&env, &a, &task, &endpoint).await,
        before,
        "nothing of the tenant changed"
    );
}
