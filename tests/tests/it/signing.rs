//! Asymmetric webhook signatures (Standard Webhooks `v1a`, Ed25519) as a
//! tenant option: the routes that turn them on, serve the public keys and
//! rotate the key pair; and real webhooks verified by independent Ed25519
//! implementations (Python's `cryptography` and Node's `crypto`, both
//! OpenSSL underneath) running the receivers printed in docs/WEBHOOKS.md
//! with the keys the API served.

use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use serde_json::{json, Value};

use morag_tests::receiver::TestReceiver;
use morag_tests::{call, TestEnv, TestResponse};

use crate::webhooks::{deliver_events, doc_block, event, run_snippet, snippet_request, submit, tampered, webhook_env};

async fn send(
    env: &TestEnv,
    key: Option<&str>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> TestResponse {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if !content_type.is_empty() {
        request = request.header("content-type", content_type);
    }
    call(&env.status, request.body(Body::from(body.to_owned())).unwrap()).await
}

async fn set_schemes(env: &TestEnv, key: &str, schemes: Value) -> TestResponse {
    let body = json!({ "schemes": schemes }).to_string();
    send(
        env,
        Some(key),
        "PUT",
        "/api/v1/webhooks/signing",
        "application/json",
        &body,
    )
    .await
}

async fn rotate_key(env: &TestEnv, key: &str, query: &str) -> TestResponse {
    let path = format!("/api/v1/webhooks/public-keys/rotate{query}");
    send(env, Some(key), "POST", &path, "", "").await
}

/// `(key_id, public_key)` of each listed key, newest first.
fn keys_of(res: &TestResponse) -> Vec<(String, String)> {
    res.body["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys: {:?}", res.body))
        .iter()
        .map(|k| {
            assert_eq!(k["algorithm"], "ed25519");
            (
                k["key_id"].as_str().unwrap().to_owned(),
                k["public_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The settings and key routes: a tenant from before `v1a` gets a key pair
/// at its first read and keeps it; bad bodies are refused with nothing
/// written; the schemes change; a key rotation lists both pairs for the
/// overlap and one after an overlap of 0; tenants see only their own keys;
/// no key, no answer.
#[tokio::test]
async fn v1a_is_a_tenant_option_with_public_keys_and_rotation_over_the_api() {
    let (env, _) = webhook_env("1").await;
    let first = env.get(&env.key_a, "/api/v1/webhooks/public-keys").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["schemes"], json!(["v1"]), "v1 until the tenant changes it");
    let keys = keys_of(&first);
    assert_eq!(keys.len(), 1);
    let (kid, public) = keys[0].clone();
    assert!(kid.starts_with("kid_") && public.starts_with("whpk_"), "{keys:?}");
    assert_eq!(first.body["keys"][0]["current"], true);
    assert!(!first.body.to_string().contains("whsk_"), "no private key is served");
    assert_eq!(
        keys_of(&env.get(&env.key_a, "/api/v1/webhooks/public-keys").await),
        keys,
        "the same pair on every read"
    );

    let json_ct = "application/json";
    for (content_type, body, status) in [
        (json_ct, r#"{"schemes": []}"#, StatusCode::BAD_REQUEST),
        (json_ct, r#"{"schemes": ["v2"]}"#, StatusCode::BAD_REQUEST),
        (json_ct, r#"{"schemes": "v1a"}"#, StatusCode::BAD_REQUEST),
        (json_ct, r#"{}"#, StatusCode::BAD_REQUEST),
        (json_ct, r#"{"schemes": ["v1a"], "also": 1}"#, StatusCode::BAD_REQUEST),
        (json_ct, "not json", StatusCode::BAD_REQUEST),
        (
            "text/plain",
            r#"{"schemes": ["v1a"]}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            json_ct,
            &format!(r#"{{"schemes": ["v1a"], "pad": "{}"}}"#, "x".repeat(2000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let res = send(
            &env,
            Some(&env.key_a),
            "PUT",
            "/api/v1/webhooks/signing",
            content_type,
            body,
        )
        .await;
        assert_eq!(res.status, status, "{body}: {:?}", res.body);
        assert!(res.body["error"]["code"].is_string(), "{body}: {:?}", res.body);
    }
    let unchanged = env.get(&env.key_a, "/api/v1/webhooks/public-keys").await;
    assert_eq!(unchanged.body["schemes"], json!(["v1"]), "nothing written");

    let on = set_schemes(&env, &env.key_a, json!(["v1a", "v1"])).await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    assert_eq!(on.body["schemes"], json!(["v1", "v1a"]));
    assert_eq!(keys_of(&on), keys, "turning v1a on keeps the pair");
    let secret = env.get(&env.key_a, "/api/v1/webhooks/secret").await;
    assert_eq!(secret.body["schemes"], json!(["v1", "v1a"]));

    let rotated = rotate_key(&env, &env.key_a, "?overlap_seconds=3600").await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let both = keys_of(&rotated);
    assert_eq!(both.len(), 2, "{:?}", rotated.body);
    assert_ne!(both[0], keys[0]);
    assert_eq!(both[1], keys[0], "the old pair still signs");
    assert_eq!(rotated.body["keys"][0]["current"], true);
    assert_eq!(rotated.body["keys"][1]["current"], false);
    assert!(rotated.body["keys"][1]["signs_until"].is_string());
    assert_eq!(rotated.body["schemes"], json!(["v1", "v1a"]), "schemes kept");
    // the whsec_ secret is untouched by a key rotation
    assert_eq!(
        env.get(&env.key_a, "/api/v1/webhooks/secret").await.body["secrets"][0]["secret"],
        crate::webhooks::SECRET
    );
    for bad in ["?overlap_seconds=604801", "?overlap_seconds=x", "?overlap=1"] {
        let res = rotate_key(&env, &env.key_a, bad).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", res.body);
    }
    assert_eq!(
        keys_of(&env.get(&env.key_a, "/api/v1/webhooks/public-keys").await),
        both,
        "nothing written"
    );
    let ended = rotate_key(&env, &env.key_a, "?overlap_seconds=0").await;
    let only = keys_of(&ended);
    assert_eq!(only.len(), 1);
    assert!(!both.contains(&only[0]));

    // another tenant: its own pair and its own schemes
    let other = env.get(&env.key_b, "/api/v1/webhooks/public-keys").await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body["schemes"], json!(["v1"]));
    assert!(!keys_of(&other).iter().any(|k| both.contains(k) || only.contains(k)));

    for (method, path) in [
        ("GET", "/api/v1/webhooks/public-keys"),
        ("POST", "/api/v1/webhooks/public-keys/rotate"),
        ("PUT", "/api/v1/webhooks/signing"),
    ] {
        for key in [None, Some("mrg_not-a-key")] {
            let res = send(&env, key, method, path, json_ct, r#"{"schemes": ["v1a"]}"#).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path} {key:?}");
        }
    }
    assert_eq!(
        env.get(&env.key_a, "/api/v1/webhooks/public-keys").await.body["schemes"],
        json!(["v1", "v1a"])
    );
}

const PYTHON_DRIVER: &str = r#"
import json, sys
_in = json.load(sys.stdin)
print(json.dumps([
    [verify_v1a(keys, r["headers"], base64.b64decode(r["body"])) for r in _in["requests"]]
    for keys in _in["key_sets"]
]))
"#;

const NODE_DRIVER: &str = r#"
let _raw = "";
process.stdin.on("data", (c) => (_raw += c));
process.stdin.on("end", () => {
  const _in = JSON.parse(_raw);
  console.log(JSON.stringify(_in.key_sets.map((keys) =>
    _in.requests.map((r) => verifyV1a(keys, r.headers, Buffer.from(r.body, "base64"))))));
});
"#;

/// Runs the docs' `v1a` receivers (Python, Node.js) on `requests` once per
/// key set; both must give the same answers, which are returned.
fn verify_in_docs_receivers(requests: &[Value], key_sets: &[Value]) -> Value {
    let input = json!({"requests": requests, "key_sets": key_sets});
    let python = doc_block("python", "def verify_v1a") + PYTHON_DRIVER;
    let by_python = run_snippet(&morag_cli::stack::python(), "py", &python, &input);
    let node = doc_block("js", "function verifyV1a") + NODE_DRIVER;
    let by_node = run_snippet(std::path::Path::new("node"), "js", &node, &input);
    assert_eq!(by_python, by_node, "Python and Node.js disagree");
    by_python
}

/// Real webhooks of a tenant on `v1` + `v1a` during a key rotation: each
/// carries one `v1` and two `v1a` signatures and a `webhook-key-ids` header
/// naming the two keys in order; the docs' receivers verify them with the
/// public keys `GET /api/v1/webhooks/public-keys` served (both keys, the
/// old one alone as a receiver that has not refetched, the new one alone)
/// and refuse a tampered body and another tenant's keys. With `["v1a"]`
/// alone, no `v1` signature is sent and the public key still verifies.
#[tokio::test]
async fn v1a_webhooks_verify_with_the_public_keys_from_the_api() {
    let (env, schedule) = webhook_env("1").await;
    assert_eq!(
        set_schemes(&env, &env.key_a, json!(["v1", "v1a"])).await.status,
        StatusCode::OK
    );
    let rotated = rotate_key(&env, &env.key_a, "?overlap_seconds=3600").await;
    let keys = keys_of(&rotated);
    assert_eq!(keys.len(), 2);
    let from_api = env.get(&env.key_a, "/api/v1/webhooks/public-keys").await;
    assert_eq!(keys_of(&from_api), keys);

    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), None).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(2),
        &[
            event(&task_id, "s", "started", None, 1),
            event(&task_id, "c", "completed", None, 2),
        ],
        Duration::from_secs(15),
    )
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 2, "started and completed");
    for r in &got {
        let schemes: Vec<&str> = r
            .header("webhook-signature")
            .split(' ')
            .map(|s| s.split(',').next().unwrap())
            .collect();
        assert_eq!(schemes, ["v1", "v1a", "v1a"], "{}", r.header("webhook-signature"));
        assert_eq!(r.header("webhook-key-ids"), format!("{} {}", keys[0].0, keys[1].0));
    }
    let mut requests: Vec<Value> = got.iter().map(|r| snippet_request(r, &r.body)).collect();
    requests.push(snippet_request(&got[1], &tampered(&got[1].body)));

    let set = |ks: &[(String, String)]| Value::Object(ks.iter().map(|(id, pk)| (id.clone(), json!(pk))).collect());
    let others = keys_of(&env.get(&env.key_b, "/api/v1/webhooks/public-keys").await);
    // the other tenant's key filed under acme's key id: still refused
    let impostor = vec![(keys[0].0.clone(), others[0].1.clone())];
    let key_sets = [
        set(&keys),
        set(&keys[1..]),
        set(&keys[..1]),
        set(&others),
        set(&impostor),
        json!({}),
    ];
    assert_eq!(
        verify_in_docs_receivers(&requests, &key_sets),
        json!([
            [true, true, false],
            [true, true, false],
            [true, true, false],
            [false, false, false],
            [false, false, false],
            [false, false, false],
        ])
    );

    // v1a alone: no shared-secret signature at all
    let only = set_schemes(&env, &env.key_a, json!(["v1a"])).await;
    assert_eq!(only.body["schemes"], json!(["v1a"]));
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(2),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(15),
    )
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .header("webhook-signature")
            .split(' ')
            .all(|s| s.starts_with("v1a,")),
        "{}",
        got[0].header("webhook-signature")
    );
    assert_eq!(
        verify_in_docs_receivers(&[snippet_request(&got[0], &got[0].body)], &[set(&keys)]),
        json!([[true]])
    );
}

/// Rotations that race: each write is conditional on the version it read,
/// so of eight concurrent rotations the ones that succeed form one chain
/// (each one's previous secret is the one before it: no two succeed from the
/// same state, which would drop a secret receivers were told still signs)
/// and the others fail as `Conflict`, writing nothing.
#[tokio::test]
async fn racing_rotations_never_both_win_from_the_same_state() {
    use morag_shared::domain::delivery::SigningSecret;
    use morag_shared::domain::Credential;
    use morag_shared::error::StoreError;
    use morag_shared::ports::SecretStore;
    let (env, _) = webhook_env("1").await;
    let tenant: morag_shared::domain::TenantId = "acme".parse().unwrap();
    let until = morag_shared::time::now() + chrono::Duration::hours(1);
    let rotations = (0..8).map(|_| {
        let store = env.store.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let new = SigningSecret::generate();
            let got = store.rotate(&tenant, Credential::Secret, &new, Some(until)).await;
            (new, got)
        })
    });
    let mut won = Vec::new();
    let mut conflicts = 0;
    for r in futures_util::future::join_all(rotations).await {
        match r.unwrap() {
            (new, Ok(stored)) => {
                assert_eq!(stored.secret.current, new);
                won.push((stored.secret.previous.unwrap().0, new));
            }
            (_, Err(StoreError::Conflict { .. })) => conflicts += 1,
            (_, Err(e)) => panic!("{e}"),
        }
    }
    assert!(!won.is_empty());
    assert!(conflicts > 0, "the rotations did not race; the test checked nothing");
    // the winners chain from SECRET: every previous is SECRET or another winner's new
    let mut previous: Vec<&str> = won.iter().map(|(p, _)| p.as_str()).collect();
    previous.sort_unstable();
    previous.dedup();
    assert_eq!(
        previous.len(),
        won.len(),
        "two rotations won from the same state: {won:?}"
    );
    let mut at = crate::webhooks::SECRET.to_owned();
    for _ in 0..won.len() {
        at = won.iter().find(|(p, _)| *p == at).expect("a broken chain").1.clone();
    }
    let stored = env.store.tenant_secrets(&tenant).await.unwrap().unwrap();
    assert_eq!(stored.secret.current, at, "the last winner's secret is current");
}
