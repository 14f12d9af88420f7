//! History, recent events and task listing: typed query strings, sealed
//! cursors that bind every filter of the query they came from (the task,
//! `hours`, `status`; `limit` may change from page to page), and pages from
//! the store. Unknown or malformed parameters are `400 invalid_parameter`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use morag_shared::domain::lifecycle::HISTORY_LIMIT;
use morag_shared::domain::{HistoryEntry, PageKey, TaskId, TaskStatus, TenantId};
use morag_shared::http::query::{bounded, invalid_parameter};
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{ApiError, Authenticated, Params};

use crate::{owned_task, Status, StatusView};

pub(crate) fn invalid_cursor() -> ApiError {
    ApiError::bad_request("invalid_cursor", "cursor is invalid, expired or not from this query")
}

impl Status {
    /// Opens a cursor sealed for `route` and this tenant, if one was given.
    pub(crate) fn open_cursor<C: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        tenant: &TenantId,
        token: Option<&str>,
    ) -> Result<Option<C>, ApiError> {
        token
            .map(|t| self.cursors.open(route, tenant, t).map_err(|_| invalid_cursor()))
            .transpose()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries per page (without it: everything kept, the newest 100, in one page).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One applied event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItemView {
    /// The task's event sequence: the same number as the webhooks' `data.sequence`.
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    pub status: TaskStatus,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub progress: f64,
    pub message: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl From<HistoryEntry> for HistoryItemView {
    fn from(e: HistoryEntry) -> Self {
        Self {
            seq: e.seq,
            timestamp: e.timestamp,
            status: e.status,
            progress: e.progress,
            message: e.message,
            metadata: e.metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
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

/// A task's applied events, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/status/{task_id}/history",
    operation_id = "get_history",
    tag = "status",
    params(("task_id" = TaskId, Path, description = "The task's id"), HistoryQuery),
    responses(
        (status = 200, description = "The task's history", body = HistoryView),
        (status = 400, description = "`invalid_task_id`, `invalid_parameter` or `invalid_cursor`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn history(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
    Params(q): Params<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    // without a limit, everything kept (the newest 100), as the seed's
    // endpoint answered; asked for one more than is ever kept, the store's
    // page holds them all and no cursor follows
    let limit = match q.limit {
        None => HISTORY_LIMIT as usize + 1,
        Some(_) => bounded(q.limit, "limit", HISTORY_LIMIT as u32, 1..=100)? as usize,
    };
    let task = owned_task(&st, &tenant, &raw_id).await?;
    let start = match st.open_cursor::<HistoryCursor>("history", &tenant, q.cursor.as_deref())? {
        Some(c) if c.task != task.task_id => return Err(invalid_cursor()),
        c => c.map(|c| c.key),
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
        history: page.items.into_iter().map(HistoryItemView::from).collect(),
        event_count: task.event_seq.min(HISTORY_LIMIT),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// How far back (default 24).
    #[param(minimum = 1, maximum = 168)]
    hours: Option<u32>,
    /// Events per page (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (with the same `hours`).
    cursor: Option<String>,
}

/// An event with its task (recent events).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentEventView {
    pub task_id: TaskId,
    #[serde(flatten)]
    pub event: HistoryItemView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecentView {
    pub events: Vec<RecentEventView>,
    pub count: usize,
    pub hours: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where a recent-events walk stopped: the window it started with (so later
/// pages see the same events) and the store's position.
#[derive(Serialize, Deserialize)]
struct RecentCursor {
    hours: u32,
    since: DateTime<Utc>,
    key: PageKey,
}

/// The tenant's events of the last hours, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/status/events/recent",
    operation_id = "list_recent_events",
    tag = "status",
    params(RecentQuery),
    responses(
        (status = 200, description = "Recent events of the tenant's tasks", body = RecentView),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = ErrorBody),
    )
)]
pub async fn recent_events(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Params(q): Params<RecentQuery>,
) -> Result<Json<RecentView>, ApiError> {
    let hours = bounded(q.hours, "hours", 24, 1..=168)?;
    let limit = bounded(q.limit, "limit", 100, 1..=500)? as usize;
    let (since, start) = match st.open_cursor::<RecentCursor>("recent", &tenant, q.cursor.as_deref())? {
        Some(c) if c.hours != hours => return Err(invalid_cursor()),
        Some(c) => (c.since, Some(c.key)),
        None => (morag_shared::time::now() - Duration::hours(i64::from(hours)), None),
    };
    let page = st.tasks.recent_events(&tenant, since, limit, start).await?;
    let events: Vec<RecentEventView> = page
        .items
        .into_iter()
        .map(|r| RecentEventView {
            task_id: r.task_id,
            event: r.entry.into(),
        })
        .collect();
    Ok(Json(RecentView {
        count: events.len(),
        events,
        hours,
        next_cursor: page
            .next
            .map(|key| st.cursors.seal("recent", &tenant, &RecentCursor { hours, since, key })),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    /// Tasks per page (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (with the same `status`).
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
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

/// The tenant's tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    operation_id = "list_tasks",
    tag = "status",
    params(TasksQuery),
    responses(
        (status = 200, description = "The tenant's tasks", body = TasksView),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = ErrorBody),
    )
)]
pub async fn list_tasks(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Params(q): Params<TasksQuery>,
) -> Result<Json<TasksView>, ApiError> {
    let limit = bounded(q.limit, "limit", 50, 1..=100)? as usize;
    let status = match q.status.as_deref() {
        None => None,
        Some(raw) => Some(
            serde_json::from_value::<TaskStatus>(Value::String(raw.to_owned())).map_err(|_| {
                invalid_parameter("status must be one of pending, started, progress, completed, failed")
            })?,
        ),
    };
    let start = match st.open_cursor::<TasksCursor>("tasks", &tenant, q.cursor.as_deref())? {
        Some(c) if c.status != status => return Err(invalid_cursor()),
        c => c.map(|c| c.key),
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
