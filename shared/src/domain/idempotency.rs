//! `Idempotency-Key`: the first answer to a submission, remembered for 24 hours.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{TaskId, TenantId};

/// How long a retry waits for the first request of its key before it takes
/// it over: longer than the ingest function's timeout (15 s), so by then the
/// first request has either finished or died.
pub const IN_FLIGHT_LEASE: TimeDelta = TimeDelta::seconds(60);

/// How far the first request of a key got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyState {
    /// Its task is written; its job may not be enqueued (yet).
    InFlight,
    /// Its job is on the processing queue: the answer is final.
    Enqueued,
}

/// The first answer given for an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub tenant: TenantId,
    /// SHA-256 of the client's key (the key itself is never stored).
    pub key_hash: String,
    /// SHA-256 over the request's meaningful content: a reused key with a
    /// different request is refused rather than silently answered.
    pub fingerprint: String,
    pub task_id: TaskId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: IdempotencyState,
}

impl IdempotencyRecord {
    /// An in-flight first request older than the lease: it died between
    /// writing its task and enqueueing its job.
    pub fn abandoned(&self, now: DateTime<Utc>) -> bool {
        self.state == IdempotencyState::InFlight && now - self.created_at > IN_FLIGHT_LEASE
    }
}

/// What happened to a task creation.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created,
    /// Another request already used the idempotency key; nothing was written.
    IdempotencyHit(IdempotencyRecord),
    /// The upload is unknown, another tenant's, or already claimed by a
    /// task; nothing was written.
    UploadUnavailable,
}
