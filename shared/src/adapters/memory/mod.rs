//! In-memory adapters for unit tests of domain and handler logic. Each can be
//! told to fail, to exercise what happens when a dependency is down. Built
//! only for tests (`test-support` feature), never into a release binary.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::lifecycle::HISTORY_LIMIT;
use crate::domain::{
    ApplyOutcome, Attempt, AttemptEntry, AttemptRecord, CreateOutcome, Delivery, DeliveryId, DeliveryState, Endpoint,
    HistoryEntry, IdempotencyRecord, Page, PageKey, RecentEvent, Retention, Task, TaskId, TaskStatus, TenantId, Upload,
    UploadId,
};
use crate::error::StoreError;
use crate::ports::{DeliveryStore, TaskStore, UploadStore};

mod blobs;
mod endpoints;
mod faults;
mod keys;
mod queues;

use faults::{down, lock};

pub use blobs::MemoryBlobStore;
pub use keys::{MemoryKeyStore, MemorySecretStore};
pub use queues::{MemoryDeadLetters, MemoryEventSink, MemoryJobQueue, MemoryVisibility, MemoryWebhookQueue};

#[derive(Default)]
pub struct MemoryTaskStore {
    pub tasks: Mutex<HashMap<TaskId, Task>>,
    pub idempotency: Mutex<HashMap<(TenantId, String), IdempotencyRecord>>,
    /// Oldest first, at most 100 per task.
    pub history: Mutex<HashMap<TaskId, Vec<HistoryEntry>>>,
    /// By delivery id.
    pub deliveries: Mutex<HashMap<DeliveryId, Delivery>>,
    /// Each task's timeline attempt entries, numbered from 1.
    pub attempt_entries: Mutex<HashMap<TaskId, Vec<AttemptEntry>>>,
    pub uploads: Mutex<HashMap<UploadId, Upload>>,
    /// Tenants' webhook endpoints, oldest first.
    pub endpoints: Mutex<Vec<Endpoint>>,
    /// Each rate-limited endpoint's last reserved slot end.
    pub send_slots: Mutex<HashMap<crate::domain::EndpointId, chrono::DateTime<chrono::Utc>>>,
    /// Fail every call.
    pub fail: AtomicBool,
    /// Fail only `discard_task` (the compensation after a failed enqueue).
    pub fail_discard: AtomicBool,
}

#[async_trait]
impl TaskStore for MemoryTaskStore {
    async fn create_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<CreateOutcome, StoreError> {
        down(&self.fail, "memory", "create_task")?;
        let mut tasks = lock(&self.tasks);
        let mut idems = lock(&self.idempotency);
        if let Some(idem) = idem {
            let k = (idem.tenant.clone(), idem.key_hash.clone());
            if let Some(existing) = idems.get(&k).filter(|r| r.expires_at > crate::time::now()) {
                return Ok(CreateOutcome::IdempotencyHit(existing.clone()));
            }
            idems.insert(k, idem.clone());
        }
        if tasks.contains_key(&task.task_id) {
            return Err(StoreError::Conflict {
                op: "create_task",
                detail: "exists".into(),
            });
        }
        tasks.insert(task.task_id, task.clone());
        Ok(CreateOutcome::Created)
    }

    async fn create_task_from_upload(
        &self,
        task: &Task,
        idem: Option<&IdempotencyRecord>,
        upload: &UploadId,
    ) -> Result<CreateOutcome, StoreError> {
        down(&self.fail, "memory", "create_task_from_upload")?;
        {
            let uploads = lock(&self.uploads);
            let claimable = uploads
                .get(upload)
                .is_some_and(|u| u.tenant == task.tenant && u.task_id.is_none());
            if !claimable {
                return Ok(CreateOutcome::UploadUnavailable);
            }
        }
        let outcome = self.create_task(task, idem).await?;
        if outcome == CreateOutcome::Created {
            if let Some(u) = lock(&self.uploads).get_mut(upload) {
                u.task_id = Some(task.task_id);
            }
        }
        Ok(outcome)
    }

    async fn discard_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<(), StoreError> {
        down(&self.fail, "memory", "discard_task")?;
        down(&self.fail_discard, "memory", "discard_task")?;
        let mut tasks = lock(&self.tasks);
        if tasks
            .get(&task.task_id)
            .is_some_and(|t| t.status == TaskStatus::Pending)
        {
            tasks.remove(&task.task_id);
        }
        if let Some(idem) = idem {
            lock(&self.idempotency).remove(&(idem.tenant.clone(), idem.key_hash.clone()));
        }
        Ok(())
    }

    async fn get_task(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        down(&self.fail, "memory", "get_task")?;
        Ok(lock(&self.tasks).get(task_id).cloned())
    }

    async fn apply_event(
        &self,
        before: &Task,
        after: &Task,
        entry: &HistoryEntry,
        deliveries: &[Delivery],
        _retention: &Retention,
    ) -> Result<ApplyOutcome, StoreError> {
        down(&self.fail, "memory", "apply_event")?;
        let mut tasks = lock(&self.tasks);
        match tasks.get(&before.task_id) {
            Some(current) if current.event_seq == before.event_seq => {}
            _ => return Ok(ApplyOutcome::Conflict),
        }
        tasks.insert(after.task_id, after.clone());
        let mut history = lock(&self.history);
        let entries = history.entry(after.task_id).or_default();
        entries.push(entry.clone());
        entries.retain(|e| e.seq + HISTORY_LIMIT > entry.seq);
        let mut stored = lock(&self.deliveries);
        for d in deliveries {
            stored.entry(d.delivery_id.clone()).or_insert_with(|| d.clone());
        }
        Ok(ApplyOutcome::Applied)
    }

    async fn history(
        &self,
        task_id: &TaskId,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        down(&self.fail, "memory", "history")?;
        let mut all: Vec<HistoryEntry> = lock(&self.history).get(task_id).cloned().unwrap_or_default();
        all.reverse();
        Ok(paginate(all, limit, start))
    }

    async fn events_after(&self, task_id: &TaskId, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        down(&self.fail, "memory", "events_after")?;
        let all = lock(&self.history);
        let kept = all.get(task_id).map(Vec::as_slice).unwrap_or_default();
        Ok(kept.iter().filter(|e| e.seq > after).take(limit).cloned().collect())
    }

    async fn recent_events(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<RecentEvent>, StoreError> {
        down(&self.fail, "memory", "recent_events")?;
        let tasks = lock(&self.tasks);
        let mut all: Vec<RecentEvent> = lock(&self.history)
            .iter()
            .filter(|(id, _)| tasks.get(id).is_some_and(|t| &t.tenant == tenant))
            .flat_map(|(id, entries)| {
                entries.iter().map(|e| RecentEvent {
                    task_id: *id,
                    entry: e.clone(),
                })
            })
            .filter(|r| r.entry.timestamp >= since)
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.entry.timestamp));
        Ok(paginate(all, limit, start))
    }

    async fn list_tasks(
        &self,
        tenant: &TenantId,
        status: Option<TaskStatus>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Task>, StoreError> {
        down(&self.fail, "memory", "list_tasks")?;
        let mut all: Vec<Task> = lock(&self.tasks)
            .values()
            .filter(|t| &t.tenant == tenant && status.is_none_or(|s| t.status == s))
            .cloned()
            .collect();
        all.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        Ok(paginate(all, limit, start))
    }

    async fn mark_idempotency_enqueued(
        &self,
        tenant: &TenantId,
        key_hash: &str,
        task_id: &TaskId,
    ) -> Result<(), StoreError> {
        down(&self.fail, "memory", "mark_idempotency_enqueued")?;
        if let Some(r) = lock(&self.idempotency)
            .get_mut(&(tenant.clone(), key_hash.to_owned()))
            .filter(|r| r.task_id == *task_id)
        {
            r.state = crate::domain::IdempotencyState::Enqueued;
        }
        Ok(())
    }

    async fn mark_job_enqueued(&self, task: &Task) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "mark_job_enqueued")?;
        Ok(lock(&self.tasks)
            .get_mut(&task.task_id)
            .filter(|t| t.status == crate::domain::TaskStatus::Pending)
            .map(|t| t.job_enqueued = true)
            .is_some())
    }

    async fn claim_requeue(
        &self,
        task: &Task,
        _now: chrono::DateTime<chrono::Utc>,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "claim_requeue")?;
        Ok(lock(&self.tasks)
            .get(&task.task_id)
            .is_some_and(|t| t.status == crate::domain::TaskStatus::Pending && !t.job_enqueued))
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key_hash: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        down(&self.fail, "memory", "get_idempotency")?;
        Ok(lock(&self.idempotency)
            .get(&(tenant.clone(), key_hash.to_owned()))
            .filter(|r| r.expires_at > crate::time::now())
            .cloned())
    }
}

#[async_trait]
impl UploadStore for MemoryTaskStore {
    async fn put_upload(&self, upload: &Upload) -> Result<(), StoreError> {
        down(&self.fail, "memory", "put_upload")?;
        lock(&self.uploads).insert(upload.upload_id.clone(), upload.clone());
        Ok(())
    }

    async fn get_upload(&self, upload_id: &UploadId) -> Result<Option<Upload>, StoreError> {
        down(&self.fail, "memory", "get_upload")?;
        Ok(lock(&self.uploads).get(upload_id).cloned())
    }

    async fn release_upload(&self, upload_id: &UploadId, task_id: &TaskId) -> Result<(), StoreError> {
        down(&self.fail, "memory", "release_upload")?;
        if let Some(u) = lock(&self.uploads)
            .get_mut(upload_id)
            .filter(|u| u.task_id == Some(*task_id))
        {
            u.task_id = None;
        }
        Ok(())
    }
}

fn paginate<T>(all: Vec<T>, limit: usize, start: Option<PageKey>) -> Page<T> {
    let offset: usize = start
        .and_then(|k| k.0.get("offset").and_then(|o| o.parse().ok()))
        .unwrap_or(0);
    let total = all.len();
    let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
    let end = offset + items.len();
    let next = (end < total).then(|| PageKey([("offset".to_owned(), end.to_string())].into_iter().collect()));
    Page { items, next }
}

impl MemoryTaskStore {
    fn end_pending(&self, delivery_id: &DeliveryId, cycle: u32, state: DeliveryState) -> bool {
        lock(&self.deliveries)
            .get_mut(delivery_id)
            .filter(|d| d.state == DeliveryState::Pending && d.cycle == cycle)
            .map(|d| d.state = state)
            .is_some()
    }
}

#[async_trait]
impl DeliveryStore for MemoryTaskStore {
    /// The memory store writes every delivery with its event: no markers.
    async fn expand_fanout(&self, _task_id: &TaskId) -> Result<u32, StoreError> {
        down(&self.fail, "memory", "expand_fanout")?;
        Ok(0)
    }

    async fn insert_delivery(&self, delivery: &Delivery, _expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "insert_delivery")?;
        let mut all = lock(&self.deliveries);
        if all.contains_key(&delivery.delivery_id) {
            return Ok(false);
        }
        all.insert(delivery.delivery_id.clone(), delivery.clone());
        Ok(true)
    }

    async fn unsent_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        down(&self.fail, "memory", "unsent_deliveries")?;
        Ok(lock(&self.deliveries)
            .values()
            .filter(|d| &d.task_id == task_id && !d.enqueued && d.state == DeliveryState::Pending)
            .cloned()
            .collect())
    }

    async fn mark_enqueued(&self, _task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<(), StoreError> {
        down(&self.fail, "memory", "mark_enqueued")?;
        if let Some(d) = lock(&self.deliveries).get_mut(delivery_id).filter(|d| d.cycle == cycle) {
            d.enqueued = true;
        }
        Ok(())
    }

    async fn claim_unsent(&self, _task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "claim_unsent")?;
        Ok(lock(&self.deliveries)
            .get_mut(delivery_id)
            .filter(|d| d.cycle == cycle && d.state == DeliveryState::Pending && !d.enqueued)
            .map(|d| d.enqueued = true)
            .is_some())
    }

    async fn get_delivery(&self, _task_id: &TaskId, delivery_id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        down(&self.fail, "memory", "get_delivery")?;
        Ok(lock(&self.deliveries).get(delivery_id).cloned())
    }

    async fn record_attempt(
        &self,
        _task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        attempt: &Attempt,
        state: DeliveryState,
        _next_attempt: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "record_attempt")?;
        let mut all = lock(&self.deliveries);
        let Some(d) = all.get_mut(delivery_id).filter(|d| d.cycle == cycle) else {
            return Ok(false);
        };
        d.push_attempt(attempt.clone());
        d.state = state;
        Ok(true)
    }

    async fn append_attempt_entry(
        &self,
        task_id: &TaskId,
        record: &AttemptRecord,
        _expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        down(&self.fail, "memory", "append_attempt_entry")?;
        let mut all = lock(&self.attempt_entries);
        let entries = all.entry(*task_id).or_default();
        let n = entries.len() as u64 + 1;
        entries.push(AttemptEntry {
            n,
            recorded_at: crate::time::now(),
            record: record.clone(),
        });
        Ok(n)
    }

    async fn attempt_entries(
        &self,
        task_id: &TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AttemptEntry>, StoreError> {
        down(&self.fail, "memory", "attempt_entries")?;
        let all = lock(&self.attempt_entries);
        let kept = all.get(task_id).map(Vec::as_slice).unwrap_or_default();
        Ok(kept.iter().filter(|e| e.n > after).take(limit).cloned().collect())
    }

    async fn get_deliveries(&self, task_id: &TaskId, ids: &[DeliveryId]) -> Result<Vec<Delivery>, StoreError> {
        down(&self.fail, "memory", "get_deliveries")?;
        let all = lock(&self.deliveries);
        Ok(ids
            .iter()
            .filter_map(|id| all.get(id).filter(|d| &d.task_id == task_id).cloned())
            .collect())
    }

    async fn list_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        down(&self.fail, "memory", "list_deliveries")?;
        let mut all: Vec<Delivery> = lock(&self.deliveries)
            .values()
            .filter(|d| &d.task_id == task_id)
            .cloned()
            .collect();
        all.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(all)
    }

    async fn restart_lost(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Delivery>, StoreError> {
        let lost = lock(&self.deliveries)
            .get(delivery_id)
            .is_some_and(|d| d.state == DeliveryState::Pending && d.enqueued);
        if !lost {
            return Ok(None);
        }
        self.restart_delivery(task_id, delivery_id).await
    }

    async fn end_unattempted(
        &self,
        _task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        state: DeliveryState,
    ) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "end_unattempted")?;
        Ok(self.end_pending(delivery_id, cycle, state))
    }

    async fn postpone(
        &self,
        _task_id: &TaskId,
        _delivery_id: &DeliveryId,
        _cycle: u32,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        // no due index here
        down(&self.fail, "memory", "postpone")
    }

    async fn restart_delivery(
        &self,
        _task_id: &TaskId,
        delivery_id: &DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        down(&self.fail, "memory", "restart_delivery")?;
        Ok(lock(&self.deliveries).get_mut(delivery_id).map(|d| {
            d.cycle += 1;
            d.state = DeliveryState::Pending;
            d.enqueued = false;
            d.clone()
        }))
    }
}
