//! Webhook delivery end to end: real receivers on 127.0.0.1, the emulator's
//! queues, the real recorder and sender, and a fast retry schedule.

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};

use morag_shared::domain::delivery::{AsymmetricKey, RetrySchedule, Schemes, SigningSecret};
use morag_shared::outbound::TargetPolicy;
use morag_shared::ports::SecretStore;
use morag_tests::receiver::{Reply, TestReceiver};
use morag_tests::{call, TestEnv};

use crate::url_request;

pub(crate) const LOCAL: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_loopback: true,
};
pub(crate) const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// An env deployed with a fast schedule of `gaps`, and a signing secret for
/// tenant acme.
pub(crate) async fn webhook_env(gaps: &str) -> (TestEnv, RetrySchedule) {
    let schedule: RetrySchedule = gaps.parse().unwrap();
    let env = morag_tests::spawn_env_configured(&schedule, |cfg| cfg.target_policy = LOCAL).await;
    env.store
        .rotate_secret(&"acme".parse().unwrap(), SECRET, None)
        .await
        .unwrap();
    (env, schedule)
}

pub(crate) fn sender(env: &TestEnv, schedule: &RetrySchedule, timeout: Duration) -> morag_webhook_sender::Sender {
    let lookup = morag_shared::outbound::static_lookup(HashMap::from([(
        "private.test".to_owned(),
        vec!["10.0.0.7".parse().unwrap()],
    )]));
    let mut cfg = env.sender_config(schedule, timeout, LOCAL);
    cfg.timeout = timeout;
    morag_webhook_sender::wiring::build_with_lookup(&env.sdk, &cfg, lookup).expect("sender")
}

pub(crate) async fn submit(env: &TestEnv, webhook_url: &str, events: Option<Value>) -> String {
    let mut body = json!({"source_type": "web", "url": "https://example.com/", "webhook_url": webhook_url});
    if let Some(e) = events {
        body["webhook_events"] = e;
    }
    let res = call(&env.ingest, url_request(&env.key_a, &body)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    res.body["task_id"].as_str().unwrap().to_owned()
}

/// A status event `ms` milliseconds after a fixed point a minute ago.
pub(crate) fn event(task_id: &str, id: &str, status: &str, progress: Option<f64>, ms: i64) -> String {
    let at = morag_shared::time::now() - chrono::Duration::seconds(60) + chrono::Duration::milliseconds(ms);
    morag_tests::status_event(task_id, id, status, progress, at)
}

/// Records every queued status event, then delivers until the webhook queue
/// is empty or `deadline` passes (waiting out visibility timeouts).
pub(crate) async fn deliver_all(env: &TestEnv, sender: &morag_webhook_sender::Sender, deadline: Duration) {
    let recorder = env.recorder();
    let started = std::time::Instant::now();
    loop {
        let e = morag_cli::esm::poll_once(
            &env.sqs,
            &env.resources.status_events_queue_url,
            10,
            Duration::ZERO,
            |b| recorder.handle(b),
        )
        .await
        .unwrap();
        let w = morag_cli::esm::poll_once(
            &env.sqs,
            &env.resources.webhook_queue_url,
            10,
            Duration::from_secs(1),
            |b| sender.handle(b),
        )
        .await
        .unwrap();
        if e.received == 0 && w.received == 0 && env.webhook_queue_depth().await == 0 {
            return;
        }
        if started.elapsed() > deadline {
            return;
        }
    }
}

/// Sends `events` and records and delivers everything (a fresh sender whose
/// requests time out after `timeout`), for at most `deadline`.
pub(crate) async fn deliver_events(
    env: &TestEnv,
    schedule: &RetrySchedule,
    timeout: Duration,
    events: &[String],
    deadline: Duration,
) {
    env.send_status_events(events).await;
    deliver_all(env, &sender(env, schedule, timeout), deadline).await;
}

/// The event types a receiver got, in arrival order.
pub(crate) fn kinds(receiver: &TestReceiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.json()["event_type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn deliveries(env: &TestEnv, task_id: &str) -> Value {
    let res = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/webhooks")).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

#[tokio::test]
async fn a_task_sends_signed_started_milestones_and_completed_once_each() {
    let (env, schedule) = webhook_env("1,1").await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), None).await;
    // a live task: each milestone is delivered before the next event comes
    // (a backlog would supersede the older progress, see below)
    let sender = sender(&env, &schedule, Duration::from_secs(5));
    for phase in [
        vec![
            event(&task_id, "s", "started", None, 1),
            event(&task_id, "p1", "progress", Some(0.3), 2),
            event(&task_id, "p1", "progress", Some(0.3), 2),
        ],
        vec![
            event(&task_id, "p2", "progress", Some(0.6), 3),
            event(&task_id, "p0", "progress", Some(0.2), 0),
        ],
        vec![event(&task_id, "p3", "progress", Some(0.9), 4)],
        vec![
            event(&task_id, "c", "completed", None, 5),
            event(&task_id, "late", "progress", Some(0.95), 6),
        ],
    ] {
        env.send_status_events(&phase).await;
        deliver_all(&env, &sender, Duration::from_secs(20)).await;
    }

    let got = receiver.received();
    let kinds: Vec<String> = got
        .iter()
        .map(|r| r.json()["event_type"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "task_completed",
            "task_progress",
            "task_progress",
            "task_progress",
            "task_started"
        ],
        "{kinds:?}"
    );
    let secret = SigningSecret::parse(SECRET).unwrap();
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("user-agent"), "MoRAG-Webhook/1.0");
        let id = r.header("webhook-id");
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert_eq!(
            r.header("webhook-signature"),
            secret.sign(id, ts, &r.body),
            "signature verifies"
        );
        let body = r.json();
        assert_eq!(body["data"]["task_id"], task_id.as_str());
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r.header("webhook-attempt"), "1");
        assert_eq!(
            body["data"]["status_url"],
            format!("{}/api/v1/status/{task_id}", env.stack.output("ApiUrl").unwrap())
        );
    }
    // every body as docs/webhook.schema.json says
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let problems = morag_tests::schema::webhook_body_problems(&bodies);
    assert!(problems.is_empty(), "{problems:#?}");
    // ordered by data.sequence: each webhook's is its event's history seq
    let mut by_sequence: Vec<(u64, String, Option<f64>)> = bodies
        .iter()
        .map(|b| {
            (
                b["data"]["sequence"].as_u64().unwrap(),
                b["event_type"].as_str().unwrap().to_owned(),
                b["data"]["milestone"].as_f64(),
            )
        })
        .collect();
    by_sequence.sort_by_key(|(seq, ..)| *seq);
    let order: Vec<(&str, Option<f64>)> = by_sequence.iter().map(|(_, k, m)| (k.as_str(), *m)).collect();
    assert_eq!(
        order,
        [
            ("task_started", None),
            ("task_progress", Some(0.25)),
            ("task_progress", Some(0.5)),
            ("task_progress", Some(0.75)),
            ("task_completed", None)
        ]
    );
    let history = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/history")).await;
    let seqs: Vec<u64> = history.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["seq"].as_u64().unwrap())
        .collect();
    assert!(
        by_sequence.iter().all(|(s, ..)| seqs.contains(s)),
        "sequences {by_sequence:?} are history seqs {seqs:?}"
    );
    let completed = got
        .iter()
        .find(|r| r.json()["event_type"] == "task_completed")
        .unwrap()
        .json();
    assert_eq!(completed["data"]["status"], "completed");
    assert_eq!(completed["data"]["result"], json!({"chunks": 2}));

    let list = deliveries(&env, &task_id).await;
    let items = list["deliveries"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items
        .iter()
        .all(|d| d["state"] == "succeeded" && d["attempts"].as_array().unwrap().len() == 1));
    assert_eq!(items[0]["attempts"][0]["status_code"], 200);
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "completed");
}

#[tokio::test]
async fn subscriptions_choose_the_events() {
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(204).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_completed"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(5),
        &[
            event(&task_id, "s", "started", None, 1),
            event(&task_id, "p", "progress", Some(0.8), 2),
            event(&task_id, "c", "completed", None, 3),
        ],
        Duration::from_secs(10),
    )
    .await;
    let kinds: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| r.json()["event_type"].clone())
        .collect();
    assert_eq!(kinds, [json!("task_completed")]);
}

#[tokio::test]
async fn fail_twice_then_succeed_keeps_the_webhook_id() {
    let (env, schedule) = webhook_env("1,1,1").await;
    let receiver = TestReceiver::start(vec![Reply::Status(500), Reply::Status(503)], Reply::Status(200)).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(5),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(30),
    )
    .await;

    let got = receiver.received();
    assert_eq!(got.len(), 3, "succeeds on attempt 3");
    let attempts: Vec<&str> = got.iter().map(|r| r.header("webhook-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(
        got[1].at.duration_since(got[0].at) >= Duration::from_millis(700),
        "backed off"
    );
    let list = deliveries(&env, &task_id).await;
    let d = &list["deliveries"][0];
    assert_eq!(d["state"], "succeeded");
    let codes: Vec<Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(503), json!(200)]);
}

#[tokio::test]
async fn a_dead_receiver_gets_exactly_the_budget_then_the_dlq_and_the_task_is_unharmed() {
    let (env, schedule) = webhook_env("1,1").await;
    let receiver = TestReceiver::always(500).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_completed"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(5),
        &[
            event(&task_id, "s", "started", None, 1),
            event(&task_id, "c", "completed", None, 2),
        ],
        Duration::from_secs(30),
    )
    .await;

    assert_eq!(receiver.received().len(), 3, "exactly the attempt budget");
    let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
    assert_eq!(d["state"], "dead");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3);
    let parked = env.drain_dlq(&env.resources.webhook_dlq_url).await;
    assert_eq!(parked.len(), 1, "the exhausted message is in the webhook DLQ");
    assert_eq!(
        parked[0].1, "attempts_exhausted",
        "parked by the sender, with the reason"
    );
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(
        status.body["status"], "completed",
        "a dead receiver never changes the task"
    );

    // redelivery: a fresh cycle with the same webhook-id
    let delivery_id = d["delivery_id"].as_str().unwrap();
    let res = call(
        &env.status,
        http::Request::post(format!("/api/v1/status/{task_id}/webhooks/{delivery_id}/redeliver"))
            .header("authorization", format!("Bearer {}", env.key_a))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let receiver_ok = receiver; // still answering 500: one more cycle of 3
    deliver_all(
        &env,
        &sender(&env, &schedule, Duration::from_secs(5)),
        Duration::from_secs(30),
    )
    .await;
    let got = receiver_ok.received();
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|r| r.header("webhook-id") == delivery_id));
    let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
    assert_eq!(
        (d["attempts"].as_array().unwrap().len(), d["attempts_total"].as_u64()),
        (6, Some(6))
    );
}

/// Every redelivery adds a cycle of attempts: the item keeps the latest
/// `MAX_KEPT_ATTEMPTS` and counts the rest, so it never nears DynamoDB's
/// 400 KB (each attempt here carries the longest excerpt kept).
#[tokio::test]
async fn a_delivery_keeps_its_latest_attempts_and_counts_them_all() {
    use morag_shared::domain::delivery::MAX_KEPT_ATTEMPTS;
    use morag_shared::domain::{Attempt, DeliveryState};
    use morag_shared::ports::DeliveryStore;
    let env = morag_tests::spawn_env().await;
    let d = env
        .insert_delivery(
            &uuid::Uuid::new_v4().to_string(),
            "acme",
            "msg_3123456789abcdef01234567",
            "https://hooks.example.com/h",
            DeliveryState::Pending,
        )
        .await;
    let total = MAX_KEPT_ATTEMPTS + 12;
    for i in 0..total {
        let attempt = Attempt {
            at: morag_shared::time::now(),
            status_code: Some(500),
            error: None,
            latency_ms: i as u64,
            excerpt: Some("é".repeat(256)),
            cycle: Some(0),
        };
        env.store
            .record_attempt(&d.task_id, &d.delivery_id, 0, &attempt, DeliveryState::Pending, None)
            .await
            .unwrap();
    }
    let after = env
        .store
        .get_delivery(&d.task_id, &d.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.attempts.len(), after.attempts_total as usize),
        (MAX_KEPT_ATTEMPTS, total)
    );
    let kept: Vec<u64> = after.attempts.iter().map(|a| a.latency_ms).collect();
    assert_eq!(
        kept,
        ((total - MAX_KEPT_ATTEMPTS) as u64..total as u64).collect::<Vec<_>>(),
        "the latest, in order"
    );
    // an attempt of an older cycle changes nothing
    let stale = after.attempts[0].clone();
    env.store
        .record_attempt(&d.task_id, &d.delivery_id, 7, &stale, DeliveryState::Dead, None)
        .await
        .unwrap();
    let again = env
        .store
        .get_delivery(&d.task_id, &d.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.attempts_total as usize, again.state),
        (total, DeliveryState::Pending)
    );
}

#[tokio::test]
async fn permanent_refusals_are_not_retried() {
    for code in [400u16, 410, 404, 301] {
        let (env, schedule) = webhook_env("1,1").await;
        let receiver = TestReceiver::always(code).await;
        let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
        deliver_events(
            &env,
            &schedule,
            Duration::from_secs(5),
            &[event(&task_id, "s", "started", None, 1)],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(receiver.received().len(), 1, "{code} is not retried");
        let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
        assert_eq!(d["state"], "failed", "{code}");
        assert!(env.drain_dlq(&env.resources.webhook_dlq_url).await.is_empty());
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (env, schedule) = webhook_env("1,1").await;
    let receiver = TestReceiver::start(
        vec![Reply::WithHeaders(429, vec![("retry-after", "3".to_owned())])],
        Reply::Status(200),
    )
    .await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(5),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(20),
    )
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(2900),
        "waited {gap:?}, asked 3 s (schedule says 1 s)"
    );
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    let (env, schedule) = webhook_env("1").await;
    let slow = TestReceiver::start(vec![Reply::Slow(Duration::from_secs(3), 200)], Reply::Status(200)).await;
    let task_id = submit(&env, &slow.url(), Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(1),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(20),
    )
    .await;
    let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["error"], "timeout", "{d}");
    assert_eq!(d["state"], "succeeded");

    // nothing listens on this port
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let task_id = submit(
        &env,
        &format!("http://127.0.0.1:{port}/hook"),
        Some(json!(["task_started"])),
    )
    .await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(1),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(20),
    )
    .await;
    let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
    let errors: Vec<Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].clone())
        .collect();
    assert_eq!(errors, [json!("connect"), json!("connect")]);
    assert_eq!(d["state"], "dead");
}

#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_at_send_time() {
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(200).await;
    let url = format!("http://private.test:{}/hook", receiver.addr.port());
    let task_id = submit(&env, &url, Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(2),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(10),
    )
    .await;
    let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
    assert_eq!(d["state"], "failed");
    assert_eq!(d["attempts"][0]["error"], "blocked_address");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_recorder_that_dies_between_its_writes_loses_no_webhook() {
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
    let body = event(&task_id, "s", "started", None, 1);
    // first delivery of the status event: the webhook queue is down after the transaction
    let mut broken = env.recorder();
    broken.webhooks = std::sync::Arc::new(morag_shared::adapters::sqs::SqsQueue::new(
        env.sqs.clone(),
        format!("{}-missing", env.resources.webhook_queue_url),
    ));
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("m1".into());
    record.body = Some(body.clone());
    batch.records = vec![record.clone()];
    let res = broken.handle(batch.clone()).await;
    assert_eq!(
        res.batch_item_failures.len(),
        1,
        "the record fails, so SQS will redeliver it"
    );
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "started", "the state was applied");
    // SQS redelivers the status event: the duplicate finishes the job
    let res = env.recorder().handle(batch).await;
    assert!(res.batch_item_failures.is_empty());
    deliver_all(
        &env,
        &sender(&env, &schedule, Duration::from_secs(2)),
        Duration::from_secs(10),
    )
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 1, "delivered, once");
    assert_eq!(got[0].json()["event_type"], "task_started");
}

async fn rotate(env: &TestEnv, key: &str, query: &str) -> morag_tests::TestResponse {
    call(
        &env.status,
        http::Request::post(format!("/api/v1/webhooks/secret/rotate{query}"))
            .header("authorization", format!("Bearer {key}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
}

pub(crate) fn secrets_of(res: &morag_tests::TestResponse) -> Vec<String> {
    res.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secret"].as_str().unwrap().to_owned())
        .collect()
}

/// Rotation over the API: the new secret signs first and the old one keeps
/// signing for the overlap (both are listed, the old with `signs_until`);
/// an overlap of 0 ends the old one at once; bad parameters are 400.
#[tokio::test]
async fn a_rotation_over_the_api_signs_with_both() {
    let (env, schedule) = webhook_env("1").await;
    let res = rotate(&env, &env.key_a, "?overlap_seconds=3600").await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.headers.get("cache-control").unwrap(), "no-store");
    let listed = secrets_of(&res);
    assert_eq!(listed.len(), 2, "{:?}", res.body);
    let new = listed[0].clone();
    assert_eq!(listed[1], SECRET, "the old one still signs");
    assert_eq!(res.body["secrets"][0]["current"], true);
    assert!(res.body["secrets"][1]["signs_until"].is_string());
    let read = env.get(&env.key_a, "/api/v1/webhooks/secret").await;
    assert_eq!(secrets_of(&read), listed);

    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(2),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(10),
    )
    .await;
    let got = receiver.received();
    let r = &got[0];
    let (id, ts) = (
        r.header("webhook-id"),
        r.header("webhook-timestamp").parse::<i64>().unwrap(),
    );
    let sigs: Vec<&str> = r.header("webhook-signature").split(' ').collect();
    assert_eq!(
        sigs,
        [
            SigningSecret::parse(&new).unwrap().sign(id, ts, &r.body),
            SigningSecret::parse(SECRET).unwrap().sign(id, ts, &r.body)
        ]
    );

    let res = rotate(&env, &env.key_a, "?overlap_seconds=0").await;
    assert_eq!(res.status, StatusCode::OK);
    let only = secrets_of(&res);
    assert_eq!(only.len(), 1);
    assert!(only[0] != new && only[0] != SECRET);
    for bad in ["?overlap_seconds=604801", "?overlap_seconds=-1", "?overlap=5"] {
        let res = rotate(&env, &env.key_a, bad).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", res.body);
        assert_eq!(res.body["error"]["code"], "invalid_parameter", "{bad}");
    }
    assert_eq!(
        secrets_of(&env.get(&env.key_a, "/api/v1/webhooks/secret").await),
        only,
        "nothing written"
    );
    // another tenant's secret is its own; no key, no secret
    let other = env.get(&env.key_b, "/api/v1/webhooks/secret").await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(secrets_of(&other).len(), 1);
    assert!(!only.contains(&secrets_of(&other)[0]));
    for (method, path) in [
        ("GET", "/api/v1/webhooks/secret"),
        ("POST", "/api/v1/webhooks/secret/rotate"),
    ] {
        let res = call(
            &env.status,
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

/// A tenant that never set a secret: its first webhook is signed with one
/// provisioned there and then, which `GET /api/v1/webhooks/secret` serves;
/// no step in between, no `no_signing_secret` failure.
#[tokio::test]
async fn a_new_tenant_receives_verified_webhooks_with_no_extra_step() {
    let (env, schedule) = webhook_env("1").await;
    let (key, _) = morag_cli::keys::create(env.store.as_ref(), &"newco".parse().unwrap(), "t")
        .await
        .unwrap();
    let receiver = TestReceiver::always(200).await;
    let body = json!({"source_type": "web", "url": "https://example.com/", "webhook_url": receiver.url()});
    let res = call(&env.ingest, url_request(&key, &body)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
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
    let secrets = secrets_of(&env.get(&key, "/api/v1/webhooks/secret").await);
    assert_eq!(secrets.len(), 1);
    let secret = SigningSecret::parse(&secrets[0]).unwrap();
    for r in &got {
        let ts = r.header("webhook-timestamp").parse::<i64>().unwrap();
        assert_eq!(
            r.header("webhook-signature"),
            secret.sign(r.header("webhook-id"), ts, &r.body)
        );
    }
}

/// `morag keys create` for a new tenant prints its signing secret once,
/// next to the key; the API serves the same one.
#[tokio::test]
async fn the_cli_gives_a_new_tenant_its_secret_with_its_first_key() {
    let env = morag_tests::spawn_env().await;
    let run = || {
        tokio::process::Command::new(morag_tests::debug_binary("morag"))
            .args(["keys", "create", "--tenant", "fresh", "--description", "t"])
            .args([
                "--table",
                &env.resources.names.table,
                "--endpoint",
                &morag_tests::endpoint(),
            ])
            .output()
    };
    let out = run().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout} {stderr}");
    let key = stdout.trim();
    let printed = stderr
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret printed: {stderr}"));
    assert_eq!(secrets_of(&env.get(key, "/api/v1/webhooks/secret").await), [printed]);
    // a second key: the tenant keeps its secret, printed no more
    let again = run().await.unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("whsec_"));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (env, schedule) = webhook_env("1").await;
    let elsewhere = TestReceiver::always(200).await;
    let receiver = TestReceiver::always_with(302, vec![("location", elsewhere.url())]).await;
    let task_id = submit(&env, &receiver.url(), Some(json!(["task_started"]))).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(2),
        &[event(&task_id, "s", "started", None, 1)],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(receiver.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "the redirect was not followed");
    let d = deliveries(&env, &task_id).await["deliveries"][0].clone();
    assert_eq!(d["state"], "failed");
    assert_eq!(d["attempts"][0]["status_code"], 302);
}

#[tokio::test]
async fn the_sqs_fixture_runs_through_the_sender() {
    use morag_shared::domain::DeliveryState;
    use morag_shared::ports::DeliveryStore;
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(200).await;
    let delivery = env
        .insert_delivery(
            "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b",
            "acme",
            "msg_0123456789abcdef01234567",
            &receiver.url(),
            DeliveryState::Pending,
        )
        .await;

    let batch: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(include_str!("../../../events/sqs-webhook-delivery.json")).unwrap();
    let res = sender(&env, &schedule, Duration::from_secs(2)).handle(batch).await;
    assert!(res.batch_item_failures.is_empty(), "{res:?}");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("webhook-id"), "msg_0123456789abcdef01234567");
    let d = env
        .store
        .get_delivery(&delivery.task_id, &delivery.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeliveryState::Succeeded);
    let parked = env.drain_dlq(&env.resources.webhook_dlq_url).await;
    assert_eq!(
        parked.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
        ["invalid_message"]
    );
}

/// The schema check refuses what the contract forbids (so passing it means
/// something): a progress webhook without its milestone, a field nobody
/// documented, a sequence of 0, a milestone on a completion.
#[test]
fn the_webhook_schema_refuses_what_the_contract_forbids() {
    let ok = json!({"event_type": "task_progress", "timestamp": "2026-11-30T12:00:00.000Z",
        "data": {"task_id": "3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "sequence": 3, "status": "progress",
                 "message": "m", "metadata": {}, "progress": 0.6, "milestone": 0.5}});
    assert!(morag_tests::schema::webhook_body_problems(std::slice::from_ref(&ok)).is_empty());
    let mut no_milestone = ok.clone();
    no_milestone["data"].as_object_mut().unwrap().remove("milestone");
    let mut extra = ok.clone();
    extra["data"]["secret"] = json!("x");
    let mut zero = ok.clone();
    zero["data"]["sequence"] = json!(0);
    let mut completed = ok.clone();
    completed["event_type"] = json!("task_completed");
    completed["data"]["status"] = json!("completed");
    completed["data"]["result"] = json!(null);
    // an operational event has its own shape: no task fields
    let disabled = json!({"event_type": "endpoint.disabled", "timestamp": "2026-11-30T12:00:00.000Z",
        "data": {"endpoint_id": "ep_0123456789abcdef01234567", "url": "https://hooks.example.com/h",
                 "description": "", "reason": "failing", "failing_since": "2026-11-25T12:00:00.000Z",
                 "disabled_at": "2026-11-30T12:00:00.000Z"}});
    assert!(morag_tests::schema::webhook_body_problems(std::slice::from_ref(&disabled)).is_empty());
    let mut with_task = disabled.clone();
    with_task["data"]["task_id"] = ok["data"]["task_id"].clone();
    let problems = morag_tests::schema::webhook_body_problems(&[no_milestone, extra, zero, completed, with_task]);
    for i in 0..5 {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("body {i} "))),
            "body {i}: {problems:#?}"
        );
    }
}

/// Signing secrets are sealed with the stack's KMS key: the item holds no
/// `whsec_` text, a sealed secret copied into another tenant's item does not
/// open (the tenant is in the encryption context), a store without the key
/// refuses rather than writing plaintext, and an item written before
/// sealing (plaintext) still reads.
#[tokio::test]
async fn signing_secrets_are_sealed_at_rest_and_bound_to_their_tenant() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let (env, _) = webhook_env("1").await;
    let table = &env.resources.names.table;
    let raw = |tenant: &'static str| {
        let ddb = env.ddb.clone();
        let table = table.clone();
        async move {
            ddb.get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("WHSECRET#{tenant}")))
                .key("sk", AttributeValue::S("SECRET".into()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    // the key pair too: a v1a key rotated in is sealed like the secret
    env.store
        .rotate(
            &"acme".parse().unwrap(),
            morag_shared::domain::Credential::SigningKey,
            &AsymmetricKey::generate(),
            None,
        )
        .await
        .unwrap();
    let item = raw("acme").await;
    assert!(!format!("{item:?}").contains("whsec_"), "plaintext at rest: {item:?}");
    assert!(!format!("{item:?}").contains("whsk_"), "plaintext at rest: {item:?}");
    assert!(item.contains_key("current_sealed") && item.contains_key("key_current_sealed"));
    let acme = env
        .store
        .tenant_secrets(&"acme".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acme.secret.current, SECRET);
    assert!(AsymmetricKey::parse(&acme.signing_key.unwrap().current).is_ok());

    // acme's sealed secret moved into globex's item does not open
    let mut moved = item.clone();
    moved.insert("pk".into(), AttributeValue::S("WHSECRET#globex".into()));
    moved.insert("tenant".into(), AttributeValue::S("globex".into()));
    env.ddb
        .put_item()
        .table_name(table)
        .set_item(Some(moved))
        .send()
        .await
        .unwrap();
    assert!(env.store.tenant_secrets(&"globex".parse().unwrap()).await.is_err());

    // no key: no plaintext written, and a sealed one cannot be read
    let bare = morag_shared::adapters::dynamodb::DynamoStore::new(env.ddb.clone(), table);
    assert!(bare
        .provision(&"initech".parse().unwrap(), SECRET, &AsymmetricKey::generate())
        .await
        .is_err());
    assert!(bare.tenant_secrets(&"acme".parse().unwrap()).await.is_err());

    // an item from before sealing still reads
    env.ddb
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S("WHSECRET#legacy".into()))
        .item("sk", AttributeValue::S("SECRET".into()))
        .item("tenant", AttributeValue::S("legacy".into()))
        .item("current", AttributeValue::S(SECRET.into()))
        .item("updated_at", AttributeValue::S("2026-11-01T00:00:00Z".into()))
        .send()
        .await
        .unwrap();
    let legacy = env
        .store
        .tenant_secrets(&"legacy".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((legacy.secret.current.as_str(), legacy.signing_key), (SECRET, None));
    // its first write (turning v1a on) seals it and adds a key
    let on = env
        .store
        .configure(
            &"legacy".parse().unwrap(),
            Some(Schemes { v1: true, v1a: true }),
            &AsymmetricKey::generate(),
        )
        .await
        .unwrap();
    assert_eq!(on.secret.current, SECRET);
    assert!(on.signing_key.is_some());
    let item = raw("legacy").await;
    assert!(
        !item.contains_key("current") && item.contains_key("current_sealed"),
        "{item:?}"
    );
    assert!(!format!("{item:?}").contains("whs"), "plaintext at rest: {item:?}");
}

/// A received webhook as the docs' receiver snippets take it: its signing
/// headers and `body` (base64, so a tampered one travels as is).
pub(crate) fn snippet_request(r: &morag_tests::receiver::Received, body: &[u8]) -> Value {
    use base64::Engine;
    json!({"headers": {
        "webhook-id": r.header("webhook-id"),
        "webhook-timestamp": r.header("webhook-timestamp"),
        "webhook-signature": r.header("webhook-signature"),
        "webhook-key-ids": r.header("webhook-key-ids"),
    }, "body": base64::engine::general_purpose::STANDARD.encode(body)})
}

/// `body` with one byte near its end flipped.
pub(crate) fn tampered(body: &[u8]) -> Vec<u8> {
    let mut t = body.to_vec();
    let at = t.len() - 2;
    t[at] ^= 1;
    t
}

/// The code block of `docs/WEBHOOKS.md` that starts with ```` ```{lang} ````
/// and contains `needle`, as printed.
pub(crate) fn doc_block(lang: &str, needle: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/WEBHOOKS.md")).unwrap();
    doc.split(&format!("```{lang}\n"))
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no {lang} block with {needle} in docs/WEBHOOKS.md"))
        .to_owned()
}

/// Runs `program` on `source` (saved as `receiver.{ext}`) with `input` on
/// stdin; its JSON answer.
pub(crate) fn run_snippet(program: &std::path::Path, ext: &str, source: &str, input: &Value) -> Value {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("morag-doc-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("receiver.{ext}"));
    std::fs::write(&file, source).unwrap();
    let mut child = std::process::Command::new(program)
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The receivers printed in docs/WEBHOOKS.md, run as printed (Python from
/// the project venv, Node.js) on webhooks a real sender signed: every one
/// verifies, a tampered body and a wrong secret do not, and ordering by
/// `data.sequence` drops a replay of an older webhook.
#[tokio::test]
async fn the_receivers_in_the_docs_verify_and_order_real_webhooks() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), None).await;
    let sender = sender(&env, &schedule, Duration::from_secs(2));
    // live: the progress is delivered before the task completes
    for phase in [
        vec![
            event(&task_id, "s", "started", None, 1),
            event(&task_id, "p", "progress", Some(0.6), 2),
        ],
        vec![event(&task_id, "c", "completed", None, 3)],
    ] {
        env.send_status_events(&phase).await;
        deliver_all(&env, &sender, Duration::from_secs(15)).await;
    }
    let mut got = receiver.received();
    assert_eq!(got.len(), 3);
    got.sort_by_key(|r| r.json()["data"]["sequence"].as_u64());
    let mut requests: Vec<Value> = got.iter().map(|r| snippet_request(r, &r.body)).collect();
    requests.push(snippet_request(&got[2], &tampered(&got[2].body)));
    // newest last, then the oldest again (a late retry)
    let mut order: Vec<String> = got.iter().map(|r| b64(&r.body)).collect();
    order.push(b64(&got[0].body));
    let input = |secret: &str| json!({"secret": secret, "requests": requests, "order": order});
    let expected = json!({"verified": [true, true, true, false], "accepted": [true, true, true, false]});

    let python = doc_block("python", "def verify")
        + r#"
import sys
_in = json.load(sys.stdin)
print(json.dumps({
    "verified": [verify(_in["secret"], r["headers"], base64.b64decode(r["body"])) for r in _in["requests"]],
    "accepted": [accept(base64.b64decode(b)) for b in _in["order"]],
}))
"#;
    let venv_python = morag_cli::stack::python();
    assert_eq!(
        run_snippet(&venv_python, "py", &python, &input(SECRET)),
        expected,
        "Python"
    );
    let wrong = SigningSecret::generate();
    let py_wrong = run_snippet(&venv_python, "py", &python, &input(&wrong));
    assert_eq!(py_wrong["verified"], json!([false, false, false, false]));

    let node = doc_block("js", "function verify")
        + r#"
let _raw = "";
process.stdin.on("data", (c) => (_raw += c));
process.stdin.on("end", () => {
  const _in = JSON.parse(_raw);
  console.log(JSON.stringify({
    verified: _in.requests.map((r) => verify(_in.secret, r.headers, Buffer.from(r.body, "base64"))),
    accepted: _in.order.map((b) => accept(Buffer.from(b, "base64"))),
  }));
});
"#;
    let node_bin = std::path::PathBuf::from("node");
    assert_eq!(run_snippet(&node_bin, "js", &node, &input(SECRET)), expected, "Node.js");
    let node_wrong = run_snippet(&node_bin, "js", &node, &input(&wrong));
    assert_eq!(node_wrong["verified"], json!([false, false, false, false]));
}

/// `v1a` signatures, the building block (`AsymmetricKey`): an independent
/// ed25519 implementation (Python's `cryptography`, OpenSSL underneath)
/// verifies what `AsymmetricKey` signs with nothing but the `whpk_` public
/// key, and refuses a tampered body or another key's signature.
#[test]
fn v1a_signatures_verify_with_an_independent_ed25519() {
    use morag_shared::domain::delivery::AsymmetricKey;
    let key = AsymmetricKey::parse(&AsymmetricKey::generate()).unwrap();
    let other = AsymmetricKey::parse(&AsymmetricKey::generate()).unwrap();
    let (id, ts, body) = (
        "msg_0123456789abcdef01234567",
        1_796_068_800_i64,
        br#"{"event_type":"task_started"}"#,
    );
    let cases = json!([
        {"public_key": key.public_key(), "signature": key.sign(id, ts, body), "body": "ok"},
        {"public_key": key.public_key(), "signature": key.sign(id, ts, body), "body": "tampered"},
        {"public_key": key.public_key(), "signature": other.sign(id, ts, body), "body": "ok"},
    ]);
    let script = r#"
import base64, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
_in = json.load(sys.stdin)
out = []
for c in _in["cases"]:
    pk = Ed25519PublicKey.from_public_bytes(base64.b64decode(c["public_key"].removeprefix("whpk_")))
    body = _in["body"].encode() + (b" " if c["body"] == "tampered" else b"")
    signed = f'{_in["id"]}.{_in["ts"]}.'.encode() + body
    try:
        pk.verify(base64.b64decode(c["signature"].split(",", 1)[1]), signed)
        out.append(True)
    except InvalidSignature:
        out.append(False)
print(json.dumps(out))
"#;
    let input = json!({"cases": cases, "id": id, "ts": ts, "body": std::str::from_utf8(body).unwrap()});
    let venv_python = morag_cli::stack::python();
    assert_eq!(
        run_snippet(&venv_python, "py", script, &input),
        json!([true, false, false])
    );
}

/// The deliveries of `task_id` by event type: `(state, attempts_total)`.
async fn states_by_type(env: &TestEnv, task_id: &str) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = deliveries(env, task_id).await["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["event_type"].as_str().unwrap().to_owned(),
                d["state"].as_str().unwrap().to_owned(),
                d["attempts_total"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A backlog (a receiver back after an outage, a sender that fell behind):
/// progress webhooks that a newer progress or the task's end overtook are
/// not sent at all (`superseded`, no attempt); `task_started` and
/// `task_completed` always are.
#[tokio::test]
async fn progress_overtaken_before_its_first_attempt_is_superseded_not_sent() {
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, &receiver.url(), None).await;
    deliver_events(
        &env,
        &schedule,
        Duration::from_secs(2),
        &[
            event(&task_id, "s", "started", None, 1),
            event(&task_id, "p1", "progress", Some(0.3), 2),
            event(&task_id, "p2", "progress", Some(0.6), 3),
            event(&task_id, "c", "completed", None, 4),
        ],
        Duration::from_secs(15),
    )
    .await;
    let kinds = kinds(&receiver);
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(sorted, ["task_completed", "task_started"], "{kinds:?}");
    assert_eq!(
        states_by_type(&env, &task_id).await,
        [
            ("task_completed".into(), "succeeded".into(), 1),
            ("task_progress".into(), "superseded".into(), 0),
            ("task_progress".into(), "superseded".into(), 0),
            ("task_started".into(), "succeeded".into(), 1),
        ]
    );
}

/// A progress webhook waiting for its retry when the task completes is not
/// sent again: its message comes back, finds the completion newer, and ends
/// `superseded` (its one failed attempt kept); no progress reaches the
/// receiver after the task's `task_completed`.
#[tokio::test]
async fn progress_overtaken_while_it_waits_for_a_retry_is_superseded() {
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::start(
        vec![
            morag_tests::receiver::Reply::Status(503),
            morag_tests::receiver::Reply::Status(503),
        ],
        morag_tests::receiver::Reply::Status(200),
    )
    .await;
    let task_id = submit(&env, &receiver.url(), None).await;
    env.send_status_events(&[
        event(&task_id, "s", "started", None, 1),
        event(&task_id, "p1", "progress", Some(0.3), 2),
    ])
    .await;
    // the first attempts (both refused with a 503), nothing more
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
    let sender = sender(&env, &schedule, Duration::from_secs(2));
    let first = morag_cli::esm::poll_once(
        &env.sqs,
        &env.resources.webhook_queue_url,
        10,
        Duration::from_secs(1),
        |b| sender.handle(b),
    )
    .await
    .unwrap();
    assert_eq!(first.received, 2);
    assert_eq!(receiver.received().len(), 2);

    env.send_status_events(&[event(&task_id, "c", "completed", None, 3)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(15)).await;
    let kinds = kinds(&receiver);
    assert_eq!(
        kinds.iter().filter(|k| *k == "task_progress").count(),
        1,
        "the refused first attempt only: {kinds:?}"
    );
    let completed_at = kinds
        .iter()
        .position(|k| k == "task_completed")
        .expect("completed sent");
    assert!(
        !kinds[completed_at..].contains(&"task_progress".to_owned()),
        "{kinds:?}"
    );
    assert_eq!(
        states_by_type(&env, &task_id).await,
        [
            ("task_completed".into(), "succeeded".into(), 1),
            ("task_progress".into(), "superseded".into(), 1),
            ("task_started".into(), "succeeded".into(), 2),
        ]
    );
}
