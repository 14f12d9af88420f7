//! `morag watch` (the real binary) against the status API served on
//! 127.0.0.1: it shows a task's events and webhook outcomes as plain lines
//! (not a terminal) and exits by how the task ended: 0 completed, 1 failed,
//! 2 stalled or timed out, 3 when it cannot watch.

use std::process::Output;
use std::time::Duration;

use morag_tests::receiver::TestReceiver;
use morag_tests::TestEnv;

use crate::webhooks::{deliver_all, event, sender, submit, webhook_env};

/// Serves the env's status routes on a free port; answers the base URL.
async fn serve_status(env: &TestEnv) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = env.status.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn watch(api: &str, key: &str, task_id: &str, timeout_s: u64) -> tokio::process::Child {
    tokio::process::Command::new(morag_tests::debug_binary("morag"))
        .args(["watch", task_id, "--api", api, "--key", key, "--wait-s", "20"])
        .args(["--timeout-s", &timeout_s.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("morag watch")
}

async fn ended(child: tokio::process::Child) -> (i32, String, String) {
    let Output { status, stdout, stderr } = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("morag watch ends")
        .unwrap();
    (
        status.code().expect("an exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[tokio::test]
async fn morag_watch_shows_events_and_webhooks_and_exits_by_how_the_task_ended() {
    let (env, schedule) = webhook_env("1").await;
    let api = serve_status(&env).await;
    let receiver = TestReceiver::always(200).await;
    let sender = sender(&env, &schedule, Duration::from_secs(5));

    // completed: 0, with each event and the started webhook's outcome
    let task_id = submit(&env, &receiver.url(), None).await;
    let child = watch(&api, &env.key_a, &task_id, 60);
    env.send_status_events(&[event(&task_id, "s", "started", None, 1)])
        .await;
    deliver_all(&env, &sender, Duration::from_secs(10)).await;
    env.send_status_events(&[
        event(&task_id, "p", "progress", Some(0.3), 2),
        event(&task_id, "c", "completed", None, 3),
    ])
    .await;
    env.record_all().await;
    let (code, out, err) = ended(child).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{out}"))
    };
    assert!(at("#1 started") < at("#2 progress  30%"), "{out}");
    assert!(at("#2 progress  30%") < at("#3 completed 100%"), "{out}");
    assert!(
        at("webhook task_started to webhook_url: succeeded (attempt 1, HTTP 200)") < at("#3 completed"),
        "{out}"
    );
    assert_eq!(lines.last().unwrap(), &format!("{task_id} completed"));
    assert_eq!(
        lines.iter().filter(|l| l.contains("#1 started")).count(),
        1,
        "each event once"
    );

    // failed: 1
    let task_id = submit(&env, &receiver.url(), None).await;
    let child = watch(&api, &env.key_a, &task_id, 60);
    let mut failed: serde_json::Value = serde_json::from_str(&event(&task_id, "f", "failed", None, 1)).unwrap();
    failed["error"] = "parser crashed".into();
    env.send_status_events(&[failed.to_string()]).await;
    env.record_all().await;
    let (code, out, err) = ended(child).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.ends_with(&format!("{task_id} failed: parser crashed\n")), "{out}");

    // stalled (the watchdog, a heartbeat later): 2
    let task_id = submit(&env, &receiver.url(), None).await;
    env.send_status_events(&[event(&task_id, "s", "started", None, 1)])
        .await;
    env.record_all().await;
    let child = watch(&api, &env.key_a, &task_id, 60);
    let report = env
        .watchdog()
        .run(morag_shared::time::now() + chrono::Duration::hours(2))
        .await;
    assert_eq!(report.tasks_stalled, 1, "{report:?}");
    let (code, out, err) = ended(child).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains(" stalled") && out.contains(&format!("{task_id} stalled")),
        "{out}"
    );

    // a stall the worker came back from before the watch began does not
    // end it: the watch follows the task to its end (0)
    let task_id = submit(&env, &receiver.url(), None).await;
    env.send_status_events(&[event(&task_id, "s", "started", None, 1)])
        .await;
    env.record_all().await;
    let report = env
        .watchdog()
        .run(morag_shared::time::now() + chrono::Duration::hours(2))
        .await;
    assert_eq!(report.tasks_stalled, 1, "{report:?}");
    env.send_status_events(&[event(&task_id, "p", "progress", Some(0.4), 2)])
        .await;
    env.record_all().await;
    let child = watch(&api, &env.key_a, &task_id, 60);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.send_status_events(&[event(&task_id, "c", "completed", None, 3)])
        .await;
    env.record_all().await;
    let (code, out, err) = ended(child).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("#2 stalled") && out.contains("#3 progress  40%"), "{out}");
    assert!(out.ends_with(&format!("{task_id} completed\n")), "{out}");

    // nothing happens within the timeout: 2
    let task_id = submit(&env, &receiver.url(), None).await;
    let (code, out, err) = ended(watch(&api, &env.key_a, &task_id, 1)).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.ends_with("still pending after 1 s: stopped watching\n"), "{out}");

    // cannot watch: another tenant's key, a wrong key: 3, a clear error
    for key in [env.key_b.as_str(), "mrg_wrong"] {
        let (code, out, err) = ended(watch(&api, key, &task_id, 5)).await;
        assert_eq!(code, 3, "{out}{err}");
        assert!(err.starts_with("error: GET /api/v1/status/"), "{err}");
    }
}
