//! The ports the domain talks through. Adapters: `adapters::dynamodb`,
//! `adapters::sqs`, `adapters::s3` (production) and `adapters::memory` (unit
//! tests).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::auth::KeyHash;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{HistoryEntry, JobMessage, StatusEvent, Task, TaskId, TaskStatus, TenantId};
use crate::error::StoreError;

/// The first answer given for an `Idempotency-Key`, kept for 24 hours.
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
}

/// Where a query page stopped: the store's own key, carried in a sealed
/// cursor (see `cursor`), never interpreted by clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageKey(pub BTreeMap<String, String>);

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}

/// A history entry with the task it belongs to (recent events).
#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub task_id: TaskId,
    pub entry: HistoryEntry,
}

/// How long things are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// History items (TTL from when they are recorded).
    pub history: Duration,
    /// Tasks, from when they complete or fail.
    pub ended_task: Duration,
}

/// What happened to an event write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The task changed since it was read (another writer): read and decide again.
    Conflict,
}

/// Task state (and idempotency records) in the table.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates the task, and the idempotency record with it when given, in one
    /// atomic write. Never overwrites an existing task.
    async fn create_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<CreateOutcome, StoreError>;

    /// Removes a task (and its idempotency record) created by a request that
    /// then failed before its job was enqueued. Only removes a task that is
    /// still `pending`.
    async fn discard_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<(), StoreError>;

    async fn get_task(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// Stores an applied event atomically: the task as `after` (only if it is
    /// still as `before` was read), the history entry, the removal of the
    /// history entry that falls out of the newest 100, and the event's
    /// webhook deliveries (not yet enqueued: the outbox).
    async fn apply_event(
        &self,
        before: &Task,
        after: &Task,
        entry: &HistoryEntry,
        deliveries: &[Delivery],
        retention: &Retention,
    ) -> Result<ApplyOutcome, StoreError>;

    /// A task's history, newest first.
    async fn history(
        &self,
        task_id: &TaskId,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<HistoryEntry>, StoreError>;

    /// One hour bucket of a tenant's events at or after `since`, newest first.
    async fn recent_events(
        &self,
        tenant: &TenantId,
        bucket: DateTime<Utc>,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<RecentEvent>, StoreError>;

    /// A tenant's tasks, newest first, optionally in one status.
    async fn list_tasks(
        &self,
        tenant: &TenantId,
        status: Option<TaskStatus>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Task>, StoreError>;

    /// An unexpired idempotency record, if any.
    async fn get_idempotency(&self, tenant: &TenantId, key_hash: &str)
        -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// The processing queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends one job; returns the queue's message id.
    async fn enqueue(&self, job: &JobMessage) -> Result<String, StoreError>;
}

/// The status-events queue, as pipelines use it.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn send(&self, event: &StatusEvent) -> Result<(), StoreError>;
}

/// A dead-letter queue that a function parks messages in itself, with the
/// reason, when retrying them could never help.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn park(&self, body: &str, reason: &str, detail: &str, source_message_id: &str) -> Result<(), StoreError>;
}

/// Reading uploaded content (the processor).
#[async_trait]
pub trait BlobReader: Send + Sync {
    /// The object's bytes and content type, reading at most `max_bytes`
    /// (`Ok(None)` if the object does not exist).
    async fn get(&self, bucket: &str, key: &str, max_bytes: usize) -> Result<Option<(Bytes, String)>, StoreError>;
}

/// The uploads bucket.
#[async_trait]
pub trait BlobStore: Send + Sync {
    fn bucket(&self) -> &str;
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// A stored API key: only its hash and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_hash: KeyHash,
    pub tenant: TenantId,
    pub created_at: DateTime<Utc>,
    pub description: String,
}

/// API keys, looked up by hash.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Returns whether a key was removed.
    async fn revoke_key(&self, tenant: &TenantId, hash: &KeyHash) -> Result<bool, StoreError>;
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for (another) attempt.
    Pending,
    Succeeded,
    /// Refused for good by the receiver (4xx other than 408/409/425/429, 410, 3xx).
    Failed,
    /// The attempt budget is spent; the message is in the webhook DLQ.
    Dead,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// An error kind (`timeout`, `connect`, `blocked_address`, ...) when there was no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The start of the response body (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

/// A webhook delivery: one event to one URL, retried until it succeeds,
/// fails for good or runs out of attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub task_id: TaskId,
    pub tenant: TenantId,
    /// The `webhook-id`, the same on every attempt and redelivery.
    pub delivery_id: String,
    pub event_type: crate::webhook::WebhookEvent,
    pub url: String,
    pub payload: String,
    pub state: DeliveryState,
    pub created_at: DateTime<Utc>,
    /// Whether its message is on the webhook queue (the outbox flag).
    pub enqueued: bool,
    /// Attempt cycle: 0, then one more per redelivery.
    pub cycle: u32,
    pub attempts: Vec<Attempt>,
}

/// The message on the webhook queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub task_id: TaskId,
    pub delivery_id: String,
    pub cycle: u32,
}

/// Webhook deliveries, stored beside their task.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Deliveries whose message was not (known to be) sent yet: the outbox.
    async fn unsent_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError>;
    async fn mark_enqueued(&self, task_id: &TaskId, delivery_id: &str, cycle: u32) -> Result<(), StoreError>;
    async fn get_delivery(&self, task_id: &TaskId, delivery_id: &str) -> Result<Option<Delivery>, StoreError>;
    /// Appends an attempt and sets the state, if the delivery is still in `cycle`.
    async fn record_attempt(
        &self,
        task_id: &TaskId,
        delivery_id: &str,
        cycle: u32,
        attempt: &Attempt,
        state: DeliveryState,
    ) -> Result<(), StoreError>;
    /// A task's deliveries, newest first.
    async fn list_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError>;
    /// Starts a fresh attempt cycle: state `pending`, cycle + 1, not enqueued.
    async fn restart_delivery(&self, task_id: &TaskId, delivery_id: &str) -> Result<Option<Delivery>, StoreError>;
}

/// The webhook queue.
#[async_trait]
pub trait WebhookQueue: Send + Sync {
    async fn enqueue(&self, message: &DeliveryMessage) -> Result<(), StoreError>;
}

/// Tenants' webhook signing secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secrets to sign with now: the current one first, then the previous
    /// one while its rotation overlap lasts. `None`: the tenant has none.
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<Vec<String>>, StoreError>;
    /// Sets a new current secret; the old one keeps signing until `overlap_until`.
    async fn rotate_secret(
        &self,
        tenant: &TenantId,
        new_secret: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
}

/// Changing when a received message comes back (the webhook queue's backoff).
#[async_trait]
pub trait Visibility: Send + Sync {
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError>;
}
