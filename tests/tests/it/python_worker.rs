//! The boto3 example in docs/STATUS_EVENTS.md, run as written against the
//! emulator: what a Python worker sends, the recorder applies.

use serde_json::json;

use morag_tests::{call, spawn_env};

use crate::url_request;

#[tokio::test]
async fn the_documented_python_reporter_drives_a_task_to_completed() {
    let env = spawn_env().await;
    let res = call(
        &env.ingest,
        url_request(
            &env.key_a,
            &json!({"source_type": "web", "url": "https://example.com/"}),
        ),
    )
    .await;
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();

    let doc = include_str!("../../../docs/STATUS_EVENTS.md");
    let snippet = doc
        .split("```python\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a python block");
    let script = format!(
        "{snippet}\nr = TaskReporter({task_id:?})\nr.started()\nr.progress(0.25, 'a quarter')\nr.progress(0.75, 'most')\nr.completed({{'chunks': 3}})\n"
    );
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} missing: make test creates the venv"
    );
    let out = tokio::process::Command::new(python)
        .arg("-c")
        .arg(&script)
        .env("MORAG_STATUS_EVENTS_QUEUE_URL", &env.resources.status_events_queue_url)
        .env("AWS_ENDPOINT_URL", morag_tests::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(env.record_all().await, 4);
    let status = env.get(&env.key_a, &format!("/api/v1/status/{task_id}")).await;
    assert_eq!(status.body["status"], "completed", "{:?}", status.body);
    assert_eq!(status.body["result"], json!({"chunks": 3}));
    let history = env.get(&env.key_a, &format!("/api/v1/status/{task_id}/history")).await;
    assert_eq!(history.body["event_count"], 4);
    assert!(env.drain_dlq(&env.resources.status_events_dlq_url).await.is_empty());
}

/// The published JSON Schema and the recorder agree: what `TaskReporter`
/// sends validates, and malformed examples fail both.
#[tokio::test]
async fn the_published_schema_matches_what_the_recorder_accepts() {
    use morag_shared::adapters::memory::MemoryEventSink;
    use morag_shared::domain::{StatusEvent, TaskId};
    use morag_shared::reporter::TaskReporter;
    use std::sync::Arc;

    let sink = Arc::new(MemoryEventSink::default());
    let reporter = TaskReporter::new(sink.clone(), TaskId::new());
    reporter.started("go").await.unwrap();
    reporter.progress(0.5, "half").await.unwrap();
    reporter.failed("boom").await.unwrap();
    let mut good: Vec<serde_json::Value> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let mut completed = good[0].clone();
    completed["status"] = "completed".into();
    completed["result"] = json!({"chunks": 2});
    good.push(completed);
    let id = TaskId::new().to_string();
    let bad = vec![
        json!({"event_id": "e", "task_id": id, "status": "progress", "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"event_id": "e", "task_id": id, "status": "failed", "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"event_id": "e", "task_id": id, "status": "started", "result": {}, "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"event_id": "e", "task_id": id, "status": "paused", "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"event_id": "e", "task_id": id, "status": "progress", "progress": 1.5, "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"event_id": "e", "task_id": id, "status": "started", "extra": 1, "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"event_id": "", "task_id": id, "status": "started", "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"task_id": id, "status": "started", "occurred_at": "2026-01-01T00:00:00Z"}),
    ];
    let now = morag_shared::time::now();
    for g in &good {
        assert!(StatusEvent::parse(&g.to_string(), now).is_ok(), "recorder refused {g}");
    }
    for b in &bad {
        assert!(
            StatusEvent::parse(&b.to_string(), now).is_err(),
            "recorder accepted {b}"
        );
    }
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
cases = json.loads(sys.stdin.read())
v = jsonschema.Draft202012Validator(schema)
out = [[v.is_valid(e) for e in cases["good"]], [v.is_valid(e) for e in cases["bad"]]]
print(json.dumps(out))
"#;
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/status-event.schema.json");
    let mut child = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(json!({"good": good, "bad": bad}).to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verdicts: (Vec<bool>, Vec<bool>) = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        verdicts.0.iter().all(|v| *v),
        "schema refused a good event: {verdicts:?}"
    );
    assert!(
        verdicts.1.iter().all(|v| !*v),
        "schema accepted a bad event: {verdicts:?}"
    );
}
