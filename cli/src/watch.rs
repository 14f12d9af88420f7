//! `morag watch TASK_ID` (and `morag ingest FILE --watch`): follows a task
//! until it ends, showing its progress and message, its status events as
//! they come and its webhook deliveries' outcomes. Exits 0 when the task
//! completes, 1 when it fails, 2 when it stalls or the watch times out (3
//! when it cannot watch), so scripts and CI jobs can wait on a task. A progress bar on a terminal,
//! plain lines otherwise.
//!
//! It long-polls the task's timeline (`GET /status/{id}/timeline?wait=`,
//! one request per change or per 20 s) and prints each entry once, in the
//! timeline's order: status events by `seq`, webhook attempts as they are
//! recorded.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// The exit code when the task cannot be watched (a wrong key, an unknown
/// task, the API unreachable): not one of a task's endings.
pub const COULD_NOT_WATCH: i32 = 3;

/// How a watch ended, as the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Completed,
    Failed,
    Stalled,
    TimedOut,
}

impl Ended {
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Completed => 0,
            Ended::Failed => 1,
            Ended::Stalled | Ended::TimedOut => 2,
        }
    }
}

/// What to watch, where, for how long.
#[derive(Debug, Clone)]
pub struct WatchTask<'a> {
    pub api: &'a str,
    pub key: &'a str,
    pub task_id: &'a str,
    /// Give up (exit 2) after this long.
    pub timeout: Duration,
    /// The longest one long-poll waits for news (at most 20 s).
    pub wait: Duration,
}

/// Where the watch is shown: a bar with the task's message on a terminal,
/// a line per change otherwise (logs, CI).
enum View {
    Bar(ProgressBar),
    Lines,
}

impl View {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return View::Lines;
        }
        let bar = ProgressBar::new(100);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos:>3}% {msg}") {
            bar.set_style(style);
        }
        View::Bar(bar)
    }

    /// A line that stays (an event, a delivery).
    fn line(&self, text: &str) {
        match self {
            View::Bar(bar) => bar.println(text),
            View::Lines => println!("{text}"),
        }
    }

    fn progress(&self, percent: u64, message: &str) {
        if let View::Bar(bar) = self {
            bar.set_position(percent);
            bar.set_message(message.to_owned());
        }
    }

    fn finish(&self) {
        if let View::Bar(bar) = self {
            bar.finish();
        }
    }
}

async fn get(client: &reqwest::Client, w: &WatchTask<'_>, path: &str) -> Result<Value> {
    let response = client
        .get(format!("{}{path}", w.api))
        .bearer_auth(w.key)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "GET {path}: HTTP {status} {}: {}",
            body["error"]["code"].as_str().unwrap_or(""),
            body["error"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

fn percent(progress: &Value) -> u64 {
    (progress.as_f64().unwrap_or(0.0).clamp(0.0, 1.0) * 100.0).round() as u64
}

/// One history entry as a line.
fn event_line(e: &Value) -> String {
    let mut line = format!(
        "#{} {} {:>3}%",
        e["seq"],
        e["status"].as_str().unwrap_or("?"),
        percent(&e["progress"])
    );
    if let Some(message) = e["message"].as_str().filter(|m| !m.is_empty()) {
        line.push_str(&format!(" {message}"));
    }
    line
}

/// One webhook attempt (a timeline `delivery` entry) as a line.
fn attempt_line(a: &Value) -> String {
    let detail = match (a["status_code"].as_u64(), a["error"].as_str()) {
        (Some(code), _) => format!(", HTTP {code}"),
        (None, Some(error)) => format!(", {error}"),
        _ => String::new(),
    };
    let state = match a["state"].as_str() {
        Some("pending") => "failed, will retry",
        Some(state) => state,
        None => "?",
    };
    format!(
        "webhook {} to {}: {state} (attempt {}{detail})",
        a["event_type"].as_str().unwrap_or("?"),
        a["endpoint_id"].as_str().unwrap_or("webhook_url"),
        a["attempt"]
    )
}

/// How a status ends a watch, if it does.
fn ending(status: &str) -> Option<Ended> {
    match status {
        "completed" => Some(Ended::Completed),
        "failed" => Some(Ended::Failed),
        "stalled" => Some(Ended::Stalled),
        _ => None,
    }
}

/// Follows the task until it ends or the timeout passes.
pub async fn watch(w: &WatchTask<'_>) -> Result<Ended> {
    let client = reqwest::Client::new();
    let view = View::new();
    let started = Instant::now();
    let status = get(&client, w, &format!("/api/v1/status/{}", w.task_id)).await?;
    view.progress(percent(&status["progress"]), status["message"].as_str().unwrap_or(""));
    let mut cursor: Option<String> = None;
    let mut current = status["status"].as_str().unwrap_or("?").to_owned();
    let ended = loop {
        let left = w.timeout.saturating_sub(started.elapsed());
        // whole seconds, at least 1 (the last poll may end a little late)
        let wait = left.min(w.wait).as_secs_f64().ceil().max(1.0) as u64;
        let position = match &cursor {
            Some(c) => format!("cursor={c}"),
            None => "after=0".to_owned(),
        };
        let page = get(
            &client,
            w,
            &format!("/api/v1/status/{}/timeline?{position}&wait={wait}", w.task_id),
        )
        .await?;
        for entry in page["entries"].as_array().into_iter().flatten() {
            match entry["kind"].as_str() {
                Some("status") => {
                    view.line(&event_line(entry));
                    view.progress(percent(&entry["progress"]), entry["message"].as_str().unwrap_or(""));
                }
                Some("delivery") => view.line(&attempt_line(entry)),
                _ => {}
            }
        }
        current = page["status"].as_str().unwrap_or(&current).to_owned();
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if page["has_more"] == true {
            continue;
        }
        // the task as it is after everything shown (a stall the worker came
        // back from does not end the watch)
        if let Some(ended) = ending(&current) {
            break ended;
        }
        if started.elapsed() >= w.timeout {
            break Ended::TimedOut;
        }
    };
    view.finish();
    let how = match ended {
        Ended::Completed => "completed".to_owned(),
        Ended::Failed => {
            // the error is the task's, not the event's message
            let status = get(&client, w, &format!("/api/v1/status/{}", w.task_id)).await?;
            format!("failed: {}", status["error"].as_str().unwrap_or(""))
        }
        Ended::Stalled => "stalled: its worker stopped reporting".to_owned(),
        Ended::TimedOut => format!("still {current} after {} s: stopped watching", w.timeout.as_secs()),
    };
    view.line(&format!("{} {how}", w.task_id));
    Ok(ended)
}
