//! The timeline route against moto: status events and webhook attempts in
//! one list, `after` from a webhook's `data.sequence`, sealed cursors that
//! miss nothing (a gap in the attempt numbers holds them back), long-polls
//! that answer when something is written.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{json, Value};

use morag_shared::domain::{AttemptRecord, DeliveryId, TaskId, WebhookEvent};
use morag_tests::receiver::{Reply, TestReceiver};
use morag_tests::{call, TestEnv};

use crate::webhooks::{deliver_all, event, sender, submit, webhook_env};

async fn timeline(env: &TestEnv, task: &str, query: &str) -> Value {
    let res = env
        .get(&env.key_a, &format!("/api/v1/status/{task}/timeline?{query}"))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{query}: {:?}", res.body);
    res.body
}

fn entries(view: &Value) -> &Vec<Value> {
    view["entries"].as_array().expect("entries")
}

fn of_kind<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    entries(view).iter().filter(|e| e["kind"] == kind).collect()
}

/// Every entry from `query` on, page by page through the cursors, until a
/// page is empty.
async fn follow(env: &TestEnv, task: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut page = timeline(env, task, query).await;
    for _ in 0..100 {
        let got = entries(&page).clone();
        if got.is_empty() {
            assert_eq!(page["has_more"], false);
            return all;
        }
        all.extend(got);
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        page = timeline(env, task, &format!("cursor={cursor}&limit=1")).await;
    }
    panic!("the cursors never ran out");
}

#[tokio::test]
async fn the_timeline_orders_events_and_attempts_and_its_cursors_miss_none() {
    let (env, schedule) = webhook_env("1,1,1").await;
    // the started webhook fails twice, then everything succeeds
    let receiver = TestReceiver::start(vec![Reply::Status(500), Reply::Status(503)], Reply::Status(200)).await;
    let task = submit(&env, &receiver.url(), Some(json!(["task_started", "task_completed"]))).await;
    let sender = sender(&env, &schedule, Duration::from_secs(5));
    env.send_status_events(&[event(&task, "s", "started", None, 1)]).await;
    deliver_all(&env, &sender, Duration::from_secs(30)).await;
    env.send_status_events(&[
        event(&task, "p", "progress", Some(0.5), 2),
        event(&task, "c", "completed", None, 3),
    ])
    .await;
    deliver_all(&env, &sender, Duration::from_secs(30)).await;

    let all = timeline(&env, &task, "").await;
    assert_eq!(all["task_id"], task.as_str());
    assert_eq!(all["status"], "completed");
    assert_eq!(all["has_more"], false);
    // the status entries are the history, oldest first
    let statuses: Vec<(u64, &str)> = of_kind(&all, "status")
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(1, "started"), (2, "progress"), (3, "completed")]);
    // one delivery entry per attempt made, numbered 1, 2, 3, 4 in the order
    // they were made, each with its webhook's data.sequence
    let attempts = of_kind(&all, "delivery");
    let sent: HashMap<String, u64> = receiver
        .received()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                r.header("webhook-id").to_owned(),
                body["data"]["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts.len(), receiver.received().len(), "{attempts:?}");
    let numbers: Vec<u64> = attempts.iter().map(|a| a["attempt_seq"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    for a in &attempts {
        let id = a["delivery_id"].as_str().unwrap();
        assert_eq!(a["seq"].as_u64(), Some(sent[id]), "{a}");
    }
    let started: Vec<(u64, u64, &str)> = attempts
        .iter()
        .filter(|a| a["event_type"] == "task_started")
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status_code"].as_u64().unwrap(),
                a["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        started,
        [(1, 500, "pending"), (2, 503, "pending"), (3, 200, "succeeded")]
    );
    // the list: each event, then the attempts of its webhooks
    let order: Vec<(String, u64)> = entries(&all)
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["seq"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, u64)> = [
        ("status", 1),
        ("delivery", 1),
        ("delivery", 1),
        ("delivery", 1),
        ("status", 2),
        ("status", 3),
        ("delivery", 3),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), *s))
    .collect();
    assert_eq!(order, expected);

    // from the completed webhook's data.sequence: nothing of it or before
    let completed_seq = attempts.iter().find(|a| a["event_type"] == "task_completed").unwrap()["seq"]
        .as_u64()
        .unwrap();
    let after = timeline(&env, &task, &format!("after={}", completed_seq - 1)).await;
    assert_eq!(entries(&after).len(), 2, "the completed event and its attempt: {after}");
    assert!(entries(&after)
        .iter()
        .all(|e| e["seq"].as_u64().unwrap() >= completed_seq));
    assert!(entries(&timeline(&env, &task, &format!("after={completed_seq}")).await).is_empty());

    // one entry per page through the cursors: the same entries, once each
    let paged = follow(&env, &task, "limit=1").await;
    let key = |e: &Value| e.to_string();
    assert_eq!(paged.len(), entries(&all).len());
    assert_eq!(
        paged.iter().map(key).collect::<BTreeSet<_>>(),
        entries(&all).iter().map(key).collect::<BTreeSet<_>>()
    );
    // the last cursor holds still when nothing is new
    let end = timeline(&env, &task, "").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = timeline(&env, &task, &format!("cursor={end}")).await;
    assert!(entries(&again).is_empty());
    assert_eq!(again["next_cursor"], end.as_str());

    // bad parameters, and a cursor of another task
    let other = submit(&env, &receiver.url(), None).await;
    let other_cursor = timeline(&env, &other, "").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for (query, code) in [
        ("wait=21", "invalid_parameter"),
        ("limit=0", "invalid_parameter"),
        ("limit=101", "invalid_parameter"),
        ("after=-1", "invalid_parameter"),
        ("after=1&cursor=x", "invalid_parameter"),
        ("since=1", "invalid_parameter"),
        ("cursor=garbage", "invalid_cursor"),
        (&format!("cursor={other_cursor}") as &str, "invalid_cursor"),
    ] {
        let res = env
            .get(&env.key_a, &format!("/api/v1/status/{task}/timeline?{query}"))
            .await;
        assert_eq!(
            (res.status, res.error_code()),
            (StatusCode::BAD_REQUEST, code),
            "{query}: {:?}",
            res.body
        );
    }
}

fn attempt_record(delivery: &str) -> AttemptRecord {
    AttemptRecord::answered_200(delivery.parse().unwrap(), morag_shared::time::now())
}

/// A sender that took a number and has not written its entry yet holds
/// back the entries after it: a cursor never moves past the number, so the
/// entry is not missed when it comes.
#[tokio::test]
async fn a_missing_attempt_number_holds_the_cursor_until_its_entry_comes() {
    let (env, _) = webhook_env("1").await;
    let task = submit(&env, "https://hooks.example.com/own", None).await;
    let task_id: TaskId = task.parse().unwrap();
    let first = DeliveryId::derive(&task_id, WebhookEvent::TaskStarted, "first");
    let second = DeliveryId::derive(&task_id, WebhookEvent::TaskStarted, "second");
    let slow = env.store.take_attempt_number_only(&task_id).await.unwrap();
    assert_eq!(slow, 1);
    {
        use morag_shared::ports::DeliveryStore;
        let later = morag_shared::time::now() + chrono::Duration::days(1);
        let n = env
            .store
            .append_attempt_entry(&task_id, &attempt_record(second.as_str()), later)
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
    let held = timeline(&env, &task, "").await;
    assert!(of_kind(&held, "delivery").is_empty(), "2 waits for 1: {held}");
    // a full page held back at the gap is not "more ready now", and a
    // long-poll on it waits instead of answering at once
    let one = timeline(&env, &task, "limit=1").await;
    assert_eq!((entries(&one).len(), &one["has_more"]), (0, &json!(false)), "{one}");
    let (waited, took) = long_poll(&env, &task, "limit=1&wait=1").await.unwrap();
    assert!(
        entries(&waited).is_empty() && took >= Duration::from_secs(1),
        "{waited} after {took:?}"
    );
    let cursor = held["next_cursor"].as_str().unwrap().to_owned();
    env.store
        .put_attempt_entry_late(
            &task_id,
            slow,
            &attempt_record(first.as_str()),
            morag_shared::time::now() + chrono::Duration::days(1),
        )
        .await
        .unwrap();
    let both = timeline(&env, &task, &format!("cursor={cursor}")).await;
    let got: Vec<(u64, &str)> = of_kind(&both, "delivery")
        .iter()
        .map(|a| (a["attempt_seq"].as_u64().unwrap(), a["delivery_id"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(1, first.as_str()), (2, second.as_str())]);
}

fn long_poll(env: &TestEnv, task: &str, query: &str) -> tokio::task::JoinHandle<(Value, Duration)> {
    let router = env.status.clone();
    let request = Request::get(format!("/api/v1/status/{task}/timeline?{query}"))
        .header("authorization", format!("Bearer {}", env.key_a))
        .body(Body::empty())
        .unwrap();
    tokio::spawn(async move {
        let started = Instant::now();
        let res = call(&router, request).await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
        (res.body, started.elapsed())
    })
}

/// `wait` long-polls: the answer holds until an event or an attempt is
/// written after the cursor, then carries it; with nothing new it ends
/// empty at the end of the wait, its cursor where it was.
#[tokio::test]
async fn a_long_poll_answers_with_the_next_event_or_attempt() {
    let (env, schedule) = webhook_env("1").await;
    let receiver = TestReceiver::always(200).await;
    let task = submit(&env, &receiver.url(), Some(json!(["task_progress"]))).await;
    env.send_status_events(&[event(&task, "s", "started", None, 1)]).await;
    env.record_all().await;
    let start = timeline(&env, &task, "").await;
    assert_eq!(entries(&start).len(), 1);
    let cursor = start["next_cursor"].as_str().unwrap().to_owned();

    // nothing new: empty after the wait, the same cursor
    let (idle, waited) = long_poll(&env, &task, &format!("cursor={cursor}&wait=1"))
        .await
        .unwrap();
    assert!(entries(&idle).is_empty(), "{idle}");
    assert_eq!(idle["next_cursor"], cursor.as_str());
    assert!(
        waited >= Duration::from_secs(1),
        "answered before the wait ended: {waited:?}"
    );

    // an event recorded while it waits
    let poll = long_poll(&env, &task, &format!("cursor={cursor}&wait=20"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!poll.is_finished(), "nothing was written yet");
    env.send_status_events(&[event(&task, "p", "progress", Some(0.3), 2)])
        .await;
    env.record_all().await;
    let (view, _) = poll.await.unwrap();
    let got: Vec<(&str, u64)> = entries(&view)
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [("status", 2)], "{view}");
    assert_eq!(view["status"], "progress");

    // then the progress webhook's attempt
    let cursor = view["next_cursor"].as_str().unwrap().to_owned();
    let poll = long_poll(&env, &task, &format!("cursor={cursor}&wait=20"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!poll.is_finished(), "nothing was attempted yet");
    deliver_all(
        &env,
        &sender(&env, &schedule, Duration::from_secs(5)),
        Duration::from_secs(20),
    )
    .await;
    let (view, _) = poll.await.unwrap();
    let got: Vec<(&str, u64, &str)> = entries(&view)
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["seq"].as_u64().unwrap(),
                e["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, [("delivery", 2, "succeeded")], "{view}");
    assert_eq!(receiver.received().len(), 1);
}
