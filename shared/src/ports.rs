//! The ports the domain and the functions talk through: traits only (their
//! values live in `domain`). Adapters: `adapters::dynamodb`, `adapters::sqs`,
//! `adapters::s3`, and `adapters::memory` for unit tests.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::delivery::Schemes;
use crate::domain::endpoint::HealthChange;
use crate::domain::watch::Watched;
use crate::domain::{
    ApiKeyRecord, ApplyOutcome, Attempt, AttemptEntry, AttemptRecord, Blob, CreateOutcome, Credential, Delivery,
    DeliveryId, DeliveryMessage, DeliveryState, Endpoint, EndpointId, HistoryEntry, IdempotencyRecord, JobMessage,
    KeyHash, ObjectInfo, Page, PageKey, PresignedPut, RecentEvent, Retention, StatusEvent, Task, TaskId, TaskStatus,
    TenantId, TenantSecrets, Upload, UploadId,
};
use crate::error::StoreError;

/// Task state, history and idempotency records in the table.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates the task, and the idempotency record with it when given, in one
    /// atomic write. Never overwrites an existing task.
    async fn create_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<CreateOutcome, StoreError>;

    /// Like `create_task`, and claims `upload` for the task in the same
    /// write: only an unclaimed upload of the task's tenant
    /// (`CreateOutcome::UploadUnavailable` otherwise).
    async fn create_task_from_upload(
        &self,
        task: &Task,
        idem: Option<&IdempotencyRecord>,
        upload: &UploadId,
    ) -> Result<CreateOutcome, StoreError>;

    /// Removes a task (and its idempotency record) created by a request that
    /// then failed before its job was enqueued. Only removes a task that is
    /// still `pending`.
    async fn discard_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<(), StoreError>;

    async fn get_task(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// Stores an applied event atomically: the task as `after` (only if it is
    /// still as `before` was read), the history entry, the removal of the
    /// history entry that falls out of the newest 100, and the event's
    /// webhook deliveries (not yet enqueued: the outbox). Deliveries too many
    /// for one atomic write are stored as fan-out markers in it and written
    /// out right after; a writer that dies in between leaves that to
    /// `DeliveryStore::expand_fanout`.
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

    /// A task's kept events after sequence `after`, oldest first, at most
    /// `limit`, strongly consistent (the timeline).
    async fn events_after(&self, task_id: &TaskId, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;

    /// A tenant's events at or after `since`, newest first, at most `limit`;
    /// `next` continues where the page stopped.
    async fn recent_events(
        &self,
        tenant: &TenantId,
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

    /// Marks the key's first request done: its job is enqueued (only the
    /// record of `task_id`).
    async fn mark_idempotency_enqueued(
        &self,
        tenant: &TenantId,
        key_hash: &str,
        task_id: &TaskId,
    ) -> Result<(), StoreError>;

    /// Records that the task's job reached the processing queue, if the task
    /// is still `pending` (`false` otherwise): the watchdog then leaves it
    /// to its deadline.
    async fn mark_job_enqueued(&self, task: &Task) -> Result<bool, StoreError>;

    /// Claims the re-enqueue of a `pending` task's unconfirmed job until
    /// `until`, unless another claim holds (`false`): two watchdog runs at
    /// once send it once.
    async fn claim_requeue(&self, task: &Task, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError>;

    /// An unexpired idempotency record, if any.
    async fn get_idempotency(&self, tenant: &TenantId, key_hash: &str)
        -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// The due index: live tasks and unfinished deliveries by when they must
/// next be looked at.
#[async_trait]
pub trait WatchIndex: Send + Sync {
    /// Entries due at or before `now` in one shard, oldest first.
    async fn due(
        &self,
        shard: u8,
        now: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Watched>, StoreError>;
}

/// Granted uploads.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn put_upload(&self, upload: &Upload) -> Result<(), StoreError>;
    async fn get_upload(&self, upload_id: &UploadId) -> Result<Option<Upload>, StoreError>;
    /// Undoes the claim of `task_id` (its task was removed after a failed
    /// enqueue), so the client can retry with the same upload.
    async fn release_upload(&self, upload_id: &UploadId, task_id: &TaskId) -> Result<(), StoreError>;
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

/// A job parked in the processing DLQ, as the watchdog peeks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `morag_reason` / `morag_detail` when a function parked it itself.
    pub reason: Option<String>,
}

/// Reading a dead-letter queue without consuming it: what is read stays
/// there (for `morag dlq redrive`).
#[async_trait]
pub trait DeadLetterPeek: Send + Sync {
    /// Up to `max` messages (at most 10), hidden for `hide_for` so the next
    /// peek sees others.
    async fn peek(&self, max: usize, hide_for: Duration) -> Result<Vec<DeadJob>, StoreError>;
    /// Makes peeked messages visible again now (in batches of ten); how many
    /// could not be released (they reappear when their hide ends).
    async fn release(&self, receipt_handles: &[String]) -> Result<usize, StoreError>;
}

/// Reading uploaded content (the processor).
#[async_trait]
pub trait BlobReader: Send + Sync {
    /// The object as a stream (`Ok(None)` if it does not exist).
    async fn open(&self, bucket: &str, key: &str) -> Result<Option<Blob>, StoreError>;
}

/// The uploads bucket.
#[async_trait]
pub trait BlobStore: Send + Sync {
    fn bucket(&self) -> &str;
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// A presigned PUT of exactly this object: its length, type and
    /// checksum (and the `pending` tag) are signed, so S3 refuses anything else.
    async fn presign_put(&self, upload: &Upload, expires_in: Duration) -> Result<PresignedPut, StoreError>;
    /// The object's size and checksum, `None` if it is not there.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// Marks an uploaded object as claimed by a task: the lifecycle rule for
    /// unclaimed uploads no longer applies to it.
    async fn mark_claimed(&self, key: &str) -> Result<(), StoreError>;
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

/// Webhook deliveries, stored beside their task.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Writes the deliveries an applied event left as fan-out markers (its
    /// deliveries did not fit its transaction, and the writer died before
    /// expanding them; see `TaskStore::apply_event`); answers how many were
    /// written (0: none left). Safe to call concurrently and again.
    async fn expand_fanout(&self, task_id: &TaskId) -> Result<u32, StoreError>;
    /// Deliveries whose message was not (known to be) sent yet: the outbox.
    async fn unsent_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError>;
    async fn mark_enqueued(&self, task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<(), StoreError>;
    /// Marks an unsent `pending` delivery of `cycle` enqueued before its
    /// message is sent (`false`: sent, finished or restarted meanwhile):
    /// the watchdog's claim, so two runs send it once.
    async fn claim_unsent(&self, task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<bool, StoreError>;
    async fn get_delivery(&self, task_id: &TaskId, delivery_id: &DeliveryId) -> Result<Option<Delivery>, StoreError>;
    /// Appends an attempt and sets the state, if the delivery is still in
    /// `cycle` (`false`: redelivered meanwhile or gone, nothing written).
    /// `next_attempt`: when the queue brings the message back (a retry),
    /// `None` when the state is final; the watchdog looks again a grace
    /// period after it.
    async fn record_attempt(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        attempt: &Attempt,
        state: DeliveryState,
        next_attempt: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;
    /// Takes the task's next attempt number and writes `record` under it,
    /// kept until `expires_at`. Returns the number.
    async fn append_attempt_entry(
        &self,
        task_id: &TaskId,
        record: &AttemptRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// The task's attempt entries numbered after `after`, ascending, at most
    /// `limit`, strongly consistent (a number may be missing: see
    /// `domain::timeline::contiguous`).
    async fn attempt_entries(
        &self,
        task_id: &TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AttemptEntry>, StoreError>;
    /// Stores a delivery planned outside an event's transaction (an
    /// operational webhook), in the outbox; `false` if it exists.
    async fn insert_delivery(&self, delivery: &Delivery, expires_at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Those of `ids` that exist among the task's deliveries (eventually
    /// consistent), in no particular order.
    async fn get_deliveries(&self, task_id: &TaskId, ids: &[DeliveryId]) -> Result<Vec<Delivery>, StoreError>;
    /// A task's deliveries, newest first.
    async fn list_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError>;
    /// `restart_delivery`, only for an enqueued `pending` delivery whose
    /// index entry is still due at `now` (its message is gone); `None`
    /// otherwise.
    async fn restart_lost(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<Delivery>, StoreError>;
    /// Ends a `pending` delivery of `cycle` as `dead` without an attempt (its
    /// message is in the webhook DLQ); false if it has moved on.
    async fn give_up(&self, task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<bool, StoreError> {
        self.end_unattempted(task_id, delivery_id, cycle, DeliveryState::Dead)
            .await
    }
    /// Ends a `pending` delivery of `cycle` in `state` (`dead`,
    /// `superseded`: a newer delivery overtook it, `paused`: its endpoint is
    /// disabled) without an attempt, out of the outbox; false if it has
    /// moved on.
    async fn end_unattempted(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        state: DeliveryState,
    ) -> Result<bool, StoreError>;
    /// A `pending` delivery of `cycle` that waits (its endpoint's breaker
    /// or rate limit) until `until`: its due-index entry, if it has one,
    /// moves after it, so the watchdog does not take the wait for a lost
    /// message.
    async fn postpone(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Starts a fresh attempt cycle: state `pending`, cycle + 1, not enqueued
    /// (in the outbox, for the watchdog if the enqueue that follows fails).
    async fn restart_delivery(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
    ) -> Result<Option<Delivery>, StoreError>;
}

/// Tenants' webhook endpoints, and each endpoint's delivery log.
#[async_trait]
pub trait EndpointStore: Send + Sync {
    /// The tenant's endpoints, oldest first.
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError>;
    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError>;
    /// Stores a new endpoint.
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;
    /// Replaces an existing endpoint; `false` if it is gone.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;
    /// `false` if there was none.
    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError>;
    /// Writes an attempt's `change` to the endpoint's health, if the
    /// endpoint is still as the change assumed (`StartFailing`: not failing
    /// yet; `ProbeFailed`, `Healthy`: failing; `Disable`: enabled and
    /// failing since the same moment). `true` when written.
    async fn update_health(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        change: HealthChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Claims the failing endpoint's due probe for one delivery: its
    /// `probe_at` becomes `until` if it is still `expected` (and the
    /// endpoint failing and enabled); `false` when another delivery
    /// claimed it first or the streak ended.
    async fn claim_probe(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        expected: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Reserves the endpoint's next send slot under its rate limit (one
    /// attempt per `interval`, no burst): `now` if the last slot is at
    /// least `interval` old, else `interval` after the last reserved one.
    /// Atomic across every sender.
    async fn reserve_send(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        interval: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError>;
    /// One page of the endpoint's deliveries, newest first.
    async fn endpoint_deliveries(
        &self,
        id: &EndpointId,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Delivery>, StoreError>;
    /// One page of the endpoint's deliveries created at or after `since`,
    /// oldest first (a replay's order).
    async fn endpoint_deliveries_since(
        &self,
        id: &EndpointId,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Delivery>, StoreError>;
}

/// The webhook queue.
#[async_trait]
pub trait WebhookQueue: Send + Sync {
    async fn enqueue(&self, message: &DeliveryMessage) -> Result<(), StoreError>;
    /// Enqueues a message the queue hands out only after `delay` (at most
    /// 15 minutes, SQS's `DelaySeconds`): a paced replay.
    async fn enqueue_after(&self, message: &DeliveryMessage, delay: Duration) -> Result<(), StoreError>;
}

/// Sealing signing secrets at rest (KMS), bound to their tenant.
#[async_trait]
pub trait SecretCipher: Send + Sync {
    async fn seal(&self, tenant: &TenantId, plaintext: &str) -> Result<String, StoreError>;
    async fn open(&self, tenant: &TenantId, sealed: &str) -> Result<String, StoreError>;
}

/// Tenants' webhook signing: the `whsec_` secret (`v1`), the `whsk_` key
/// (`v1a`) and which of the two sign.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The tenant's signing, `None` if it has none yet. A previous value
    /// whose overlap has ended may be left out (it signs nothing).
    async fn tenant_secrets(&self, tenant: &TenantId) -> Result<Option<TenantSecrets>, StoreError>;

    /// Replaces the tenant's `which` credential with `new_value`; the old one
    /// keeps signing until `overlap_until` (`None`: it stops at once). The
    /// other credential and the schemes are kept. A tenant without any
    /// signing gets `new_value` as its first secret (`Credential::Secret`
    /// only). A rotation that raced another fails as `Conflict`, writing
    /// nothing. Answers the signing as stored.
    async fn rotate(
        &self,
        tenant: &TenantId,
        which: Credential,
        new_value: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<TenantSecrets, StoreError>;

    /// Stores the tenant's first secret and signing key (schemes: `v1`);
    /// `false` (nothing written) if it already has signing.
    async fn provision(&self, tenant: &TenantId, secret: &str, signing_key: &str) -> Result<bool, StoreError>;

    /// Sets which schemes sign (`None`: unchanged) and gives a tenant that
    /// has no signing key `new_key` (an existing key is kept). The tenant
    /// must have signing (see [`SecretStore::secrets_or_provision`]).
    /// Answers the signing as stored.
    async fn configure(
        &self,
        tenant: &TenantId,
        schemes: Option<Schemes>,
        new_key: &str,
    ) -> Result<TenantSecrets, StoreError>;

    /// [`SecretStore::rotate`] of the `whsec_` secret.
    async fn rotate_secret(
        &self,
        tenant: &TenantId,
        new_secret: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<TenantSecrets, StoreError> {
        self.rotate(tenant, Credential::Secret, new_secret, overlap_until).await
    }

    /// The tenant's signing, giving it a first secret and key if it has none
    /// (callers racing agree on one: the conditional write picks it).
    /// `true` when this call created it.
    async fn secrets_or_provision(&self, tenant: &TenantId) -> Result<(TenantSecrets, bool), StoreError> {
        use crate::domain::delivery::{AsymmetricKey, SigningSecret};
        if let Some(s) = self.tenant_secrets(tenant).await? {
            return Ok((s, false));
        }
        let created = self
            .provision(tenant, &SigningSecret::generate(), &AsymmetricKey::generate())
            .await?;
        match self.tenant_secrets(tenant).await? {
            Some(s) => Ok((s, created)),
            None => Err(StoreError::Conflict {
                op: "provision",
                detail: format!("tenant {tenant}'s signing vanished right after it was provisioned"),
            }),
        }
    }
}

/// Changing when a received message comes back (the webhook queue's backoff).
#[async_trait]
pub trait Visibility: Send + Sync {
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError>;
}
