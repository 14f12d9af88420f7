//! `make dev`'s server, started as `morag dev` does it, answering the
//! README's curl lines over real HTTP, with the local event-source mappings
//! taking the task to `completed`.

use std::time::Duration;

/// GET with the local key, as JSON.
use morag_tests::get_local_json as get_json;

/// The event types the receiver got, once one of them is `kind` (or after
/// 10 s).
async fn event_types_once(receiver: &morag_tests::receiver::TestReceiver, kind: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    for _ in 0..100 {
        kinds = receiver
            .received()
            .iter()
            .map(|r| r.json()["event_type"].as_str().unwrap_or("").to_owned())
            .collect();
        if kinds.iter().any(|k| k == kind) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kinds
}

#[tokio::test]
async fn the_readme_curl_lines_work_against_morag_dev() {
    let receiver = morag_tests::receiver::TestReceiver::always(200).await;
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let (mut child, port) = morag_tests::spawn_morag_dev(SECRET).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    // curl -X POST .../api/v1/ingest/file -H "Authorization: Bearer test-api-key"
    //   -F source_type=document -F file=@README.md -F webhook_url=http://127.0.0.1:8001/webhook
    let readme = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("source_type", "document")
        .part("file", reqwest::multipart::Part::bytes(readme).file_name("README.md"))
        .text("webhook_url", receiver.url());
    let res = client
        .post(format!("{base}/api/v1/ingest/file"))
        .header("authorization", "Bearer test-api-key")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    let task_id = body["task_id"].as_str().unwrap();
    assert_eq!(body["status_url"], format!("{base}/api/v1/status/{task_id}"));

    // curl .../api/v1/status/{task_id} -H "Authorization: Bearer test-api-key"
    let res = client
        .get(format!("{base}/api/v1/status/{task_id}"))
        .header("authorization", "Bearer test-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let status: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status["source_type"], "document");

    // the local event-source mappings carry it through the processor and the recorder
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        last = get_json(&client, &format!("{base}/api/v1/status/{task_id}")).await;
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    assert!(last["result"]["chunks"].as_u64().unwrap() >= 1);
    let history: serde_json::Value = get_json(&client, &format!("{base}/api/v1/status/{task_id}/history")).await;
    let statuses: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"completed"));
    assert_eq!(statuses.last(), Some(&"started"));
    let recent: serde_json::Value = get_json(&client, &format!("{base}/api/v1/status/events/recent?hours=1")).await;
    assert_eq!(recent["count"], statuses.len());

    // and the local receiver got signed webhooks: started, milestones, completed
    let secret = morag_shared::domain::delivery::SigningSecret::parse(SECRET).unwrap();
    let kinds = event_types_once(&receiver, "task_completed").await;
    assert!(kinds.contains(&"task_started".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"task_completed".to_owned()), "{kinds:?}");
    for r in receiver.received() {
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert_eq!(
            r.header("webhook-signature"),
            secret.sign(r.header("webhook-id"), ts, &r.body)
        );
    }
    // every planned webhook arrived, except progress that a newer event
    // overtook before its turn (a fast local run may supersede some)
    let hooks: serde_json::Value = get_json(&client, &format!("{base}/api/v1/status/{task_id}/webhooks")).await;
    let states: Vec<(&str, &str)> = hooks["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["event_type"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    let superseded = states.iter().filter(|(_, s)| *s == "superseded").count();
    assert!(
        states
            .iter()
            .all(|(k, s)| *s == "succeeded" || (*k == "task_progress" && *s == "superseded")),
        "{states:?}"
    );
    assert_eq!(states.len(), kinds.len() + superseded, "{states:?} {kinds:?}");
    assert!(
        states.iter().any(|(k, _)| *k == "task_progress"),
        "a milestone was planned: {states:?}"
    );
    child.kill().await.unwrap();
}

/// `make dev` runs the API, the recorder and the processor in one process:
/// while the processor cuts a 32 MiB HTML page (one long CPU-bound step
/// between its "Read N bytes" and "Cut into N chunks" reports), the status
/// API keeps answering. The client polls one request at a time and counts
/// the answers that saw the task in that step; an API that froze for the
/// step would answer at most the one request that was waiting. The server
/// runs its runtime on one worker thread, so CPU work done on the runtime
/// (not on a blocking thread) would freeze it.
#[tokio::test]
async fn the_status_api_answers_while_the_processor_works() {
    let (mut child, port, _) = morag_tests::spawn_morag_dev_with(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        &[("TOKIO_WORKER_THREADS", "1")],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let row = "<div class=\"row\"><p>Some <b>bold</b> text &amp; a <a href=\"/x\">link</a>.</p>\
               <script>var x = '<p>' + 1;</script></div>\n";
    let html = row.repeat(32 * 1024 * 1024 / row.len());
    let task_id = morag_tests::morag_ingest(
        "page.html",
        html.as_bytes(),
        &["--api", &base, "--key", morag_cli::stack::LOCAL_DEV_KEY],
    )
    .await;

    let client = reqwest::Client::new();
    let mut in_cpu_step = 0;
    let mut last = serde_json::Value::Null;
    for _ in 0..20_000 {
        last = get_json(&client, &format!("{base}/api/v1/status/{task_id}")).await;
        let message = last["message"].as_str().unwrap_or("");
        if message.starts_with("Read ") && !message.contains(" of ") {
            in_cpu_step += 1;
        }
        if last["status"] == "completed" || last["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    // one paragraph per row, joined by blank lines
    let rows = html.len() / row.len();
    assert_eq!(
        last["result"]["characters"],
        rows * "Some bold text & a link.".len() + (rows - 1) * 2
    );
    assert!(
        in_cpu_step >= 3,
        "the status API answered {in_cpu_step} requests while the processor cut the page"
    );
    child.kill().await.unwrap();
}

/// `make dev` with `MORAG_DEV_PROCESSOR=off`: the test is the team's own
/// worker. It takes the job from the local processing queue, reports
/// `started` and dies; the local watchdog (its clock two minutes ahead)
/// marks the task `stalled` and the receiver gets `task_stalled`.
#[tokio::test]
async fn a_dead_workers_task_stalls_on_morag_dev_without_the_processor() {
    let receiver = morag_tests::receiver::TestReceiver::always(200).await;
    let (mut child, port, stack_name) = morag_tests::spawn_morag_dev_with(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        &[
            ("MORAG_DEV_PROCESSOR", "off"),
            ("MORAG_WATCHDOG_INTERVAL_S", "1"),
            ("MORAG_DEV_WATCHDOG_AHEAD_S", "120"),
        ],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/v1/ingest/url"))
        .header("authorization", "Bearer test-api-key")
        .json(&serde_json::json!({
            "source_type": "web",
            "url": "https://example.com/",
            "webhook_url": receiver.url(),
            "heartbeat_timeout_s": 60,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let task_id = res.json::<serde_json::Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // the worker: the job from the local processing queue, then `started`
    let sqs = morag_shared::adapters::aws::sqs(&morag_shared::adapters::aws::local(&morag_tests::endpoint()));
    let jobs_url = morag_cli::stack::queue_url_by_stack(&sqs, &stack_name, "ProcessingQueue")
        .await
        .unwrap();
    let events_url = morag_cli::stack::queue_url_by_stack(&sqs, &stack_name, "StatusEventsQueue")
        .await
        .unwrap();
    let job = sqs
        .receive_message()
        .queue_url(&jobs_url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .pop()
        .expect("the job waits for a worker: no processor took it");
    let job: serde_json::Value = serde_json::from_str(job.body().unwrap()).unwrap();
    assert_eq!(job["task_id"], task_id);
    sqs.send_message()
        .queue_url(&events_url)
        .message_body(morag_tests::status_event(
            &task_id,
            "w1",
            "started",
            None,
            morag_shared::time::now(),
        ))
        .send()
        .await
        .unwrap();

    // ... and dies
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        last = get_json(&client, &format!("{base}/api/v1/status/{task_id}")).await;
        if last["status"] == "stalled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last["status"], "stalled", "{last}");
    let kinds = event_types_once(&receiver, "task_stalled").await;
    assert_eq!(kinds.iter().filter(|k| *k == "task_stalled").count(), 1, "{kinds:?}");
    assert!(kinds.contains(&"task_started".to_owned()), "{kinds:?}");
    child.kill().await.unwrap();
}

/// The walkthrough: `morag ingest README.md --watch` on `morag dev`
/// prints the task id, follows it through the processor's events and exits
/// 0 at `completed`.
#[tokio::test]
async fn morag_ingest_watch_follows_the_readme_to_completed_on_morag_dev() {
    let (mut dev, port) = morag_tests::spawn_morag_dev("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").await;
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(morag_tests::debug_binary("morag"))
            .arg("ingest")
            .arg(&readme)
            .args(["--watch", "--timeout-s", "100"])
            .args(["--api", &format!("http://127.0.0.1:{port}")])
            .args(["--key", morag_cli::stack::LOCAL_DEV_KEY])
            .output(),
    )
    .await
    .expect("morag ingest --watch ends")
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let task_id = lines[0];
    assert!(task_id.parse::<uuid::Uuid>().is_ok(), "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("#1 started")), "{stdout}");
    assert!(lines.iter().any(|l| l.contains(" completed 100%")), "{stdout}");
    assert_eq!(lines.last().unwrap(), &format!("{task_id} completed"));
    dev.kill().await.unwrap();
}
