//! The pipeline lifecycle against the emulator: ingest → processor →
//! recorder, history, recent events, task listing, the DLQ and cursors.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use http::StatusCode;
use serde_json::{json, Value};

use morag_shared::domain::TaskId;
use morag_shared::outbound::TargetPolicy;
use morag_tests::multipart::Form;
use morag_tests::{call, spawn_env, spawn_env_with, TestEnv};

use crate::{file_request, url_request};

const LOCAL: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_loopback: true,
};

use morag_tests::status_event as event;

async fn new_task(env: &TestEnv, key: &str) -> String {
    let res = call(
        &env.ingest,
        url_request(key, &json!({"source_type": "web", "url": "https://example.com/"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    res.body["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_uploaded_document_reaches_completed_with_its_result_and_full_history() {
    let env = spawn_env().await;
    let doc = "# Notes\n\nFirst paragraph about retrieval.\n\nSecond paragraph about chunking.\n\n".repeat(10);
    let form = Form::new()
        .text("source_type", "document")
        .file("file", "notes.md", "text/markdown", doc.as_bytes());
    let res = call(&env.ingest, file_request(&env.key_a, form)).await;
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();

    assert!(env.run_pipeline(&env.processor(TargetPolicy::default())).await >= 2);

    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "completed", "{:?}", status.body);
    assert_eq!(status.body["progress"], 1.0);
    let result = &status.body["result"];
    assert_eq!(result["words"], doc.split_whitespace().count());
    assert_eq!(result["characters"], doc.chars().count());
    assert!(result["chunks"].as_u64().unwrap() > 1);
    assert_eq!(result["sha256"].as_str().unwrap().len(), 64);
    assert!(status.body["started_at"].is_string() && status.body["completed_at"].is_string());

    let history = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/history")).await;
    assert_eq!(history.status, StatusCode::OK);
    let entries = history.body["history"].as_array().unwrap();
    let statuses: Vec<&str> = entries.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.first(), Some(&"completed"), "newest first");
    assert_eq!(statuses.last(), Some(&"started"));
    assert!(statuses[1..statuses.len() - 1].iter().all(|s| *s == "progress"));
    assert!(statuses.len() >= 4);
    assert_eq!(history.body["event_count"], entries.len());
    // the seed's fields, plus seq (the same number as the webhooks'
    // data.sequence), newest first and without gaps
    assert_eq!(
        morag_tests::sorted_keys(&entries[0]),
        ["message", "metadata", "progress", "seq", "status", "timestamp"]
    );
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).rev().collect::<Vec<_>>());
    let progress: Vec<f64> = entries.iter().rev().map(|e| e["progress"].as_f64().unwrap()).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
}

#[tokio::test]
async fn a_source_that_cannot_be_read_ends_failed_with_the_reason() {
    let env = spawn_env_with(|cfg| cfg.target_policy = LOCAL).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/doc.txt", axum::routing::get(|| async { StatusCode::NOT_FOUND }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let body = json!({"source_type": "text", "url": format!("http://{addr}/doc.txt")});
    let res = call(&env.ingest, url_request(&env.key_a, &body)).await;
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    env.run_pipeline(&env.processor(LOCAL)).await;

    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "failed");
    assert!(
        status.body["error"].as_str().unwrap().contains("HTTP 404"),
        "{:?}",
        status.body
    );
    let history = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/history")).await;
    let statuses: Vec<&str> = history.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "started"]);
}

#[tokio::test]
async fn malformed_and_unknown_task_messages_land_in_the_dlq_while_the_rest_succeed() {
    let env = spawn_env().await;
    let task_id = new_task(&env, &env.key_a).await;
    let now = morag_shared::time::now();
    env.send_status_events(&[
        event(&task_id, "e1", "started", None, now),
        "{this is not json".to_owned(),
        event(&TaskId::new().to_string(), "e2", "started", None, now),
        event(
            &task_id,
            "e3",
            "progress",
            Some(0.5),
            now + chrono::Duration::milliseconds(5),
        ),
        json!({"event_id": "e4", "task_id": task_id, "status": "progress", "progress": 7, "occurred_at": now})
            .to_string(),
    ])
    .await;
    let received = env.record_all().await;
    assert_eq!(received, 5);
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(
        (status.body["status"].as_str(), status.body["progress"].as_f64()),
        (Some("progress"), Some(0.5))
    );

    let mut parked = env.drain_dlq(&env.resources.status_events_dlq_url).await;
    parked.sort_by(|a, b| a.1.cmp(&b.1));
    let reasons: Vec<&str> = parked.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(reasons, ["invalid_json", "invalid_progress", "unknown_task"]);
    assert_eq!(parked[0].0, "{this is not json", "the original body is kept");
    assert_eq!(
        env.queued_jobs().await,
        1,
        "only the ingest job; the status queue is empty"
    );
}

#[tokio::test]
async fn history_keeps_the_newest_100_with_ttls_and_the_task_gets_one_when_it_ends() {
    let env = spawn_env().await;
    let task_id = new_task(&env, &env.key_a).await;
    let t0 = morag_shared::time::now() - chrono::Duration::minutes(10);
    let mut bodies = vec![event(&task_id, "s", "started", None, t0)];
    for i in 1..=104 {
        bodies.push(event(
            &task_id,
            &format!("p{i}"),
            "progress",
            Some(i as f64 / 200.0),
            t0 + chrono::Duration::seconds(i),
        ));
    }
    bodies.push(event(
        &task_id,
        "done",
        "completed",
        None,
        t0 + chrono::Duration::seconds(200),
    ));
    env.send_status_events(&bodies).await;
    env.record_all().await;

    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/api/v1/status/{task_id}/history?limit=40"),
            Some(c) => format!("/api/v1/status/{task_id}/history?limit=40&cursor={c}"),
        };
        let page = env.get(&env.key_a, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        assert_eq!(page.body["event_count"], 100);
        entries.extend(page.body["history"].as_array().unwrap().clone());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(entries.len(), 100, "newest 100 kept");
    // without a limit: everything kept, in one page
    let whole = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/history")).await;
    assert_eq!(whole.body["history"].as_array().unwrap(), &entries);
    assert!(
        whole.body.get("next_cursor").is_none(),
        "{:?}",
        whole.body["next_cursor"]
    );
    assert_eq!(entries[0]["status"], "completed");
    // 106 events applied: the oldest six (started, p1..p5) were trimmed
    assert_eq!(entries[99]["progress"], 6.0 / 200.0);

    let item = |sk: String| {
        let env = &env;
        let task_id = task_id.clone();
        async move {
            env.ddb
                .get_item()
                .table_name(&env.resources.names.table)
                .key("pk", AttributeValue::S(format!("TASK#{task_id}")))
                .key("sk", AttributeValue::S(sk))
                .send()
                .await
                .unwrap()
                .item
        }
    };
    let now = chrono::Utc::now().timestamp();
    let history_ttl: i64 = item("EVENT#0000000106".into()).await.unwrap()["expires_at"]
        .as_n()
        .unwrap()
        .parse()
        .unwrap();
    assert!((history_ttl - (now + 7 * 86_400)).abs() < 120, "history TTL 7 days");
    assert!(item("EVENT#0000000006".into()).await.is_none(), "trimmed");
    assert!(item("EVENT#0000000007".into()).await.is_some());
    let task = item("STATE".into()).await.unwrap();
    let task_ttl: i64 = task["expires_at"].as_n().unwrap().parse().unwrap();
    let completed = (t0 + chrono::Duration::seconds(200)).timestamp();
    assert_eq!(task_ttl, completed + 30 * 86_400, "task TTL 30 days after it ended");
}

#[tokio::test]
async fn recent_events_are_per_tenant_newest_first_and_paginate() {
    let env = spawn_env().await;
    let now = morag_shared::time::now();
    let mut a_tasks = Vec::new();
    for _ in 0..3 {
        a_tasks.push(new_task(&env, &env.key_a).await);
    }
    let b_task = new_task(&env, &env.key_b).await;
    let mut bodies = Vec::new();
    for (i, t) in a_tasks.iter().enumerate() {
        bodies.push(event(
            t,
            &format!("a{i}s"),
            "started",
            None,
            now - chrono::Duration::minutes(90 - i as i64),
        ));
        bodies.push(event(
            t,
            &format!("a{i}p"),
            "progress",
            Some(0.5),
            now - chrono::Duration::minutes(10 - i as i64),
        ));
    }
    bodies.push(event(
        &b_task,
        "bs",
        "started",
        None,
        now - chrono::Duration::minutes(5),
    ));
    env.send_status_events(&bodies).await;
    env.record_all().await;

    let all = env.get(&env.key_a, "/api/v1/status/events/recent?hours=24").await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    assert_eq!(all.body["count"], 6);
    assert_eq!(all.body["hours"], 24);
    let events = all.body["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .all(|e| a_tasks.contains(&e["task_id"].as_str().unwrap().to_owned())),
        "only the caller's tenant"
    );
    let times: Vec<&str> = events.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    // the window: 1 hour sees only the three progress events
    let recent = env.get(&env.key_a, "/api/v1/status/events/recent?hours=1").await;
    assert_eq!(recent.body["count"], 3);

    // pages of 2 walk all six, across hour buckets, without repeats
    let mut seen: Vec<Value> = Vec::new();
    let mut path = "/api/v1/status/events/recent?hours=24&limit=2".to_owned();
    let mut first_cursor = None;
    for _ in 0..10 {
        let page = env.get(&env.key_a, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        seen.extend(page.body["events"].as_array().unwrap().clone());
        match page.body["next_cursor"].as_str() {
            Some(c) => {
                first_cursor.get_or_insert(c.to_owned());
                path = format!("/api/v1/status/events/recent?hours=24&limit=2&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(seen, *events);

    // a cursor binds the window it was made for: another `hours` is refused
    let other_window = format!(
        "/api/v1/status/events/recent?hours=1&cursor={}",
        first_cursor.as_deref().unwrap()
    );
    let refused = env.get(&env.key_a, &other_window).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );

    // the other tenant sees only its own, and cannot use A's cursor
    let b = env.get(&env.key_b, "/api/v1/status/events/recent").await;
    assert_eq!(b.body["count"], 1);
    let stolen = env
        .get(
            &env.key_b,
            &format!("/api/v1/status/events/recent?cursor={}", first_cursor.unwrap()),
        )
        .await;
    assert_eq!(
        (stolen.status, stolen.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
}

#[tokio::test]
async fn bad_query_parameters_and_cursors_are_400() {
    let env = spawn_env().await;
    let task_id = new_task(&env, &env.key_a).await;
    let now = morag_shared::time::now();
    let bodies: Vec<String> = (0..5)
        .map(|i| {
            event(
                &task_id,
                &format!("e{i}"),
                "progress",
                Some(0.1 * i as f64),
                now + chrono::Duration::milliseconds(i),
            )
        })
        .collect();
    env.send_status_events(&bodies).await;
    env.record_all().await;
    let page = env
        .get(&env.key_a, &format!("/api/v1/status/{task_id}/history?limit=2"))
        .await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let other_task = new_task(&env, &env.key_a).await;
    let mut forged = cursor.clone();
    forged.replace_range(0..2, if cursor.starts_with("ey") { "fy" } else { "ey" });

    let cases = [
        ("/api/v1/status/events/recent?hours=0".to_owned(), "invalid_parameter"),
        ("/api/v1/status/events/recent?hours=169".to_owned(), "invalid_parameter"),
        ("/api/v1/status/events/recent?limit=0".to_owned(), "invalid_parameter"),
        ("/api/v1/status/events/recent?hours=abc".to_owned(), "invalid_parameter"),
        ("/api/v1/status/events/recent?since=1".to_owned(), "invalid_parameter"),
        (
            "/api/v1/status/events/recent?cursor=garbage".to_owned(),
            "invalid_cursor",
        ),
        (
            format!("/api/v1/status/events/recent?cursor={cursor}"),
            "invalid_cursor",
        ),
        (
            format!("/api/v1/status/{task_id}/history?limit=101"),
            "invalid_parameter",
        ),
        (
            format!("/api/v1/status/{task_id}/history?cursor={forged}"),
            "invalid_cursor",
        ),
        (
            format!("/api/v1/status/{other_task}/history?cursor={cursor}"),
            "invalid_cursor",
        ),
        (format!("/api/v1/tasks?cursor={cursor}"), "invalid_cursor"),
        ("/api/v1/tasks?status=done".to_owned(), "invalid_parameter"),
        ("/api/v1/tasks?limit=-1".to_owned(), "invalid_parameter"),
        ("/api/v1/status/not-a-task/history".to_owned(), "invalid_task_id"),
    ];
    for (path, code) in cases {
        let res = env.get(&env.key_a, &path).await;
        assert_eq!(
            (res.status, res.error_code()),
            (StatusCode::BAD_REQUEST, code),
            "{path}: {:?}",
            res.body
        );
    }
    // the cursor still works where it belongs
    let next = env
        .get(
            &env.key_a,
            &format!("/api/v1/status/{task_id}/history?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(next.body["history"].as_array().unwrap().len(), 2);
    // another tenant's history is a 404
    let foreign = env.get(&env.key_b, &format!("/api/v1/status/{task_id}/history")).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tasks_are_listed_newest_first_per_tenant_and_by_status() {
    let env = spawn_env().await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(new_task(&env, &env.key_a).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let b = new_task(&env, &env.key_b).await;
    let now = morag_shared::time::now();
    env.send_status_events(&[event(&a[0], "x", "completed", None, now)])
        .await;
    env.record_all().await;

    let all = env.get(&env.key_a, "/api/v1/tasks").await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let ids: Vec<&str> = all.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a[2].as_str(), a[1].as_str(), a[0].as_str()]);
    assert!(!ids.contains(&b.as_str()));

    let done = env.get(&env.key_a, "/api/v1/tasks?status=completed").await;
    assert_eq!(done.body["count"], 1);
    assert_eq!(done.body["tasks"][0]["task_id"], a[0].as_str());
    let pending = env.get(&env.key_a, "/api/v1/tasks?status=pending").await;
    assert_eq!(pending.body["count"], 2);

    let first = env.get(&env.key_a, "/api/v1/tasks?limit=2").await;
    assert_eq!(first.body["count"], 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = env
        .get(&env.key_a, &format!("/api/v1/tasks?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second.body["tasks"][0]["task_id"], a[0].as_str());
    // a cursor for all tasks is not a cursor for one status
    let mixed = env
        .get(&env.key_a, &format!("/api/v1/tasks?status=pending&cursor={cursor}"))
        .await;
    assert_eq!(mixed.error_code(), "invalid_cursor");
}
