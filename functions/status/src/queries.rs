//! History, recent events and task listing, with sealed cursors.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use morag_shared::domain::lifecycle::HISTORY_LIMIT;
use morag_shared::domain::{TaskId, TaskStatus, TenantId};
use morag_shared::http::{self as api, ApiError};
use morag_shared::ports::PageKey;

use crate::{owned_task, Status, StatusView};

type Params = Query<HashMap<String, String>>;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", message)
}

fn check_known(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!(
            "unknown query parameter {k:?}; expected {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ApiError> {
    let Some(raw) = params.get(name) else {
        return Ok(default);
    };
    raw.parse::<u32>().ok().filter(|v| range.contains(v)).ok_or_else(|| {
        invalid(format!(
            "{name} must be an integer from {} to {}",
            range.start(),
            range.end()
        ))
    })
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request("invalid_cursor", "cursor is invalid, expired or not from this query")
}

#[derive(Debug, Serialize)]
pub struct HistoryItemView {
    pub timestamp: DateTime<Utc>,
    pub status: TaskStatus,
    pub progress: f64,
    pub message: String,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub task_id: TaskId,
    pub history: Vec<HistoryItemView>,
    /// Events kept for the task (the newest 100).
    pub event_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct HistoryCursor {
    task: TaskId,
    key: PageKey,
}

pub async fn history(
    State(st): State<Arc<Status>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Query(params): Params,
) -> Result<Json<HistoryView>, ApiError> {
    let tenant = api::authenticate(&st.auth, &headers).await?;
    check_known(&params, &["limit", "cursor"])?;
    let limit = int_param(&params, "limit", 50, 1..=100)? as usize;
    let task = owned_task(&st, &tenant, &raw_id).await?;
    let start = match params.get("cursor") {
        None => None,
        Some(token) => {
            let c: HistoryCursor = st
                .cursors
                .open("history", &tenant, token)
                .map_err(|_| invalid_cursor())?;
            if c.task != task.task_id {
                return Err(invalid_cursor());
            }
            Some(c.key)
        }
    };
    let page = st.tasks.history(&task.task_id, limit, start).await?;
    let next_cursor = page.next.map(|key| {
        st.cursors.seal(
            "history",
            &tenant,
            &HistoryCursor {
                task: task.task_id,
                key,
            },
        )
    });
    Ok(Json(HistoryView {
        task_id: task.task_id,
        history: page
            .items
            .into_iter()
            .map(|e| HistoryItemView {
                timestamp: e.timestamp,
                status: e.status,
                progress: e.progress,
                message: e.message,
                metadata: e.metadata,
            })
            .collect(),
        event_count: task.event_seq.min(HISTORY_LIMIT),
        next_cursor,
    }))
}

#[derive(Debug, Serialize)]
pub struct RecentEventView {
    pub task_id: TaskId,
    pub timestamp: DateTime<Utc>,
    pub status: TaskStatus,
    pub progress: f64,
    pub message: String,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct RecentView {
    pub events: Vec<RecentEventView>,
    pub count: usize,
    pub hours: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RecentCursor {
    since: DateTime<Utc>,
    bucket: DateTime<Utc>,
    key: Option<PageKey>,
}

pub async fn recent_events(
    State(st): State<Arc<Status>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Json<RecentView>, ApiError> {
    let tenant: TenantId = api::authenticate(&st.auth, &headers).await?;
    check_known(&params, &["hours", "limit", "cursor"])?;
    let hours = int_param(&params, "hours", 24, 1..=168)?;
    let limit = int_param(&params, "limit", 100, 1..=500)? as usize;
    let now = morag_shared::time::now();
    let hour = Duration::hours(1);
    let (since, mut bucket, mut start) = match params.get("cursor") {
        Some(token) => {
            let c: RecentCursor = st
                .cursors
                .open("recent", &tenant, token)
                .map_err(|_| invalid_cursor())?;
            (c.since, c.bucket, c.key)
        }
        None => (
            now - Duration::hours(i64::from(hours)),
            now.duration_trunc(hour).unwrap_or(now),
            None,
        ),
    };
    let oldest_bucket = since.duration_trunc(hour).unwrap_or(since);
    let mut events = Vec::new();
    let mut next = None;
    // one query per hour bucket, newest first, until the limit or the window's end
    while bucket >= oldest_bucket {
        let page = st
            .tasks
            .recent_events(&tenant, bucket, since, limit - events.len(), start.take())
            .await?;
        events.extend(page.items);
        match page.next {
            Some(key) if events.len() >= limit => {
                next = Some(RecentCursor {
                    since,
                    bucket,
                    key: Some(key),
                });
                break;
            }
            Some(key) => start = Some(key),
            None => {
                bucket -= hour;
                if events.len() >= limit {
                    if bucket >= oldest_bucket {
                        next = Some(RecentCursor {
                            since,
                            bucket,
                            key: None,
                        });
                    }
                    break;
                }
            }
        }
    }
    let events: Vec<RecentEventView> = events
        .into_iter()
        .map(|r| RecentEventView {
            task_id: r.task_id,
            timestamp: r.entry.timestamp,
            status: r.entry.status,
            progress: r.entry.progress,
            message: r.entry.message,
            metadata: r.entry.metadata,
        })
        .collect();
    Ok(Json(RecentView {
        count: events.len(),
        events,
        hours,
        next_cursor: next.map(|c| st.cursors.seal("recent", &tenant, &c)),
    }))
}

#[derive(Debug, Serialize)]
pub struct TasksView {
    pub tasks: Vec<StatusView>,
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TasksCursor {
    status: Option<TaskStatus>,
    key: PageKey,
}

pub async fn list_tasks(
    State(st): State<Arc<Status>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Json<TasksView>, ApiError> {
    let tenant = api::authenticate(&st.auth, &headers).await?;
    check_known(&params, &["status", "limit", "cursor"])?;
    let limit = int_param(&params, "limit", 50, 1..=100)? as usize;
    let status = match params.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(raw) => Some(
            serde_json::from_value::<TaskStatus>(Value::String(raw.to_owned()))
                .map_err(|_| invalid("status must be one of pending, started, progress, completed, failed"))?,
        ),
    };
    let start = match params.get("cursor") {
        None => None,
        Some(token) => {
            let c: TasksCursor = st.cursors.open("tasks", &tenant, token).map_err(|_| invalid_cursor())?;
            if c.status != status {
                return Err(invalid_cursor());
            }
            Some(c.key)
        }
    };
    let page = st.tasks.list_tasks(&tenant, status, limit, start).await?;
    let tasks: Vec<StatusView> = page.items.into_iter().map(StatusView::from).collect();
    Ok(Json(TasksView {
        count: tasks.len(),
        tasks,
        next_cursor: page
            .next
            .map(|key| st.cursors.seal("tasks", &tenant, &TasksCursor { status, key })),
    }))
}
