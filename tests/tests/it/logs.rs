//! Logs help at 3 a.m. without leaking: a span per request with tenant and
//! task id, and never the API key, file contents or metadata.

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use morag_tests::multipart::Form;
use morag_tests::{call, spawn_env};

use crate::{file_request, status_request};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_logs_carry_tenant_and_task_id_and_no_secrets() {
    let env = spawn_env().await;
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    // #[tokio::test] runs on one thread, so the guard covers every poll
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret_content = "TOP-SECRET-FILE-CONTENT-8c1f";
    let form = Form::new()
        .text("source_type", "document")
        .file("file", "s.md", "text/markdown", secret_content.as_bytes())
        .text("metadata", r#"{"customer":"SECRET-METADATA-VALUE"}"#);
    let res = call(&env.ingest, file_request(&env.key_a, form)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    let wrong = call(&env.status, status_request("mrg_wrong-key-never-logged", &task_id)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    drop(_guard);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "task accepted")
        .unwrap_or_else(|| panic!("no 'task accepted' line in:\n{logs}"));
    assert_eq!(accepted["span"]["tenant"], "acme");
    assert_eq!(accepted["span"]["task_id"], task_id.as_str());
    let finished = lines
        .iter()
        .find(|l| l["message"] == "request finished" && l["status"] == 202)
        .expect("request finished line");
    assert_eq!(finished["span"]["method"], "POST");
    assert!(lines.iter().any(|l| l["message"] == "authentication failed"));

    for secret in [
        env.key_a.as_str(),
        "mrg_wrong-key-never-logged",
        secret_content,
        "SECRET-METADATA-VALUE",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
    }
}

/// The timeline's long-poll reads as docs/ARCHITECTURE.md counts (the
/// timeline): a wait of S seconds with nothing new polls at most 2 + 2S
/// times (two Queries each), and its log says how long it waited.
#[tokio::test]
async fn an_idle_long_poll_polls_at_most_2_plus_2s_times() {
    let env = spawn_env().await;
    let res = call(
        &env.ingest,
        crate::url_request(
            &env.key_a,
            &serde_json::json!({"source_type": "web", "url": "https://example.com/"}),
        ),
    )
    .await;
    let task_id = res.body["task_id"].as_str().unwrap().to_owned();
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let waited = env
        .get(&env.key_a, &format!("/api/v1/status/{task_id}/timeline?wait=2"))
        .await;
    drop(_guard);
    assert_eq!(waited.status, StatusCode::OK);
    assert!(waited.body["entries"].as_array().unwrap().is_empty());
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let answered: serde_json::Value = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["message"] == "timeline answered")
        .unwrap_or_else(|| panic!("{logs}"));
    let polls = answered["polls"].as_u64().unwrap();
    assert!((2..=6).contains(&polls), "{answered}");
    assert_eq!(answered["wait_s"], 2);
    assert!(answered["waited_ms"].as_u64().unwrap() >= 2000, "{answered}");
}
