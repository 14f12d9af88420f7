//! The ports the domain talks through. Adapters: `adapters::dynamodb`,
//! `adapters::sqs`, `adapters::s3` (production) and `adapters::memory` (unit
//! tests).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::auth::KeyHash;
use crate::domain::{JobMessage, Task, TaskId, TenantId};
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

/// Task state (and idempotency records) in the table.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates the task, and the idempotency record with it when given, in one
    /// atomic write. Never overwrites an existing task.
    async fn create_task(
        &self,
        task: &Task,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome, StoreError>;

    /// Removes a task (and its idempotency record) created by a request that
    /// then failed before its job was enqueued. Only removes a task that is
    /// still `pending`.
    async fn discard_task(
        &self,
        task: &Task,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    async fn get_task(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// An unexpired idempotency record, if any.
    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key_hash: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// The processing queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends one job; returns the queue's message id.
    async fn enqueue(&self, job: &JobMessage) -> Result<String, StoreError>;
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
