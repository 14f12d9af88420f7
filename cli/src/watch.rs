//! `morag watch TASK_ID` (and `morag ingest FILE --watch`): follows a task
//! until it ends, showing its progress and message, its status events as
//! they come and its webhook deliveries' outcomes. Exits 0 when the task
//! completes, 1 when it fails, 2 when it stalls or the watch times out (3
//! when it cannot watch), so scripts and CI jobs can wait on a task. A progress bar on a terminal,
//! plain lines otherwise.
//!
//! It polls the task's status, history and deliveries (three GETs per
//! `interval`, one second by default) and prints what is new since the last
//! poll; history entries by their `seq`, deliveries by their attempt count
//! and state.

use std::collections::HashMap;
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
    /// Between polls.
    pub interval: Duration,
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

/// One delivery's latest outcome as a line.
fn delivery_line(d: &Value) -> String {
    let attempts = d["attempts"].as_array().map_or(0, Vec::len);
    let last = d["attempts"].as_array().and_then(|a| a.last());
    let detail = match last {
        Some(a) => match (a["status_code"].as_u64(), a["error"].as_str()) {
            (Some(code), _) => format!(", HTTP {code}"),
            (None, Some(error)) => format!(", {error}"),
            _ => String::new(),
        },
        None => String::new(),
    };
    let to = d["endpoint_id"].as_str().unwrap_or("webhook_url");
    format!(
        "webhook {} to {to}: {} ({attempts} attempt{}{detail})",
        d["event_type"].as_str().unwrap_or("?"),
        d["state"].as_str().unwrap_or("?"),
        if attempts == 1 { "" } else { "s" }
    )
}

/// Follows the task until it ends or the timeout passes.
pub async fn watch(w: &WatchTask<'_>) -> Result<Ended> {
    let client = reqwest::Client::new();
    let view = View::new();
    let started = Instant::now();
    let mut last_seq = 0u64;
    // delivery id → (state, attempts) last shown
    let mut shown: HashMap<String, (String, usize)> = HashMap::new();
    loop {
        let status = get(&client, w, &format!("/api/v1/status/{}", w.task_id)).await?;
        // the history and deliveries after the status: an end read first
        // has its events and webhooks listed below
        let history = get(&client, w, &format!("/api/v1/status/{}/history", w.task_id)).await?;
        let mut entries: Vec<&Value> = history["history"]
            .as_array()
            .map(|h| h.iter().collect())
            .unwrap_or_default();
        entries.reverse();
        for e in entries {
            let seq = e["seq"].as_u64().unwrap_or(0);
            if seq > last_seq {
                view.line(&event_line(e));
                last_seq = seq;
            }
        }
        let deliveries = get(&client, w, &format!("/api/v1/status/{}/webhooks", w.task_id)).await?;
        for d in deliveries["deliveries"].as_array().into_iter().flatten().rev() {
            let id = d["delivery_id"].as_str().unwrap_or_default().to_owned();
            let now = (
                d["state"].as_str().unwrap_or_default().to_owned(),
                d["attempts"].as_array().map_or(0, Vec::len),
            );
            let changed = shown.get(&id) != Some(&now);
            // a pending delivery with no attempt yet is not news
            if changed && !(now.0 == "pending" && now.1 == 0) {
                view.line(&delivery_line(d));
                shown.insert(id, now);
            }
        }
        view.progress(percent(&status["progress"]), status["message"].as_str().unwrap_or(""));
        let ended = match status["status"].as_str() {
            Some("completed") => Some(Ended::Completed),
            Some("failed") => Some(Ended::Failed),
            Some("stalled") => Some(Ended::Stalled),
            _ if started.elapsed() >= w.timeout => Some(Ended::TimedOut),
            _ => None,
        };
        if let Some(ended) = ended {
            view.finish();
            let how = match ended {
                Ended::Completed => "completed".to_owned(),
                Ended::Failed => format!("failed: {}", status["error"].as_str().unwrap_or("")),
                Ended::Stalled => "stalled: its worker stopped reporting".to_owned(),
                Ended::TimedOut => format!(
                    "still {} after {} s: stopped watching",
                    status["status"].as_str().unwrap_or("?"),
                    w.timeout.as_secs()
                ),
            };
            view.line(&format!("{} {how}", w.task_id));
            return Ok(ended);
        }
        tokio::time::sleep(w.interval).await;
    }
}
