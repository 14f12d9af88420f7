//! `GET /api/v1/status/{task_id}/timeline?after=&cursor=&wait=&limit=`: the
//! task's status events and its webhooks' attempts in one list, and a way
//! to wait for the next entry (long-poll).
//!
//! - A status entry's `seq` is the event's sequence, the webhooks'
//!   `data.sequence`; a delivery entry's `seq` is the sequence of the event
//!   its webhook tells of, and `attempt_seq` numbers the task's attempts in
//!   the order they were recorded (`domain::timeline`).
//! - `after=SEQ` (default 0): status events after `SEQ` and attempts of the
//!   webhooks of events after `SEQ`: from a webhook's `data.sequence`, what
//!   came after it. Every answer carries `next_cursor`, sealed for the task
//!   and tenant, that continues exactly where it ended (later status events
//!   and every attempt recorded since, under the same `after`).
//! - `wait=S` (0–20, default 0): with nothing new, the answer waits up to S
//!   seconds for an entry, reading at most [`READS_PER_POLL`] times per poll,
//!   polls [`FIRST_POLL`] apart backing off to [`POLL_CAP`].
//! - `limit` (1–100, default 100): at most that many status events and that
//!   many attempts per answer; `has_more` says the next page is ready now.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use morag_shared::domain::timeline::contiguous;
use morag_shared::domain::{
    AttemptEntry, AttemptError, DeliveryId, DeliveryState, EndpointId, HistoryEntry, TaskId, TaskStatus, WebhookEvent,
};
use morag_shared::http::query::{bounded, invalid_parameter};
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{ApiError, Authenticated, Params};

use crate::queries::invalid_cursor;
use crate::{owned_task, Status};

/// The longest `wait`, well within API Gateway's 30 s integration timeout.
pub const MAX_WAIT_S: u32 = 20;
/// Store reads per poll: one Query of the task's events, one of its attempts.
pub const READS_PER_POLL: u32 = 2;
/// The first poll's delay after a read found nothing.
pub const FIRST_POLL: Duration = Duration::from_millis(250);
/// The longest delay between two polls: an entry is answered at most this
/// long (plus one read) after it is written.
pub const POLL_CAP: Duration = Duration::from_millis(500);
/// Entries of each kind per answer, by default and at most.
const MAX_LIMIT: u32 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// Only what came after this status sequence (a webhook's
    /// `data.sequence`); not with `cursor`. Default 0: everything kept.
    after: Option<u64>,
    /// `next_cursor` of an earlier answer; not with `after`.
    cursor: Option<String>,
    /// Seconds to wait for an entry when there is none yet (default 0).
    #[param(minimum = 0, maximum = 20)]
    wait: Option<u32>,
    /// Status events, and attempts, per answer (default 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Where a reader is: the last status event and attempt number it was
/// given, and the `after` it started from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TimelineCursor {
    task: TaskId,
    event: u64,
    attempt: u64,
    floor: u64,
}

/// One entry, `kind` `status` or `delivery`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEntry {
    Status {
        seq: u64,
        at: DateTime<Utc>,
        status: TaskStatus,
        #[schema(minimum = 0.0, maximum = 1.0)]
        progress: f64,
        message: String,
        #[schema(value_type = Object)]
        metadata: Map<String, Value>,
    },
    Delivery {
        /// The sequence of the event its webhook tells of (`data.sequence`).
        seq: u64,
        /// When the attempt ended.
        at: DateTime<Utc>,
        /// The attempt's number among the task's attempts.
        attempt_seq: u64,
        delivery_id: DeliveryId,
        event_type: WebhookEvent,
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint_id: Option<EndpointId>,
        /// The delivery's state after the attempt (`pending`: it will retry).
        state: DeliveryState,
        /// Which attempt of its cycle it was (1-based).
        attempt: u32,
        cycle: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<AttemptError>,
        latency_ms: u64,
    },
}

impl TimelineEntry {
    /// Status events in sequence; an attempt after the event it tells of,
    /// attempts in the order they were recorded.
    fn order(&self) -> (u64, u8, u64) {
        match self {
            Self::Status { seq, .. } => (*seq, 0, 0),
            Self::Delivery { seq, attempt_seq, .. } => (*seq, 1, *attempt_seq),
        }
    }
}

impl From<HistoryEntry> for TimelineEntry {
    fn from(e: HistoryEntry) -> Self {
        Self::Status {
            seq: e.seq,
            at: e.timestamp,
            status: e.status,
            progress: e.progress,
            message: e.message,
            metadata: e.metadata,
        }
    }
}

impl From<AttemptEntry> for TimelineEntry {
    fn from(entry: AttemptEntry) -> Self {
        let e = entry.record;
        Self::Delivery {
            seq: e.sequence,
            at: e.attempt.at,
            attempt_seq: entry.n,
            delivery_id: e.delivery_id,
            event_type: e.event_type,
            endpoint_id: e.endpoint_id,
            state: e.state,
            attempt: e.attempt_no,
            cycle: e.attempt.cycle.unwrap_or(0),
            status_code: e.attempt.status_code,
            error: e.attempt.error,
            latency_ms: e.attempt.latency_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineView {
    pub task_id: TaskId,
    /// The task's status when the answer was made.
    pub status: TaskStatus,
    pub entries: Vec<TimelineEntry>,
    /// More entries are ready now (a page was full): ask again at once.
    pub has_more: bool,
    /// Continues after this answer's entries.
    pub next_cursor: String,
}

/// One read of both kinds from `at`: the entries, where they leave the
/// reader, and whether either kind filled its page.
struct Read {
    entries: Vec<TimelineEntry>,
    at: TimelineCursor,
    full: bool,
}

async fn read(st: &Status, at: TimelineCursor, limit: usize) -> Result<Read, ApiError> {
    let (events, attempts) = tokio::try_join!(
        st.tasks.events_after(&at.task, at.event, limit),
        st.deliveries.attempt_entries(&at.task, at.attempt, limit),
    )?;
    let last_fetched = attempts.last().map(|a| a.n);
    let attempts_full = attempts.len() >= limit;
    let event = events.last().map_or(at.event, |e| e.seq);
    let (attempts, attempt) = contiguous(at.attempt, attempts, morag_shared::time::now());
    // more is ready only past a page read to its end: a page held back at a
    // missing number is not (asking again at once would find the same gap)
    let full = events.len() >= limit || (attempts_full && last_fetched == Some(attempt));
    let mut entries: Vec<TimelineEntry> = events.into_iter().map(TimelineEntry::from).collect();
    entries.extend(
        attempts
            .into_iter()
            .filter(|a| a.record.sequence > at.floor)
            .map(TimelineEntry::from),
    );
    entries.sort_by_key(TimelineEntry::order);
    Ok(Read {
        entries,
        at: TimelineCursor { event, attempt, ..at },
        full,
    })
}

/// A task's status events and webhook attempts in one list; waits for the
/// next with `wait`.
#[utoipa::path(
    get,
    path = "/api/v1/status/{task_id}/timeline",
    operation_id = "get_timeline",
    tag = "status",
    params(("task_id" = TaskId, Path, description = "The task's id"), TimelineQuery),
    responses(
        (status = 200, description = "The entries after the cursor (empty when none came within `wait`)", body = TimelineView),
        (status = 400, description = "`invalid_task_id`, `invalid_parameter` or `invalid_cursor`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn timeline(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
    Params(q): Params<TimelineQuery>,
) -> Result<Json<TimelineView>, ApiError> {
    let limit = bounded(q.limit, "limit", MAX_LIMIT, 1..=MAX_LIMIT)? as usize;
    let wait = Duration::from_secs(u64::from(bounded(q.wait, "wait", 0, 0..=MAX_WAIT_S)?));
    if q.after.is_some() && q.cursor.is_some() {
        return Err(invalid_parameter("give after or cursor, not both"));
    }
    let task = owned_task(&st, &tenant, &raw_id).await?;
    let mut at = match st.open_cursor::<TimelineCursor>("timeline", &tenant, q.cursor.as_deref())? {
        Some(c) if c.task != task.task_id => return Err(invalid_cursor()),
        Some(c) => c,
        None => {
            let after = q.after.unwrap_or(0);
            TimelineCursor {
                task: task.task_id,
                event: after,
                attempt: 0,
                floor: after,
            }
        }
    };
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut pause = FIRST_POLL;
    let mut polls = 0u32;
    let (entries, full) = loop {
        let found = read(&st, at, limit).await?;
        polls += 1;
        let moved = found.at.event != at.event || found.at.attempt != at.attempt;
        at = found.at;
        if !found.entries.is_empty() || found.full {
            break (found.entries, found.full);
        }
        // attempts of webhooks before `after` were stepped over: read on
        if moved {
            continue;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break (Vec::new(), false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(POLL_CAP);
    };
    tracing::info!(
        entries = entries.len(),
        polls,
        wait_s = wait.as_secs(),
        waited_ms = started.elapsed().as_millis() as u64,
        "timeline answered"
    );
    // the task as it is now (the entries may be newer than `task`)
    let status = match entries.iter().rev().find_map(|e| match e {
        TimelineEntry::Status { status, .. } => Some(*status),
        TimelineEntry::Delivery { .. } => None,
    }) {
        Some(s) if at.event >= task.event_seq => s,
        _ => task.status,
    };
    Ok(Json(TimelineView {
        task_id: task.task_id,
        status,
        entries,
        has_more: full,
        next_cursor: st.cursors.seal("timeline", &tenant, &at),
    }))
}
