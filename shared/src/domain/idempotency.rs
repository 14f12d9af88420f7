//! `Idempotency-Key`: the first answer to a submission, remembered for 24 hours.

use chrono::{DateTime, Utc};

use super::ids::{TaskId, TenantId};

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
