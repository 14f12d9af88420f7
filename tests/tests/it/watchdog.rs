//! The watchdog against the local stack: each stuck state, driven by the
//! watchdog's own entry point with the clock moved forward, and two runs at
//! once doing each thing once.

use std::time::Duration;

use chrono::Utc;
use http::StatusCode;
use serde_json::{json, Value};

use morag_shared::domain::delivery::RetrySchedule;
use morag_shared::domain::{Delivery, DeliveryState, TaskStatus, WebhookEvent};
use morag_shared::outbound::TargetPolicy;
use morag_shared::ports::{DeliveryStore, SecretStore, TaskStore};
use morag_tests::receiver::TestReceiver;
use morag_tests::{call, TestEnv};

use crate::url_request;

const LOCAL: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_loopback: true,
};
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn env() -> TestEnv {
    let mut env = morag_tests::spawn_env_configured(&"1".parse().unwrap(), |cfg| cfg.target_policy = LOCAL).await;
    env.store
        .rotate_secret(&"acme".parse().unwrap(), SECRET, None)
        .await
        .unwrap();
    env.baseline_items = env.table_items().await;
    env
}

async fn submit(env: &TestEnv, extra: Value) -> String {
    let mut body = json!({"source_type": "web", "url": "https://example.com/"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let res = call(&env.ingest, url_request(&env.key_a, &body)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
    res.body["task_id"].as_str().unwrap().to_owned()
}

async fn status(env: &TestEnv, task_id: &str) -> Value {
    let res = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

async fn history_statuses(env: &TestEnv, task_id: &str) -> Vec<String> {
    let res = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/history")).await;
    res.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn deliveries_of(env: &TestEnv, task_id: &str) -> Vec<Delivery> {
    env.store.list_deliveries(&task_id.parse().unwrap()).await.unwrap()
}

/// Sends every queued webhook to its receiver (a fast schedule).
async fn send_webhooks(env: &TestEnv) {
    let schedule: RetrySchedule = "1".parse().unwrap();
    let cfg = env.sender_config(&schedule, Duration::from_secs(5), LOCAL);
    let sender = morag_webhook_sender::wiring::build(&env.sdk, &cfg).unwrap();
    loop {
        let p = env.poll(&env.resources.webhook_queue_url, |b| sender.handle(b)).await;
        if p.received == 0 {
            return;
        }
    }
}

fn later(seconds: i64) -> chrono::DateTime<Utc> {
    morag_shared::time::now() + chrono::Duration::seconds(seconds)
}

/// A task whose request died between its write and its enqueue: its job is
/// sent once (two runs at once), with the deterministic `job_id`, after the
/// grace period and not before; a task whose job was confirmed is never sent
/// again.
#[tokio::test]
async fn a_lost_job_is_sent_again_once() {
    let env = env().await;
    let confirmed = submit(&env, json!({})).await;
    assert_eq!(env.receive_jobs().await.len(), 1);
    let lost = morag_tests::sample_task(&morag_shared::domain::TaskId::new().to_string(), "acme");
    env.store.create_task(&lost, None).await.unwrap();

    let watchdog = env.watchdog();
    let early = watchdog.run(later(60)).await;
    assert_eq!(early.jobs_requeued, 0);
    assert!(env.receive_jobs().await.is_empty());

    let (a, b) = tokio::join!(watchdog.run(later(6 * 60)), watchdog.run(later(6 * 60)));
    assert_eq!(a.jobs_requeued + b.jobs_requeued, 1, "{a:?} {b:?}");
    assert_eq!(a.errors + b.errors, 0);
    let jobs = env.receive_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["task_id"], lost.task_id.to_string());
    assert_eq!(jobs[0]["job_id"], format!("job_{}", lost.task_id));

    // confirmed now: the next runs leave both tasks to their deadline
    let again = watchdog.run(later(10 * 60)).await;
    assert_eq!(again.jobs_requeued, 0, "{again:?}");
    assert!(env.receive_jobs().await.is_empty());
    assert_eq!(status(&env, &confirmed).await["status"], "pending");
}

/// A worker that goes silent: its task becomes `stalled` with one
/// `task_stalled` webhook (two runs at once), and its next event moves it
/// back to `progress`.
#[tokio::test]
async fn a_silent_workers_task_stalls_once_and_recovers() {
    // the stall is stamped 90 s ahead (the runs' clock); recent events are
    // read by hour bucket up to the current one, so start clear of an hour's
    // end (this test failed once at 13:59)
    let to_next_hour = 3600 - Utc::now().timestamp().rem_euclid(3600);
    if to_next_hour < 150 {
        tokio::time::sleep(Duration::from_secs(to_next_hour as u64 + 1)).await;
    }
    let env = env().await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, json!({"webhook_url": receiver.url(), "heartbeat_timeout_s": 60})).await;
    let t0 = morag_shared::time::now();
    env.send_status_events(&[morag_tests::status_event(&task_id, "s1", "started", None, t0)])
        .await;
    env.record_all().await;

    let watchdog = env.watchdog();
    assert_eq!(watchdog.run(later(30)).await.tasks_stalled, 0);
    let (a, b) = tokio::join!(watchdog.run(later(90)), watchdog.run(later(90)));
    assert_eq!(a.tasks_stalled + b.tasks_stalled, 1, "{a:?} {b:?}");
    let s = status(&env, &task_id).await;
    assert_eq!(s["status"], "stalled", "{s}");
    assert!(s["message"].as_str().unwrap().contains("heartbeat"), "{s}");
    assert_eq!(history_statuses(&env, &task_id).await, ["stalled", "started"]);
    let recent = env.get(&env.key_a, "/api/v1/status/events/recent?hours=1").await;
    assert!(recent.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["status"] == "stalled"));

    send_webhooks(&env).await;
    let kinds: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "task_stalled").count(), 1, "{kinds:?}");
    let stalled = receiver
        .received()
        .into_iter()
        .find(|r| r.json()["event_type"] == "task_stalled")
        .unwrap();
    assert_eq!(stalled.json()["data"]["status"], "stalled");
    let problems = morag_tests::schema::webhook_body_problems(&[stalled.json()]);
    assert!(problems.is_empty(), "{problems:#?}");

    // the worker speaks again: progress, and a stalled task is not stalled twice
    env.send_status_events(&[morag_tests::status_event(
        &task_id,
        "p1",
        "progress",
        Some(0.3),
        morag_shared::time::now(),
    )])
    .await;
    env.record_all().await;
    assert_eq!(status(&env, &task_id).await["status"], "progress");
    assert_eq!(watchdog.run(later(30)).await.tasks_stalled, 0);
}

/// A task not finished by its deadline fails as `timed_out` with one
/// `task_failed` webhook; a finished task is never touched.
#[tokio::test]
async fn a_task_past_its_deadline_fails_as_timed_out() {
    let env = env().await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, json!({"webhook_url": receiver.url(), "timeout_s": 120})).await;
    let done = submit(&env, json!({"timeout_s": 120})).await;
    env.send_status_events(&[morag_tests::status_event(
        &done,
        "c",
        "completed",
        None,
        morag_shared::time::now(),
    )])
    .await;
    env.record_all().await;

    let watchdog = env.watchdog();
    assert_eq!(watchdog.run(later(100)).await.tasks_timed_out, 0);
    // the due index rounds a check's time up to its granularity
    let past = 120 + morag_shared::domain::watch::DUE_GRANULARITY_S + 1;
    assert_eq!(watchdog.run(later(119)).await.tasks_timed_out, 0);
    let (a, b) = tokio::join!(watchdog.run(later(past)), watchdog.run(later(past)));
    assert_eq!(a.tasks_timed_out + b.tasks_timed_out, 1, "{a:?} {b:?}");
    let s = status(&env, &task_id).await;
    assert_eq!(
        (s["status"].as_str(), s["error"].as_str()),
        (Some("failed"), Some("timed_out")),
        "{s}"
    );
    assert_eq!(status(&env, &done).await["status"], "completed");

    send_webhooks(&env).await;
    let failed: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|j| j["event_type"] == "task_failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["error"], "timed_out");
    let problems = morag_tests::schema::webhook_body_problems(&failed);
    assert!(problems.is_empty(), "{problems:#?}");
    // ended tasks and finished deliveries leave the index: nothing to read
    let quiet = watchdog.run(later(30 * 86_400)).await;
    assert_eq!(quiet.entries_read, 0, "{quiet:?}");
}

/// A job that reached the processing DLQ fails its task as
/// `processing_failed` now; the message stays for `morag dlq redrive`.
#[tokio::test]
async fn a_dead_lettered_job_fails_its_task() {
    let env = env().await;
    let task_id = submit(&env, json!({})).await;
    let job = env.receive_jobs().await.pop().unwrap();
    env.sqs
        .send_message()
        .queue_url(&env.resources.processing_dlq_url)
        .message_body(job.to_string())
        .send()
        .await
        .unwrap();
    env.sqs
        .send_message()
        .queue_url(&env.resources.processing_dlq_url)
        .message_body("not a job")
        .send()
        .await
        .unwrap();

    let report = env.watchdog().run(morag_shared::time::now()).await;
    assert_eq!(report.tasks_dead_lettered, 1, "{report:?}");
    assert_eq!(report.dead_jobs_without_task, 1, "{report:?}");
    let s = status(&env, &task_id).await;
    assert_eq!(
        (s["status"].as_str(), s["error"].as_str()),
        (Some("failed"), Some("processing_failed")),
        "{s}"
    );
    assert!(s["message"].as_str().unwrap().contains("dead-letter"), "{s}");
    // a second run changes nothing, and both messages are still there
    let again = env.watchdog().run(morag_shared::time::now()).await;
    assert_eq!(again.tasks_dead_lettered, 0);
    let parked = env.drain_dlq(&env.resources.processing_dlq_url).await;
    assert_eq!(parked.len(), 2, "{parked:?}");
}

/// A delivery written to the outbox whose enqueue never happened is sent
/// with its original `webhook-id` (two runs at once: one message); a
/// delivery whose message is gone without a final state is sent again in a
/// new cycle.
#[tokio::test]
async fn unsent_and_lost_deliveries_are_sent_with_their_webhook_id() {
    let env = env().await;
    let receiver = TestReceiver::always(200).await;
    let task_id = submit(&env, json!({"webhook_url": receiver.url()})).await;
    let task = env.store.get_task(&task_id.parse().unwrap()).await.unwrap().unwrap();
    // the recorder's write, then a crash before its enqueue
    let mut after = task.clone();
    after.event_seq = 1;
    after.status = TaskStatus::Started;
    // a worker with a day's heartbeat: only the deliveries are due here
    after.heartbeat_timeout_s = 86_400;
    let id = morag_shared::domain::DeliveryId::derive(&task.task_id, WebhookEvent::TaskStarted, "once");
    let delivery = Delivery {
        payload: json!({"event_type": "task_started", "data": {"task_id": task_id}}).to_string(),
        ..morag_tests::sample_delivery(&task, id.as_str(), &receiver.url())
    };
    env.write_event_with_delivery(&task, &after, &delivery).await;

    let watchdog = env.watchdog();
    assert_eq!(watchdog.run(later(30)).await.deliveries_sent, 0);
    let (a, b) = tokio::join!(watchdog.run(later(3 * 60)), watchdog.run(later(3 * 60)));
    assert_eq!(a.deliveries_sent + b.deliveries_sent, 1, "{a:?} {b:?}");
    // the run that read the entry before the other's claim does not take
    // the claimed delivery for a lost one
    assert_eq!(a.deliveries_restarted + b.deliveries_restarted, 0, "{a:?} {b:?}");
    // deterministically: the claimed delivery is not lost at the time the
    // runs read the index (only after the attempt grace)
    let (t, d) = (&task.task_id, &delivery.delivery_id);
    assert!(env.store.restart_lost(t, d, later(3 * 60)).await.unwrap().is_none());
    assert_eq!(env.webhook_queue_depth().await, 1);
    send_webhooks(&env).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("webhook-id"), delivery.delivery_id.as_str());
    assert_eq!(deliveries_of(&env, &task_id).await[0].state, DeliveryState::Succeeded);

    // a finished delivery is off the index: nothing more to send
    let none = watchdog.run(later(3 * 3600)).await;
    assert_eq!(none.deliveries_sent + none.deliveries_restarted, 0, "{none:?}");

    // a redelivery whose message is lost (enqueued, no attempt ever): a
    // new cycle after the attempt grace, same webhook-id
    let restarted = env
        .store
        .restart_delivery(&task.task_id, &delivery.delivery_id)
        .await
        .unwrap()
        .unwrap();
    env.store
        .mark_enqueued(&task.task_id, &delivery.delivery_id, restarted.cycle)
        .await
        .unwrap();
    assert_eq!(watchdog.run(later(30 * 60)).await.deliveries_restarted, 0);
    let lost = watchdog.run(later(2 * 3600)).await;
    assert_eq!(lost.deliveries_restarted, 1, "{lost:?}");
    send_webhooks(&env).await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("webhook-id"), delivery.delivery_id.as_str());
    let d = &deliveries_of(&env, &task_id).await[0];
    assert_eq!((d.cycle, d.state), (restarted.cycle + 1, DeliveryState::Succeeded));

    // a redeliver call whose enqueue failed (restarted, never sent): the
    // outbox grace later, sent
    env.store
        .restart_delivery(&task.task_id, &delivery.delivery_id)
        .await
        .unwrap()
        .unwrap();
    let swept = watchdog.run(later(3 * 60)).await;
    assert_eq!(swept.deliveries_sent, 1, "{swept:?}");
    send_webhooks(&env).await;
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(deliveries_of(&env, &task_id).await[0].state, DeliveryState::Succeeded);
}

/// Ingest takes the timeouts, within their bounds.
#[tokio::test]
async fn timeouts_are_chosen_at_ingest_within_bounds() {
    let env = env().await;
    for (extra, message) in [
        (json!({"heartbeat_timeout_s": 59}), "heartbeat_timeout_s"),
        (json!({"heartbeat_timeout_s": 86_401}), "heartbeat_timeout_s"),
        (json!({"timeout_s": 0}), "timeout_s"),
        (json!({"timeout_s": "60"}), "timeout_s"),
        (json!({"timeout_s": 604_801}), "timeout_s"),
    ] {
        let mut body = json!({"source_type": "web", "url": "https://example.com/"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let res = call(&env.ingest, url_request(&env.key_a, &body)).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}");
        assert_eq!(res.error_code(), "invalid_timeout");
        let said = res.body["error"]["message"].as_str().unwrap();
        assert!(said.contains(message), "{said}");
    }
    env.assert_nothing_written("refused timeouts").await;
    let task_id = submit(&env, json!({"heartbeat_timeout_s": 60, "timeout_s": 3600})).await;
    let task = env.store.get_task(&task_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(task.heartbeat_timeout_s, 60);
    assert_eq!((task.deadline_at - task.created_at).num_seconds(), 3600);
    assert!(task.job_enqueued);
}

/// Over a table of 50,000 finished tasks (written the way the adapter
/// writes ended tasks: no due-index attributes) and a few live ones, a run
/// reads only the due entries: the items DynamoDB evaluated for its queries
/// are the due ones, not the table.
#[tokio::test]
async fn a_run_reads_only_what_is_due_in_a_table_of_50_000_finished_tasks() {
    let env = env().await;
    morag_tests::fill_finished_tasks(&env.ddb, &env.resources.names.table, 50_000).await;
    // three live tasks whose job was never confirmed, one that is not due
    // (the due work is a conditional update and a send: moto's
    // transactions copy the whole table, a cost real DynamoDB does not have)
    for _ in 0..3 {
        let lost = morag_tests::sample_task(&morag_shared::domain::TaskId::new().to_string(), "acme");
        env.store.create_task(&lost, None).await.unwrap();
    }
    submit(&env, json!({})).await;
    assert!(env.table_items().await >= 50_004);

    let patient = env.patient_sdk();
    let store = morag_shared::adapters::dynamodb::DynamoStore::new(
        morag_shared::adapters::aws::dynamodb(&patient),
        &env.resources.names.table,
    );
    let before = store.items_scanned();
    let mut watchdog = env.watchdog_over(&patient);
    watchdog.index = std::sync::Arc::new(store.clone());
    // one entry per query: the run pages through the index
    watchdog.settings.page_size = 1;
    let report = watchdog.run(later(6 * 60)).await;
    let read = store.items_scanned() - before;
    println!("watchdog over 50,004 tasks: {read} items evaluated, report {report:?}");
    assert_eq!((report.jobs_requeued, report.errors), (3, 0), "{report:?}");
    assert_eq!(report.entries_read, 3);
    assert_eq!(read, 3, "the run evaluated {read} items for 3 due");
}

/// At most `max_dlq_messages` DLQ messages per run, exactly; the rest wait
/// for the next run, and every message stays in the queue.
#[tokio::test]
async fn a_run_reads_at_most_its_share_of_the_dlq() {
    let env = env().await;
    let bodies: Vec<String> = (0..5).map(|i| format!("not a job {i}")).collect();
    env.send_messages(&env.resources.processing_dlq_url, &bodies).await;
    let mut watchdog = env.watchdog();
    watchdog.settings.max_dlq_messages = 3;
    let report = watchdog.run(morag_shared::time::now()).await;
    assert_eq!(
        (report.dead_jobs_read, report.dead_jobs_without_task),
        (3, 3),
        "{report:?}"
    );
    assert_eq!(env.drain_dlq(&env.resources.processing_dlq_url).await.len(), 5);
}

/// A sender killed on every receive of a delivery's message spends the
/// queue's receive ceiling without an attempt: SQS moves the message to the
/// DLQ while the delivery still says `pending` (found by `make soak`). The
/// watchdog ends it `dead`, the message stays for redrive; a parked message
/// of an older cycle changes nothing.
#[tokio::test]
async fn a_delivery_whose_message_was_dead_lettered_ends_dead() {
    let env = env().await;
    let ids = |task: &str| {
        let task_id = task.parse().unwrap();
        morag_shared::domain::DeliveryId::derive(&task_id, WebhookEvent::TaskStarted, "once")
    };
    let (lost, older) = (
        "7c1e0f4a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
        "8d2f1a5b-2c3d-4e4f-9a0b-1c2d3e4f5a6b",
    );
    let url = "https://hooks.example.com/h";
    let d = env
        .insert_delivery(lost, "acme", ids(lost).as_str(), url, DeliveryState::Pending)
        .await;
    let e = env
        .insert_delivery(older, "acme", ids(older).as_str(), url, DeliveryState::Pending)
        .await;
    let queue = &env.resources.webhook_queue_url;
    env.sqs
        .send_message()
        .queue_url(queue)
        .message_body(serde_json::to_string(&d.message()).unwrap())
        .send()
        .await
        .unwrap();
    // every receive the queue allows, each lost with its sender
    for _ in 0..morag_shared::domain::delivery::WEBHOOK_MAX_RECEIVES {
        let got = env.sqs.receive_message().queue_url(queue).send().await.unwrap();
        let m = &got.messages.unwrap_or_default()[0];
        env.sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    let next = env.sqs.receive_message().queue_url(queue).send().await.unwrap();
    assert!(next.messages.unwrap_or_default().is_empty(), "SQS moved it to the DLQ");
    let mut stale = e.message();
    stale.cycle += 1;
    env.sqs
        .send_message()
        .queue_url(&env.resources.webhook_dlq_url)
        .message_body(serde_json::to_string(&stale).unwrap())
        .send()
        .await
        .unwrap();

    let report = env.watchdog().run(Utc::now()).await;
    assert_eq!(report.deliveries_dead_lettered, 1, "{report:?}");
    let get = |id: &morag_shared::domain::Delivery| {
        let store = env.store.clone();
        let (t, i) = (id.task_id, id.delivery_id.clone());
        async move { store.get_delivery(&t, &i).await.unwrap().unwrap() }
    };
    let after = get(&d).await;
    assert_eq!((after.state, after.attempts.len()), (DeliveryState::Dead, 0));
    assert_eq!(get(&e).await.state, DeliveryState::Pending);
    // nothing consumed: both messages wait for `morag dlq redrive`
    assert_eq!(env.drain_dlq(&env.resources.webhook_dlq_url).await.len(), 2);
    // a second run finds nothing more to do
    assert_eq!(env.watchdog().run(Utc::now()).await.deliveries_dead_lettered, 0);
}

/// A run walks the whole webhook DLQ, not the first page SQS hands out:
/// 150 parked messages (deliveries long gone) ahead of the one whose
/// delivery still says `pending`, found and ended `dead` in one run, and
/// every message visible again right after (the 1,000-task soak found
/// pending deliveries a 100-message cap never reached).
#[tokio::test]
async fn a_run_walks_the_whole_webhook_dlq_and_releases_it() {
    let env = env().await;
    let mut bodies: Vec<String> = (0..150)
        .map(|_| {
            let task_id = morag_shared::domain::TaskId::new();
            let message = morag_shared::domain::DeliveryMessage {
                delivery_id: morag_shared::domain::DeliveryId::derive(&task_id, WebhookEvent::TaskCompleted, "once"),
                task_id,
                cycle: 0,
                slot: None,
            };
            serde_json::to_string(&message).unwrap()
        })
        .collect();
    let task = "9e3a2b6c-3d4e-4f5a-8b1c-2d3e4f5a6b7c";
    let id = morag_shared::domain::DeliveryId::derive(&task.parse().unwrap(), WebhookEvent::TaskStarted, "once");
    let d = env
        .insert_delivery(
            task,
            "acme",
            id.as_str(),
            "https://hooks.example.com/h",
            DeliveryState::Pending,
        )
        .await;
    bodies.push(serde_json::to_string(&d.message()).unwrap());
    env.send_messages(&env.resources.webhook_dlq_url, &bodies).await;

    let report = env.watchdog().run(Utc::now()).await;
    assert_eq!(
        (
            report.dead_deliveries_read,
            report.deliveries_dead_lettered,
            report.errors
        ),
        (151, 1, 0),
        "{report:?}"
    );
    let after = env
        .store
        .get_delivery(&d.task_id, &d.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.state, DeliveryState::Dead);
    // released, not left hidden for the peek's minute
    assert_eq!(env.drain_dlq(&env.resources.webhook_dlq_url).await.len(), 151);
}
