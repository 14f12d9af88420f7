//! Tenant webhook endpoints: the routes that manage them (validation, SSRF
//! rules, tenancy, the limit), the fan-out of every task event to each
//! enabled endpoint whose filter matches (real receivers on 127.0.0.1), each
//! endpoint's delivery log, and what a send does when the endpoint changed
//! after the delivery was planned.

use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use serde_json::{json, Value};

use morag_shared::domain::delivery::SigningSecret;
use morag_shared::domain::endpoint::MAX_ENDPOINTS_PER_TENANT;
use morag_tests::receiver::TestReceiver;
use morag_tests::{call, TestEnv, TestResponse};

use crate::webhooks::{deliver_all, event, kinds, sender, submit, webhook_env, SECRET};

async fn send(env: &TestEnv, key: Option<&str>, method: &str, path: &str, body: Option<Value>) -> TestResponse {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = match body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    call(&env.status, request.body(body).unwrap()).await
}

async fn create(env: &TestEnv, key: &str, body: Value) -> TestResponse {
    send(env, Some(key), "POST", "/api/v1/webhooks/endpoints", Some(body)).await
}

async fn create_ok(env: &TestEnv, key: &str, body: Value) -> String {
    let res = create(env, key, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["endpoint_id"].as_str().unwrap().to_owned()
}

fn ids(res: &TestResponse) -> Vec<String> {
    res.body["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", res.body))
        .iter()
        .map(|e| e["endpoint_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Create, list, read, change and delete; bad input is refused with the
/// right status and nothing written; URLs follow the webhook_url rules;
/// another tenant's endpoint is a 404; the limit holds; no key, no answer.
#[tokio::test]
async fn endpoints_are_managed_over_the_api_checked_and_tenant_scoped() {
    let (env, _) = webhook_env("1").await;
    let first = create(&env, &env.key_a, json!({"url": "https://hooks.example.com/a"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let a = first.body["endpoint_id"].as_str().unwrap().to_owned();
    assert!(a.starts_with("ep_") && a.len() == 27, "{a}");
    assert_eq!(
        first.body["event_types"],
        json!([
            "task_started",
            "task_progress",
            "task_stalled",
            "task_completed",
            "task_failed"
        ])
    );
    assert_eq!(
        (first.body["disabled"].clone(), first.body["description"].clone()),
        (json!(false), json!(""))
    );
    let b = create_ok(
        &env,
        &env.key_a,
        json!({"url": "https://hooks.example.com/b", "event_types": ["task_failed", "task_completed", "task_failed"],
               "description": "ends only"}),
    )
    .await;

    for (body, status, code) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "missing_field"),
        (
            json!({"url": "https://10.0.0.1/h"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"url": "https://169.254.169.254/latest"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"url": "ftp://hooks.example.com/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"url": "https://u:p@hooks.example.com/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"url": "https://hooks.example.com/", "event_types": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event_types",
        ),
        (
            json!({"url": "https://hooks.example.com/", "event_types": ["task_done"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event_types",
        ),
        (
            json!({"url": "https://hooks.example.com/", "description": "x".repeat(257)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_description",
        ),
        (
            json!({"url": "https://hooks.example.com/", "secret": "mine"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (json!({"url": 5}), StatusCode::BAD_REQUEST, "invalid_body"),
        (
            json!({"url": "https://hooks.example.com/", "pad": "x".repeat(9000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ] {
        let res = create(&env, &env.key_a, body.clone()).await;
        assert_eq!((res.status, res.error_code()), (status, code), "{body}: {:?}", res.body);
    }
    let text = call(
        &env.status,
        http::Request::post("/api/v1/webhooks/endpoints")
            .header("authorization", format!("Bearer {}", env.key_a))
            .header("content-type", "text/plain")
            .body(Body::from(r#"{"url": "https://hooks.example.com/"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let listed = send(&env, Some(&env.key_a), "GET", "/api/v1/webhooks/endpoints", None).await;
    assert_eq!(
        ids(&listed),
        [a.clone(), b.clone()],
        "oldest first; nothing else written"
    );
    assert_eq!(
        listed.body["endpoints"][1]["event_types"],
        json!(["task_failed", "task_completed"])
    );
    let other = send(&env, Some(&env.key_b), "GET", "/api/v1/webhooks/endpoints", None).await;
    assert!(ids(&other).is_empty(), "globex sees none of acme's");

    let path = |id: &str| format!("/api/v1/webhooks/endpoints/{id}");
    let got = send(&env, Some(&env.key_a), "GET", &path(&a), None).await;
    assert_eq!(
        (got.status, got.body["url"].clone()),
        (StatusCode::OK, json!("https://hooks.example.com/a"))
    );
    for (key, id) in [
        (&env.key_b, a.as_str()),
        (&env.key_a, "ep_nope"),
        (&env.key_a, "ep_000000000000000000000000"),
    ] {
        let res = send(&env, Some(key), "GET", &path(id), None).await;
        assert_eq!(
            (res.status, res.error_code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{id}"
        );
    }

    let patched = send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path(&a),
        Some(json!({"disabled": true, "description": "paused"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(
        (patched.body["disabled"].clone(), patched.body["description"].clone()),
        (json!(true), json!("paused"))
    );
    assert_eq!(
        patched.body["url"], "https://hooks.example.com/a",
        "untouched fields kept"
    );
    let bad = send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path(&a),
        Some(json!({"url": "http://10.1.2.3/"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        send(&env, Some(&env.key_a), "GET", &path(&a), None).await.body["url"],
        "https://hooks.example.com/a"
    );
    let foreign = send(
        &env,
        Some(&env.key_b),
        "PATCH",
        &path(&a),
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&env, Some(&env.key_a), "GET", &path(&a), None).await.body["disabled"],
        true
    );

    assert_eq!(
        send(&env, Some(&env.key_b), "DELETE", &path(&b), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&env, Some(&env.key_a), "DELETE", &path(&b), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&env, Some(&env.key_a), "GET", &path(&b), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&env, Some(&env.key_a), "DELETE", &path(&b), None).await.status,
        StatusCode::NOT_FOUND
    );

    // the limit: one more than MAX_ENDPOINTS_PER_TENANT is refused
    for i in 1..MAX_ENDPOINTS_PER_TENANT {
        create_ok(
            &env,
            &env.key_a,
            json!({"url": format!("https://hooks.example.com/{i}")}),
        )
        .await;
    }
    let over = create(&env, &env.key_a, json!({"url": "https://hooks.example.com/over"})).await;
    assert_eq!(
        (over.status, over.error_code()),
        (StatusCode::CONFLICT, "endpoint_limit")
    );
    let all = send(&env, Some(&env.key_a), "GET", "/api/v1/webhooks/endpoints", None).await;
    assert_eq!(ids(&all).len(), MAX_ENDPOINTS_PER_TENANT);

    for (method, p) in [
        ("GET", "/api/v1/webhooks/endpoints".to_owned()),
        ("POST", "/api/v1/webhooks/endpoints".to_owned()),
        ("GET", path(&a)),
        ("PATCH", path(&a)),
        ("DELETE", path(&a)),
        ("GET", format!("{}/deliveries", path(&a))),
    ] {
        for key in [None, Some("mrg_wrong")] {
            let res = send(
                &env,
                key,
                method,
                &p,
                Some(json!({"url": "https://hooks.example.com/"})),
            )
            .await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {p} {key:?}");
        }
    }
}

/// A task's events reach its own `webhook_url` and each enabled endpoint of
/// its tenant whose filter matches, as separate deliveries with their own
/// `webhook-id`, the same body and the tenant's signature; a disabled
/// endpoint gets nothing (its deliveries are kept, paused, for a recovery)
/// and another tenant's endpoint nothing at all. Each endpoint's log lists its
/// deliveries newest first, paged with sealed cursors, filtered by state.
#[tokio::test]
async fn every_event_goes_to_each_matching_endpoint_with_its_own_delivery() {
    let (env, schedule) = webhook_env("1").await;
    let own = TestReceiver::always(200).await;
    let (all, ends, off, globex) = (
        TestReceiver::always(200).await,
        TestReceiver::always(200).await,
        TestReceiver::always(200).await,
        TestReceiver::always(200).await,
    );
    let all_id = create_ok(&env, &env.key_a, json!({"url": all.url()})).await;
    let ends_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": ends.url(), "event_types": ["task_completed", "task_failed"]}),
    )
    .await;
    create_ok(&env, &env.key_a, json!({"url": off.url(), "disabled": true})).await;
    create_ok(&env, &env.key_b, json!({"url": globex.url()})).await;

    let task_id = submit(&env, &own.url(), Some(json!(["task_completed"]))).await;
    let sender = sender(&env, &schedule, Duration::from_secs(2));
    for phase in [
        vec![event(&task_id, "s", "started", None, 1)],
        vec![event(&task_id, "p", "progress", Some(0.3), 2)],
        vec![event(&task_id, "c", "completed", None, 3)],
    ] {
        env.send_status_events(&phase).await;
        deliver_all(&env, &sender, Duration::from_secs(15)).await;
    }
    assert_eq!(kinds(&own), ["task_completed"]);
    assert_eq!(kinds(&all), ["task_started", "task_progress", "task_completed"]);
    assert_eq!(kinds(&ends), ["task_completed"]);
    assert!(off.received().is_empty() && globex.received().is_empty());

    let secret = SigningSecret::parse(SECRET).unwrap();
    let mut webhook_ids = Vec::new();
    for r in own.received().iter().chain(&all.received()).chain(&ends.received()) {
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert_eq!(
            r.header("webhook-signature"),
            secret.sign(r.header("webhook-id"), ts, &r.body)
        );
        assert_eq!(r.json()["data"]["task_id"], task_id.as_str());
        webhook_ids.push(r.header("webhook-id").to_owned());
    }
    let count = webhook_ids.len();
    webhook_ids.sort();
    webhook_ids.dedup();
    assert_eq!(webhook_ids.len(), count, "one webhook-id per (event, endpoint)");
    let completed = |r: &TestReceiver| r.received().last().unwrap().body.clone();
    assert_eq!(completed(&own), completed(&all));
    assert_eq!(completed(&all), completed(&ends));

    // the task's deliveries: its own and the endpoints'
    let task_deliveries = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
    let listed: Vec<(String, Option<String>, String)> = task_deliveries.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["event_type"].as_str().unwrap().to_owned(),
                d["endpoint_id"].as_str().map(str::to_owned),
                d["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // its own 1, all 3, ends 1, and the disabled one's 3 kept paused
    assert_eq!(listed.len(), 8, "{listed:?}");
    assert_eq!(listed.iter().filter(|(_, e, _)| e.is_none()).count(), 1);
    assert_eq!(listed.iter().filter(|(.., s)| s == "paused").count(), 3, "{listed:?}");
    assert_eq!(
        listed.iter().filter(|(.., s)| s == "succeeded").count(),
        5,
        "{listed:?}"
    );

    // the endpoint's log: newest first, paged, filtered
    let log = |query: String| {
        let env = &env;
        let all_id = all_id.clone();
        async move {
            env.get(
                &env.key_a,
                &format!("/api/v1/webhooks/endpoints/{all_id}/deliveries{query}"),
            )
            .await
        }
    };
    let whole = log(String::new()).await;
    assert_eq!(whole.status, StatusCode::OK, "{:?}", whole.body);
    let order: Vec<&str> = whole.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["task_completed", "task_progress", "task_started"]);
    assert!(whole.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["endpoint_id"] == all_id.as_str() && d["task_id"] == task_id.as_str() && d["state"] == "succeeded"));
    let first = log("?limit=2".into()).await;
    assert_eq!(first.body["deliveries"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
    let second = log(format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(second.body["deliveries"][0]["event_type"], "task_started");
    assert!(second.body.get("next_cursor").is_none() || second.body["deliveries"].as_array().unwrap().len() == 1);
    assert_eq!(
        log("?state=succeeded".into()).await.body["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        log("?state=dead".into()).await.body["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(log("?state=bogus".into()).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(log("?limit=0".into()).await.status, StatusCode::BAD_REQUEST);
    // a cursor of this log does not page another endpoint's, or another state
    let elsewhere = env
        .get(
            &env.key_a,
            &format!("/api/v1/webhooks/endpoints/{ends_id}/deliveries?cursor={cursor}"),
        )
        .await;
    assert_eq!(
        (elsewhere.status, elsewhere.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
    let other_state = log(format!("?limit=2&state=succeeded&cursor={cursor}")).await;
    assert_eq!(other_state.error_code(), "invalid_cursor");
    let foreign = env
        .get(&env.key_b, &format!("/api/v1/webhooks/endpoints/{all_id}/deliveries"))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

/// What a send finds when the endpoint changed after its delivery was
/// planned: disabled, the delivery ends `paused` (no attempt, not spent) and
/// a redelivery sends it once the endpoint is enabled again; deleted, it
/// fails for good as `endpoint_deleted`; its URL changed, it goes to the
/// new URL.
#[tokio::test]
async fn a_send_follows_the_endpoint_as_it_is_now() {
    let (env, schedule) = webhook_env("1").await;
    let (paused, deleted, moved_from, moved_to) = (
        TestReceiver::always(200).await,
        TestReceiver::always(200).await,
        TestReceiver::always(200).await,
        TestReceiver::always(200).await,
    );
    let started_only = json!(["task_started"]);
    let paused_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": paused.url(), "event_types": started_only}),
    )
    .await;
    let deleted_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": deleted.url(), "event_types": started_only}),
    )
    .await;
    let moved_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": moved_from.url(), "event_types": started_only}),
    )
    .await;
    let task_id = submit(&env, &paused.url(), Some(json!(["task_failed"]))).await;
    env.send_status_events(&[event(&task_id, "s", "started", None, 1)])
        .await;
    // planned (recorded), not sent yet
    let recorder = env.recorder();
    morag_cli::esm::poll_once(
        &env.sqs,
        &env.resources.status_events_queue_url,
        10,
        Duration::ZERO,
        |b| recorder.handle(b),
    )
    .await
    .unwrap();
    let path = |id: &str| format!("/api/v1/webhooks/endpoints/{id}");
    send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path(&paused_id),
        Some(json!({"disabled": true})),
    )
    .await;
    send(&env, Some(&env.key_a), "DELETE", &path(&deleted_id), None).await;
    send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path(&moved_id),
        Some(json!({"url": moved_to.url()})),
    )
    .await;
    let sender = sender(&env, &schedule, Duration::from_secs(2));
    deliver_all(&env, &sender, Duration::from_secs(15)).await;

    assert!(paused.received().is_empty() && deleted.received().is_empty() && moved_from.received().is_empty());
    assert_eq!(kinds(&moved_to), ["task_started"]);
    let deliveries = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
    let by_endpoint = |id: &str| {
        deliveries.body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint_id"] == id)
            .unwrap_or_else(|| panic!("no delivery for {id}"))
            .clone()
    };
    let p = by_endpoint(&paused_id);
    assert_eq!(
        (p["state"].clone(), p["attempts_total"].clone()),
        (json!("paused"), json!(0))
    );
    let d = by_endpoint(&deleted_id);
    assert_eq!(d["state"], "failed");
    assert_eq!(d["attempts"][0]["error"], "endpoint_deleted");
    assert_eq!(by_endpoint(&moved_id)["state"], "succeeded");

    // enabled again, the paused delivery goes out on a redelivery
    send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path(&paused_id),
        Some(json!({"disabled": false})),
    )
    .await;
    let delivery_id = p["delivery_id"].as_str().unwrap();
    let redeliver = call(
        &env.status,
        http::Request::post(format!("/api/v1/status/{task_id}/webhooks/{delivery_id}/redeliver"))
            .header("authorization", format!("Bearer {}", env.key_a))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(redeliver.status, StatusCode::ACCEPTED, "{:?}", redeliver.body);
    deliver_all(&env, &sender, Duration::from_secs(15)).await;
    assert_eq!(kinds(&paused), ["task_started"]);
    assert_eq!(paused.received()[0].header("webhook-id"), delivery_id);
}

/// A sender whose endpoints are disabled after failing for `window`.
fn sender_with_window(
    env: &TestEnv,
    schedule: &morag_shared::domain::delivery::RetrySchedule,
    window: Duration,
) -> morag_webhook_sender::Sender {
    let mut cfg = env.sender_config(schedule, Duration::from_secs(2), crate::webhooks::LOCAL);
    cfg.endpoint_failure_window = window;
    morag_webhook_sender::wiring::build_with_lookup(&env.sdk, &cfg, morag_shared::outbound::system_lookup())
        .expect("sender")
}

async fn endpoint(env: &TestEnv, id: &str) -> Value {
    let res = env.get(&env.key_a, &format!("/api/v1/webhooks/endpoints/{id}")).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

/// Health: a failure starts a streak (`failing_since`), a success ends it;
/// an endpoint whose every attempt failed through the failure window is
/// disabled (`disabled_reason: failing`), once, and the tenant's endpoint
/// that subscribes to `endpoint.disabled` is told (signed, as the schema
/// says); the disabled endpoint's queued delivery pauses and new events
/// plan nothing for it; enabling it again starts afresh.
#[tokio::test]
async fn an_endpoint_failing_through_the_window_is_disabled_and_the_tenant_told() {
    let (env, schedule) = webhook_env("1").await;
    let down = TestReceiver::always(503).await;
    let ops = TestReceiver::always(200).await;
    let flaky = TestReceiver::start(
        vec![morag_tests::receiver::Reply::Status(503)],
        morag_tests::receiver::Reply::Status(200),
    )
    .await;
    let task_events = json!(["task_started", "task_completed"]);
    let down_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": down.url(), "event_types": task_events, "description": "down"}),
    )
    .await;
    let ops_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": ops.url(), "event_types": ["endpoint.disabled"]}),
    )
    .await;
    let flaky_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": flaky.url(), "event_types": task_events}),
    )
    .await;
    // the window: far longer than the first event's two attempts take on a
    // loaded machine (moto shared with the whole suite)
    let window = Duration::from_secs(6);
    let sender = sender_with_window(&env, &schedule, window);

    let task_id = submit(&env, &ops.url(), Some(json!(["task_failed"]))).await;
    env.send_status_events(&[event(&task_id, "s", "started", None, 1)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(15)).await;
    let d = endpoint(&env, &down_id).await;
    assert!(d["failing_since"].is_string() && d["disabled"] == false, "{d}");
    let f = endpoint(&env, &flaky_id).await;
    assert!(f.get("failing_since").is_none(), "a success ended its streak: {f}");
    assert_eq!(flaky.received().len(), 2, "503 then 200");
    assert!(ops.received().is_empty(), "nothing disabled yet");

    // past the window, the next failure disables it
    tokio::time::sleep(window).await;
    env.send_status_events(&[event(&task_id, "c", "completed", None, 2)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(15)).await;
    let d = endpoint(&env, &down_id).await;
    assert_eq!(
        (d["disabled"].clone(), d["disabled_reason"].clone()),
        (json!(true), json!("failing")),
        "{d}"
    );
    assert!(d["disabled_at"].is_string());
    assert!(
        d.get("next_probe_at").is_none(),
        "a disabled endpoint is not probed: {d}"
    );
    assert_eq!(endpoint(&env, &flaky_id).await["disabled"], false);
    let told = ops.received();
    assert_eq!(told.len(), 1, "told once");
    let body = told[0].json();
    assert_eq!(body["event_type"], "endpoint.disabled");
    assert_eq!(body["data"]["endpoint_id"], down_id.as_str());
    assert_eq!(body["data"]["reason"], "failing");
    assert_eq!(body["data"]["failing_since"], d["failing_since"]);
    assert_eq!(body["data"]["description"], "down");
    let ts: i64 = told[0].header("webhook-timestamp").parse().unwrap();
    assert_eq!(
        told[0].header("webhook-signature"),
        SigningSecret::parse(SECRET)
            .unwrap()
            .sign(told[0].header("webhook-id"), ts, &told[0].body)
    );
    let problems = morag_tests::schema::webhook_body_problems(&[body]);
    assert!(problems.is_empty(), "{problems:#?}");
    let log = env
        .get(&env.key_a, &format!("/api/v1/webhooks/endpoints/{ops_id}/deliveries"))
        .await;
    assert_eq!(log.body["deliveries"][0]["event_type"], "endpoint.disabled");
    assert_eq!(log.body["deliveries"][0]["state"], "succeeded");

    // the down endpoint's completed delivery: one failed attempt, then paused
    let deliveries = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
    let of_down: Vec<(String, String)> = deliveries.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["endpoint_id"] == down_id.as_str())
        .map(|d| {
            (
                d["event_type"].as_str().unwrap().to_owned(),
                d["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        of_down.contains(&("task_completed".to_owned(), "paused".to_owned())),
        "{of_down:?}"
    );

    // a new task's webhook for it is kept, paused, for its recovery: not sent
    let arrivals = down.received().len();
    let next = submit(&env, &ops.url(), Some(json!(["task_failed"]))).await;
    env.send_status_events(&[event(&next, "s", "started", None, 1)]).await;
    deliver_all(&env, &sender, Duration::from_secs(15)).await;
    assert_eq!(down.received().len(), arrivals);
    let planned = env.get(&env.key_a, &format!("/api/v1/status/{next}/webhooks")).await;
    let for_down: Vec<&Value> = planned.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["endpoint_id"] == down_id.as_str())
        .collect();
    assert_eq!(for_down.len(), 1);
    assert_eq!(
        (for_down[0]["state"].clone(), for_down[0]["attempts_total"].clone()),
        (json!("paused"), json!(0))
    );

    // enabled again: a fresh start
    let path = format!("/api/v1/webhooks/endpoints/{down_id}");
    let on = send(&env, Some(&env.key_a), "PATCH", &path, Some(json!({"disabled": false}))).await;
    assert_eq!(on.status, StatusCode::OK);
    for gone in ["disabled_reason", "disabled_at", "failing_since", "next_probe_at"] {
        assert!(on.body.get(gone).is_none(), "{gone}: {}", on.body);
    }
}

/// The outage the issue describes: 100 tasks run while an endpoint is down;
/// it is disabled, and what it misses is kept (`dead` after its attempts,
/// `paused` once disabled). Back up, `POST .../recover?since=` enables it
/// and replays what did not succeed, oldest first, paced, each with its
/// original `webhook-id`, in calls of at most 200 (`next_since`); with
/// coalescing the receiver gets each task's `task_started`, at most one
/// progress per task (none once it completed) and every terminal webhook:
/// exactly 200 arrivals for 100 tasks, none of them a progress after its
/// task's end.
#[tokio::test]
async fn recover_replays_what_the_endpoint_missed_coalesced_paced_with_original_ids() {
    use std::collections::{HashMap, HashSet};
    const TASKS: usize = 100;
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(503).await;
    let sink = TestReceiver::always(200).await;
    let ep = create_ok(&env, &env.key_a, json!({"url": receiver.url()})).await;
    let ops = TestReceiver::always(200).await;
    create_ok(
        &env,
        &env.key_a,
        json!({"url": ops.url(), "event_types": ["endpoint.disabled", "endpoint.recovered"]}),
    )
    .await;
    let sender = sender_with_window(&env, &schedule, Duration::from_secs(1));
    let since = morag_shared::time::now() - chrono::Duration::seconds(5);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        tasks.push(submit(&env, &sink.url(), Some(json!(["task_failed"]))).await);
    }
    // the outage: each task starts and crosses 25 %, the endpoint fails
    // every attempt and is disabled...
    let phase1: Vec<String> = tasks
        .iter()
        .flat_map(|t| {
            [
                event(t, "s", "started", None, 1),
                event(t, "p1", "progress", Some(0.3), 2),
            ]
        })
        .collect();
    env.send_status_events(&phase1).await;
    deliver_all(&env, &sender, Duration::from_secs(60)).await;
    assert_eq!(endpoint(&env, &ep).await["disabled_reason"], "failing");
    // ...and the tasks go on: half complete, half reach 50 %
    let phase2: Vec<String> = tasks
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let mut v = vec![event(t, "p2", "progress", Some(0.6), 3)];
            if i % 2 == 0 {
                v.push(event(t, "c", "completed", None, 4));
            }
            v
        })
        .collect();
    env.send_status_events(&phase2).await;
    deliver_all(&env, &sender, Duration::from_secs(60)).await;
    let missed_ids: HashSet<String> = {
        let mut ids = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
            let page = env
                .get(
                    &env.key_a,
                    &format!("/api/v1/webhooks/endpoints/{ep}/deliveries?limit=100{q}"),
                )
                .await;
            for d in page.body["deliveries"].as_array().unwrap() {
                assert_ne!(d["state"], "succeeded", "{d}");
                ids.insert(d["delivery_id"].as_str().unwrap().to_owned());
            }
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        ids
    };
    assert_eq!(
        missed_ids.len(),
        TASKS * 3 + TASKS / 2,
        "started, 25 %, 50 % each; completed for half"
    );
    let failed_before = receiver.received().len();

    // back up; recover in calls of at most 200
    receiver.set_default(morag_tests::receiver::Reply::Status(200));
    let mut replayed = 0;
    let mut from = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let started = std::time::Instant::now();
    let mut calls = 0;
    loop {
        let path = format!(
            "/api/v1/webhooks/endpoints/{ep}/recover?since={}",
            from.replace('+', "%2B")
        );
        let res = send(&env, Some(&env.key_a), "POST", &path, None).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
        assert_eq!(res.body["endpoint"]["disabled"], false);
        calls += 1;
        replayed += res.body["replayed"].as_u64().unwrap() as usize;
        match res.body["next_since"].as_str() {
            Some(next) => from = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(replayed, missed_ids.len());
    assert!(calls >= 2, "at most 200 a call");
    deliver_all(&env, &sender, Duration::from_secs(120)).await;
    let got: Vec<morag_tests::receiver::Received> = receiver.received()[failed_before..].to_vec();

    let mut by_task: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = HashSet::new();
    for r in &got {
        let id = r.header("webhook-id").to_owned();
        assert!(
            missed_ids.contains(&id),
            "a replay carries its original webhook-id: {id}"
        );
        assert!(seen.insert(id.clone()), "{id} twice");
        let body = r.json();
        by_task
            .entry(body["data"]["task_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["event_type"].as_str().unwrap().to_owned());
    }
    assert_eq!(got.len(), TASKS * 2, "started + (completed | latest progress) per task");
    for (i, t) in tasks.iter().enumerate() {
        let kinds = &by_task[t];
        let progress = kinds.iter().filter(|k| *k == "task_progress").count();
        if i % 2 == 0 {
            assert_eq!(
                (progress, kinds.contains(&"task_completed".to_owned())),
                (0, true),
                "{t}: {kinds:?}"
            );
        } else {
            assert_eq!(progress, 1, "{t}: {kinds:?}");
        }
        assert_eq!(kinds[0], "task_started", "oldest first: {kinds:?}");
    }
    // paced: the replay's arrivals spread over at least half the time the
    // pace gives them (without pacing they all land in about a second)
    let span = got.last().unwrap().at.duration_since(got.first().unwrap().at);
    let paced = Duration::from_millis((missed_ids.len() as u64 / 2) * 1000 / 10) / 2;
    assert!(span >= paced, "{} replays in {span:?}", got.len());
    println!(
        "recover: {} missed, {} replayed in {calls} calls, {} arrivals over {span:?} (recover to drained {:?})",
        missed_ids.len(),
        replayed,
        got.len(),
        started.elapsed()
    );
    let e = endpoint(&env, &ep).await;
    assert!(e.get("failing_since").is_none() && e["disabled"] == false, "{e}");
    // the operations endpoint heard of both: disabled once, recovered once
    // (by the call that enabled it, however many calls the replay took)
    assert_eq!(kinds(&ops), ["endpoint.disabled", "endpoint.recovered"]);
    let recovered = ops.received()[1].json();
    assert_eq!(recovered["data"]["endpoint_id"], ep.as_str());
    assert_eq!(recovered["data"]["replayed"], 200);
    let bodies: Vec<Value> = ops.received().iter().map(|r| r.json()).collect();
    let problems = morag_tests::schema::webhook_body_problems(&bodies);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A delivery that spends its attempts without a success tells the
/// tenant's endpoints that subscribe to `delivery.exhausted` (once, as the
/// schema says), whether it was for the task's own URL or an endpoint.
#[tokio::test]
async fn an_exhausted_delivery_is_announced_to_the_subscribed_endpoints() {
    let (env, schedule) = webhook_env("1").await;
    let broken = TestReceiver::always(503).await;
    let ops = TestReceiver::always(200).await;
    let ops_id = create_ok(
        &env,
        &env.key_a,
        json!({"url": ops.url(), "event_types": ["delivery.exhausted"]}),
    )
    .await;
    let task_id = submit(&env, &broken.url(), Some(json!(["task_started"]))).await;
    // a long window: nothing is disabled here
    let sender = sender_with_window(&env, &schedule, Duration::from_secs(3600));
    env.send_status_events(&[event(&task_id, "s", "started", None, 1)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(20)).await;
    assert_eq!(broken.received().len(), 2, "the schedule's two attempts");
    let deliveries = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
    let dead = &deliveries.body["deliveries"][0];
    assert_eq!(dead["state"], "dead");
    let told = ops.received();
    assert_eq!(told.len(), 1, "{:?}", kinds(&ops));
    let body = told[0].json();
    assert_eq!(body["event_type"], "delivery.exhausted");
    assert_eq!(body["data"]["delivery_id"], dead["delivery_id"]);
    assert_eq!(body["data"]["task_id"], task_id.as_str());
    assert_eq!(body["data"]["event_type"], "task_started");
    assert_eq!(body["data"]["attempts"], 2);
    assert!(body["data"].get("endpoint_id").is_none(), "the task's own URL");
    let problems = morag_tests::schema::webhook_body_problems(&[body]);
    assert!(problems.is_empty(), "{problems:#?}");
    let log = env
        .get(&env.key_a, &format!("/api/v1/webhooks/endpoints/{ops_id}/deliveries"))
        .await;
    assert_eq!(log.body["deliveries"][0]["event_type"], "delivery.exhausted");
}

/// The health conditions compare times as the item stores them, whoever
/// wrote it last: a streak that began on a whole second, then a PATCH (a
/// whole-item put) during it, still lets the disable through, once.
#[tokio::test]
async fn a_patch_during_a_failure_streak_does_not_keep_it_from_being_disabled() {
    use morag_shared::domain::endpoint::HealthChange;
    use morag_shared::ports::EndpointStore;
    let (env, _) = webhook_env("1").await;
    let id = create_ok(&env, &env.key_a, json!({"url": "https://hooks.example.com/h"})).await;
    let (tenant, id): (morag_shared::domain::TenantId, morag_shared::domain::EndpointId) =
        ("acme".parse().unwrap(), id.parse().unwrap());
    let since = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let now = morag_shared::time::now();
    assert!(env
        .store
        .update_health(
            &tenant,
            &id,
            HealthChange::StartFailing {
                at: since,
                probe_at: since + chrono::Duration::seconds(5)
            },
            now
        )
        .await
        .unwrap());
    // what PATCH does: read, change, put the whole item back
    let path = format!("/api/v1/webhooks/endpoints/{id}");
    let patched = send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path,
        Some(json!({"description": "edited"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    let read = env.store.get_endpoint(&tenant, &id).await.unwrap().unwrap();
    assert_eq!(read.failing_since, Some(since));
    // the breaker's probe time, as the put wrote it back, still claims
    assert_eq!(read.probe_at, Some(since + chrono::Duration::seconds(5)));
    let lease = now + chrono::Duration::seconds(30);
    assert!(env.store.claim_probe(&tenant, &id, read.probe_at, lease).await.unwrap());
    assert!(
        !env.store.claim_probe(&tenant, &id, read.probe_at, lease).await.unwrap(),
        "claimed once"
    );
    let disable = HealthChange::Disable { since };
    assert!(
        env.store.update_health(&tenant, &id, disable, now).await.unwrap(),
        "disabled"
    );
    assert!(
        !env.store.update_health(&tenant, &id, disable, now).await.unwrap(),
        "once"
    );
    assert_eq!(endpoint(&env, &id.to_string()).await["disabled_reason"], "failing");
}

/// Arrival times, sorted.
fn arrival_times(rx: &TestReceiver) -> Vec<std::time::Instant> {
    let mut at: Vec<_> = rx.received().iter().map(|r| r.at).collect();
    at.sort();
    at
}

/// An endpoint's `rate_limit_per_s` holds at the receiver: 30 webhooks
/// queued at once reach it paced, every one of them, none attempted twice
/// (waiting for a slot spends nothing); bad limits are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_rate_limit_holds_at_the_receiver() {
    let (env, schedule) = webhook_env("1").await;
    for bad in [json!(0), json!(1001), json!(2.5), json!("5"), json!(-1)] {
        let res = create(
            &env,
            &env.key_a,
            json!({"url": "https://hooks.example.com/r", "rate_limit_per_s": bad}),
        )
        .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {:?}", res.body);
        assert_eq!(res.body["error"]["code"], "invalid_rate_limit", "{:?}", res.body);
    }
    let listed = env.get(&env.key_a, "/api/v1/webhooks/endpoints").await;
    assert!(ids(&listed).is_empty(), "nothing written");
    // the edges are accepted
    for edge in [1, 1000] {
        let res = create(
            &env,
            &env.key_a,
            json!({"url": "https://hooks.example.com/r", "rate_limit_per_s": edge, "disabled": true}),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{edge}: {:?}", res.body);
        assert_eq!(res.body["rate_limit_per_s"], edge);
        let path = format!(
            "/api/v1/webhooks/endpoints/{}",
            res.body["endpoint_id"].as_str().unwrap()
        );
        assert_eq!(
            send(&env, Some(&env.key_a), "DELETE", &path, None).await.status,
            StatusCode::NO_CONTENT
        );
    }

    const LIMIT: usize = 4;
    let rx = TestReceiver::always(204).await;
    let own = TestReceiver::always(204).await;
    let id = create_ok(
        &env,
        &env.key_a,
        json!({"url": rx.url(), "event_types": ["task_started", "task_completed"], "rate_limit_per_s": LIMIT}),
    )
    .await;
    assert_eq!(endpoint(&env, &id).await["rate_limit_per_s"], LIMIT);
    let sender = sender(&env, &schedule, Duration::from_secs(5));
    let mut events = Vec::new();
    for _ in 0..15 {
        let task = submit(&env, &own.url(), Some(json!(["task_failed"]))).await;
        events.push(event(&task, "s", "started", None, 1));
        events.push(event(&task, "c", "completed", None, 2));
    }
    env.send_status_events(&events).await;
    deliver_all(&env, &sender, Duration::from_secs(90)).await;
    let at = arrival_times(&rx);
    assert_eq!(at.len(), 30, "every webhook arrived");
    let span = at[at.len() - 1] - at[0];
    // any LIMIT + 1 arrivals in a row span at least a second (less a
    // little network jitter): never more than LIMIT in a second
    let tightest = at.windows(LIMIT + 1).map(|w| w[LIMIT] - w[0]).min().unwrap();
    let most_in_a_second = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t - at[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    println!(
        "rate limit {LIMIT}/s: 30 arrivals over {:.2} s ({:.2}/s); tightest {} in a row: {:?}; most within any 1 s: {most_in_a_second}",
        span.as_secs_f64(),
        29.0 / span.as_secs_f64(),
        LIMIT + 1,
        tightest
    );
    let gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    println!("arrival gaps (ms): {gaps:?}");
    assert!(29.0 / span.as_secs_f64() <= LIMIT as f64 * 1.05);
    // waiting spent no attempt
    let log = env
        .get(
            &env.key_a,
            &format!("/api/v1/webhooks/endpoints/{id}/deliveries?limit=100"),
        )
        .await;
    let deliveries = log.body["deliveries"].as_array().unwrap();
    let mut starts: Vec<i64> = deliveries
        .iter()
        .map(|d| {
            let a = &d["attempts"][0];
            chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
                - a["latency_ms"].as_i64().unwrap()
        })
        .collect();
    starts.sort();
    let start_gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("attempt starts' gaps (ms): {start_gaps:?}");
    assert_eq!(deliveries.len(), 30);
    for d in deliveries {
        assert_eq!(
            (d["state"].clone(), d["attempts_total"].clone()),
            (json!("succeeded"), json!(1)),
            "{d}"
        );
    }
    // the sender's guarantee, from the attempts it recorded: any LIMIT + 1
    // attempts in a row started at least a second apart
    let tightest_starts = starts.windows(LIMIT + 1).map(|w| w[LIMIT] - w[0]).min().unwrap();
    assert!(
        tightest_starts >= 1000,
        "{tightest_starts} ms for {} starts: gaps (ms) {start_gaps:?}",
        LIMIT + 1
    );
    // at the receiver (on the test's own, shared CPUs: 20 ms allowed for its
    // scheduling; measured here, and printed above)
    assert!(
        tightest >= Duration::from_millis(980),
        "{most_in_a_second} in a second, {tightest:?} for {}: gaps (ms) {gaps:?}",
        LIMIT + 1
    );
    // and the limit can be removed
    let path = format!("/api/v1/webhooks/endpoints/{id}");
    let off = send(
        &env,
        Some(&env.key_a),
        "PATCH",
        &path,
        Some(json!({"rate_limit_per_s": null})),
    )
    .await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(off.body.get("rate_limit_per_s").is_none(), "{}", off.body);
}

/// The circuit breaker: while an endpoint fails, one delivery at a time
/// probes it at the schedule's pace (here a second) and the others wait
/// unattempted, instead of every queued delivery retrying on its own
/// schedule; the first success closes it and everything waiting goes out.
#[tokio::test]
async fn a_failing_endpoint_is_probed_at_the_schedules_pace_not_hammered() {
    let (env, schedule) = webhook_env("1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1").await;
    let rx = TestReceiver::always(503).await;
    let own = TestReceiver::always(204).await;
    let id = create_ok(
        &env,
        &env.key_a,
        json!({"url": rx.url(), "event_types": ["task_started"]}),
    )
    .await;
    let sender = sender(&env, &schedule, Duration::from_secs(5));
    // the first failure starts the streak and opens the breaker
    let first = submit(&env, &own.url(), Some(json!(["task_failed"]))).await;
    env.send_status_events(&[event(&first, "s", "started", None, 1)]).await;
    while rx.received().is_empty() {
        deliver_all(&env, &sender, Duration::from_secs(1)).await;
    }
    assert!(endpoint(&env, &id).await["next_probe_at"].is_string());
    // 20 more while it is down
    let mut events = Vec::new();
    for _ in 0..20 {
        let task = submit(&env, &own.url(), Some(json!(["task_failed"]))).await;
        events.push(event(&task, "s", "started", None, 1));
    }
    env.send_status_events(&events).await;
    let outage = std::time::Instant::now();
    deliver_all(&env, &sender, Duration::from_secs(8)).await;
    let down_for = outage.elapsed();
    let during = rx.received().len();
    // back up: the next probe succeeds and closes the breaker
    rx.set_default(morag_tests::receiver::Reply::Status(204));
    deliver_all(&env, &sender, Duration::from_secs(90)).await;
    let log = env
        .get(
            &env.key_a,
            &format!("/api/v1/webhooks/endpoints/{id}/deliveries?limit=100"),
        )
        .await;
    let deliveries = log.body["deliveries"].as_array().unwrap();
    let attempts: u64 = deliveries.iter().map(|d| d["attempts_total"].as_u64().unwrap()).sum();
    let total = rx.received().len();
    println!(
        "breaker: {during} attempts in {:.1} s of outage for 21 queued deliveries (gap 1 s), \
         {total} in all, {attempts} recorded",
        down_for.as_secs_f64()
    );
    // without the breaker each of the 21 retries about once a second
    assert!(
        during as f64 <= down_for.as_secs_f64() + 3.0,
        "{during} attempts in {down_for:?}: hammered"
    );
    assert_eq!(deliveries.len(), 21);
    for d in deliveries {
        assert_eq!(d["state"], "succeeded", "{d}");
    }
    assert_eq!(attempts as usize, total, "every attempt recorded");
    // after the outage: one success each (and at most the one probe that
    // may have been under way when the receiver came back)
    assert!((21..=22).contains(&(total - during)), "{total} - {during}");
    assert!(endpoint(&env, &id).await.get("failing_since").is_none(), "closed");
}

/// Send slots against the real table: concurrent reservations get
/// distinct slots an interval apart, and an idle endpoint's next slot is now.
#[tokio::test]
async fn send_slots_are_reserved_an_interval_apart() {
    use morag_shared::ports::EndpointStore;
    let (env, _) = webhook_env("1").await;
    let (tenant, id): (morag_shared::domain::TenantId, morag_shared::domain::EndpointId) =
        ("acme".parse().unwrap(), morag_shared::domain::EndpointId::generate());
    let now = morag_shared::time::now();
    let interval = Duration::from_millis(250);
    let reservations = (0..8).map(|_| env.store.reserve_send(&tenant, &id, interval, now));
    let mut slots: Vec<i64> = futures_util::future::join_all(reservations)
        .await
        .into_iter()
        .map(|s| (s.unwrap() - now).num_milliseconds())
        .collect();
    slots.sort();
    assert_eq!(slots, vec![0, 250, 500, 750, 1000, 1250, 1500, 1750]);
    // idle again after the last slot's interval: now
    let later = now + chrono::Duration::seconds(3);
    assert_eq!(
        env.store.reserve_send(&tenant, &id, interval, later).await.unwrap(),
        later
    );
    // the rate item is not an endpoint
    assert!(env.store.list_endpoints(&tenant).await.unwrap().is_empty());
}

/// A delivery waiting for its endpoint's breaker or rate limit moves its
/// due-index entry past the wait, so the watchdog does not take the wait for
/// a lost message; a postpone for another cycle changes nothing.
#[tokio::test]
async fn a_waiting_delivery_moves_its_watchdog_entry_past_the_wait() {
    use morag_shared::domain::watch::{self, Watched};
    use morag_shared::domain::{DeliveryId, TaskId, WebhookEvent};
    use morag_shared::ports::{DeliveryStore, WatchIndex};
    let (env, _) = webhook_env("1").await;
    let task = morag_tests::sample_task(&TaskId::new().to_string(), "acme");
    let task_id = task.task_id;
    let id = DeliveryId::derive(&task_id, WebhookEvent::TaskStarted, "once");
    let d = morag_tests::sample_delivery(&task, id.as_str(), "https://hooks.example.com/h");
    let now = morag_shared::time::now();
    assert!(env
        .store
        .insert_delivery(&d, now + chrono::Duration::days(1))
        .await
        .unwrap());
    // on the queue: watched from an hour on (the attempt grace)
    env.store.mark_enqueued(&task_id, &d.delivery_id, 0).await.unwrap();
    let entry = Watched::Delivery(task_id, d.delivery_id.clone());
    let watched = |at: chrono::DateTime<chrono::Utc>| {
        let (store, entry) = (env.store.clone(), entry.clone());
        async move {
            store
                .due(watch::shard(&task_id), at, 100, None)
                .await
                .unwrap()
                .items
                .contains(&entry)
        }
    };
    let hours = |h: i64| now + chrono::Duration::hours(h) + chrono::Duration::minutes(5);
    assert!(watched(hours(1)).await, "due an hour after its enqueue");
    // waits three hours: due an hour after that
    let until = now + chrono::Duration::hours(3);
    env.store.postpone(&task_id, &d.delivery_id, 0, until).await.unwrap();
    assert!(!watched(hours(1)).await, "not while it waits");
    assert!(!watched(hours(3)).await);
    assert!(watched(hours(4)).await, "an hour after the wait");
    // another cycle's postpone: nothing moves
    env.store
        .postpone(&task_id, &d.delivery_id, 1, now + chrono::Duration::hours(30))
        .await
        .unwrap();
    assert!(watched(hours(4)).await);
}

/// Creates racing past the count never leave more than the limit: with 97
/// endpoints, eight creates at once end with at most 100, each 201 is one
/// of them, every other answer is 409 `endpoint_limit`; the tenant can then
/// fill up to the limit one by one, and not past it.
#[tokio::test]
async fn racing_creates_never_leave_more_than_the_limit() {
    use morag_shared::domain::Endpoint;
    use morag_shared::ports::EndpointStore;
    let env = morag_tests::spawn_env().await;
    let tenant: morag_shared::domain::TenantId = "acme".parse().unwrap();
    let start = MAX_ENDPOINTS_PER_TENANT - 3;
    for i in 0..start {
        let e = Endpoint::new(
            tenant.clone(),
            format!("https://hooks.example.com/{i}"),
            morag_shared::domain::WebhookEvent::ALL.to_vec(),
            morag_shared::time::now(),
        );
        env.store.create_endpoint(&e).await.unwrap();
    }
    let racing = (0..8).map(|i| {
        create(
            &env,
            &env.key_a,
            json!({"url": format!("https://hooks.example.com/race/{i}")}),
        )
    });
    let answers = futures_util::future::join_all(racing).await;
    let listed = ids(&send(&env, Some(&env.key_a), "GET", "/api/v1/webhooks/endpoints", None).await);
    assert!(listed.len() <= MAX_ENDPOINTS_PER_TENANT, "{} endpoints", listed.len());
    let mut created = 0;
    for a in &answers {
        match a.status {
            StatusCode::CREATED => {
                created += 1;
                assert!(listed.contains(&a.body["endpoint_id"].as_str().unwrap().to_owned()));
            }
            _ => assert_eq!(
                (a.status, a.error_code()),
                (StatusCode::CONFLICT, "endpoint_limit"),
                "{:?}",
                a.body
            ),
        }
    }
    assert_eq!(listed.len(), start + created, "each 201 stayed, each 409 left nothing");
    for i in listed.len()..MAX_ENDPOINTS_PER_TENANT {
        create_ok(
            &env,
            &env.key_a,
            json!({"url": format!("https://hooks.example.com/fill/{i}")}),
        )
        .await;
    }
    let over = create(&env, &env.key_a, json!({"url": "https://hooks.example.com/over"})).await;
    assert_eq!(
        (over.status, over.error_code()),
        (StatusCode::CONFLICT, "endpoint_limit")
    );
    let listed = ids(&send(&env, Some(&env.key_a), "GET", "/api/v1/webhooks/endpoints", None).await);
    assert_eq!(listed.len(), MAX_ENDPOINTS_PER_TENANT);
}

/// Registers the most endpoints a tenant may have, all on `receiver`, told
/// apart by path (`/ep/{i}`).
async fn most_endpoints(env: &TestEnv, receiver: &TestReceiver) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..MAX_ENDPOINTS_PER_TENANT {
        ids.push(
            create_ok(
                env,
                &env.key_a,
                json!({"url": format!("http://{}/ep/{i}", receiver.addr)}),
            )
            .await,
        );
    }
    ids
}

/// What each path of a receiver got: its event types, sorted.
fn kinds_by_path(receiver: &TestReceiver) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_path = std::collections::BTreeMap::<String, Vec<String>>::new();
    for r in receiver.received() {
        by_path
            .entry(r.path.clone())
            .or_default()
            .push(r.json()["event_type"].as_str().unwrap_or_default().to_owned());
    }
    by_path.values_mut().for_each(|k| k.sort());
    by_path
}

/// Asserts every endpoint path and the task's own URL got `expected` once
/// each (sorted), each webhook with its own id and a valid signature.
fn assert_each_got(endpoints: &TestReceiver, own: &TestReceiver, expected: &[&str]) {
    let by_path = kinds_by_path(endpoints);
    assert_eq!(
        by_path.len(),
        MAX_ENDPOINTS_PER_TENANT,
        "{:?}",
        by_path.keys().collect::<Vec<_>>()
    );
    for (path, got) in &by_path {
        assert_eq!(got, expected, "{path}");
    }
    let mut own_kinds = kinds(own);
    own_kinds.sort();
    assert_eq!(own_kinds, expected);
    let secret = SigningSecret::parse(SECRET).unwrap();
    let all: Vec<_> = endpoints.received().into_iter().chain(own.received()).collect();
    let mut ids: Vec<&str> = all.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "one webhook-id per (event, endpoint)");
    for r in &all {
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert_eq!(
            r.header("webhook-signature"),
            secret.sign(r.header("webhook-id"), ts, &r.body)
        );
    }
}

/// A tenant with the most endpoints: an event of two webhook types plans
/// 2 × (100 + 1) deliveries, more than one DynamoDB transaction holds; each
/// endpoint still gets every event once, and the task lists every delivery.
#[tokio::test]
async fn a_tenant_with_the_most_endpoints_gets_every_event_at_each() {
    use morag_shared::ports::DeliveryStore;
    let (env, schedule) = webhook_env("1").await;
    let (endpoints, own) = (TestReceiver::always(200).await, TestReceiver::always(200).await);
    most_endpoints(&env, &endpoints).await;
    let over = create(&env, &env.key_a, json!({"url": "https://hooks.example.com/over"})).await;
    assert_eq!(over.error_code(), "endpoint_limit");

    let task_id = submit(&env, &own.url(), None).await;
    let sender = sender(&env, &schedule, Duration::from_secs(5));
    // from pending straight to 30 %: task_started and task_progress at once
    env.send_status_events(&[event(&task_id, "p", "progress", Some(0.3), 1)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(120)).await;
    assert_each_got(&endpoints, &own, &["task_progress", "task_started"]);
    env.send_status_events(&[event(&task_id, "c", "completed", None, 2)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(120)).await;
    assert_each_got(&endpoints, &own, &["task_completed", "task_progress", "task_started"]);

    let listed = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
    let states: Vec<&str> = listed.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 3 * (MAX_ENDPOINTS_PER_TENANT + 1));
    assert!(states.iter().all(|s| *s == "succeeded"), "{states:?}");
    let task_id = task_id.parse().unwrap();
    assert_eq!(env.store.expand_fanout(&task_id).await.unwrap(), 0, "no marker left");
}

/// Applies `body` to its task as the recorder would, by a writer that dies
/// right after the event's transaction (before the second fan-out stage).
async fn apply_then_die(env: &TestEnv, body: &str) {
    use morag_shared::domain::{decide_linked, ApplyOutcome, Decision, Links, StatusEvent};
    use morag_shared::ports::{EndpointStore, TaskStore};
    let now = morag_shared::time::now();
    let event = StatusEvent::parse(body, now).unwrap();
    let task = env.store.get_task(&event.task_id).await.unwrap().unwrap();
    let endpoints = env.store.list_endpoints(&task.tenant).await.unwrap();
    let links = Links {
        api_base: None,
        endpoints: &endpoints,
    };
    let Decision::Apply {
        task: mut after,
        entry,
        webhooks,
    } = decide_linked(&task, &event, links)
    else {
        panic!("not applied");
    };
    // a worker with a long heartbeat: only the fan-out is due for the watchdog
    after.heartbeat_timeout_s = 86_400;
    let deliveries: Vec<_> = webhooks.into_iter().map(|p| p.into_delivery(&after, now)).collect();
    assert_eq!(deliveries.len(), 2 * (MAX_ENDPOINTS_PER_TENANT + 1));
    let outcome = env
        .store
        .apply_event_then_die(&task, &after, &entry, &deliveries, &env.recorder().retention)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Applied);
}

/// A writer killed between an event's transaction and its second fan-out
/// stage loses no webhook: the status event's redelivery (a duplicate)
/// writes the deliveries out and sends them; if the event never comes back,
/// the watchdog does (two runs at once: once), and its next run sends them.
#[tokio::test]
async fn a_writer_killed_between_the_fan_out_stages_loses_no_webhook() {
    use morag_shared::ports::EndpointStore;
    let (env, schedule) = webhook_env("1").await;
    let (endpoints, own) = (TestReceiver::always(200).await, TestReceiver::always(200).await);
    most_endpoints(&env, &endpoints).await;
    let sender = sender(&env, &schedule, Duration::from_secs(5));
    let listed = |task_id: String| {
        let env = &env;
        async move {
            let res = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
            res.body["deliveries"].as_array().unwrap().len()
        }
    };

    // redelivered: the recorder's duplicate finishes the job
    let task_id = submit(&env, &own.url(), None).await;
    let body = event(&task_id, "p", "progress", Some(0.3), 1);
    apply_then_die(&env, &body).await;
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "progress", "the event was applied");
    assert_eq!(listed(task_id.clone()).await, 0, "its deliveries are still markers");
    env.send_status_events(&[body]).await;
    deliver_all(&env, &sender, Duration::from_secs(120)).await;
    assert_each_got(&endpoints, &own, &["task_progress", "task_started"]);
    assert_eq!(listed(task_id).await, 2 * (MAX_ENDPOINTS_PER_TENANT + 1));

    // never redelivered: the watchdog
    let (endpoints2, own2) = (TestReceiver::always(200).await, TestReceiver::always(200).await);
    for ep in env.store.list_endpoints(&"acme".parse().unwrap()).await.unwrap() {
        let path = ep.url.rsplit('/').next().unwrap().to_owned();
        let res = send(
            &env,
            Some(&env.key_a),
            "PATCH",
            &format!("/api/v1/webhooks/endpoints/{}", ep.endpoint_id),
            Some(json!({"url": format!("http://{}/ep/{path}", endpoints2.addr)})),
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    }
    let task_id = submit(&env, &own2.url(), None).await;
    apply_then_die(&env, &event(&task_id, "p", "progress", Some(0.3), 1)).await;
    let watchdog = env.watchdog();
    let soon = |s: i64| morag_shared::time::now() + chrono::Duration::seconds(s);
    assert_eq!(
        watchdog.run(soon(30)).await.deliveries_expanded,
        0,
        "not before the outbox grace"
    );
    let (a, b) = tokio::join!(watchdog.run(soon(3 * 60)), watchdog.run(soon(3 * 60)));
    assert_eq!(
        a.deliveries_expanded + b.deliveries_expanded,
        2 * (MAX_ENDPOINTS_PER_TENANT as u32 + 1),
        "{a:?} {b:?}"
    );
    assert_eq!(listed(task_id).await, 2 * (MAX_ENDPOINTS_PER_TENANT + 1));
    // sent by the run that wrote them (its index pages read on) or the next
    let c = watchdog.run(soon(3 * 60)).await;
    assert_eq!(
        a.deliveries_sent + b.deliveries_sent + c.deliveries_sent,
        2 * (MAX_ENDPOINTS_PER_TENANT as u32 + 1),
        "{a:?} {b:?} {c:?}"
    );
    deliver_all(&env, &sender, Duration::from_secs(120)).await;
    assert_each_got(&endpoints2, &own2, &["task_progress", "task_started"]);
}
