//! Tasks and their history: the task item, history items (GSI1: a tenant's
//! recent events by hour bucket), the tenant's task listing (GSI2/GSI3).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fanout::{delivery_writes, item_size, DeliveryWrites};
use super::watch::{due_pk, due_sk};
use super::{from_item, n, s, settle, task_pk, to_item, Condition, DynamoStore, Item, TASK_SK};
use crate::domain::lifecycle::HISTORY_LIMIT;
use crate::domain::task::{DEFAULT_HEARTBEAT_TIMEOUT_S, DEFAULT_TIMEOUT_S};
use crate::domain::watch;
use crate::domain::{
    ApplyOutcome, CreateOutcome, Delivery, HistoryEntry, IdempotencyRecord, Page, PageKey, RecentEvent, Retention,
    Source, SourceType, Task, TaskId, TaskStatus, TenantId, UploadId, WebhookEvent,
};
use crate::error::StoreError;
use crate::ports::TaskStore;
use crate::time::{hour_bucket, sort_ts};

/// The recent-events page key field that names the hour bucket to continue in.
const BUCKET_FIELD: &str = "bucket";

#[derive(Serialize, Deserialize)]
struct TaskItem {
    pk: String,
    sk: String,
    task_id: TaskId,
    tenant: TenantId,
    status: TaskStatus,
    progress: f64,
    message: String,
    source_type: SourceType,
    source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
    /// The client's metadata object as JSON text: kept verbatim (DynamoDB
    /// numbers and empty sets would not round-trip every JSON value).
    metadata: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed_at: Option<DateTime<Utc>>,
    /// JSON text, like `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    event_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_event_at: Option<DateTime<Utc>>,
    #[serde(default)]
    recent_event_ids: Vec<String>,
    #[serde(default = "all_webhook_events")]
    webhook_events: Vec<WebhookEvent>,
    #[serde(default)]
    milestones_sent: Vec<u8>,
    #[serde(default = "default_heartbeat")]
    heartbeat_timeout_s: u32,
    /// Missing on items written before deadlines existed: a day after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline_at: Option<DateTime<Utc>>,
    /// Missing on items written before it existed: their job was sent.
    #[serde(default = "yes")]
    job_enqueued: bool,
    /// TTL, set once the task has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    /// The due index (sparse): present while the task is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_sk: Option<String>,
    /// GSI2: the tenant's tasks, newest first.
    gsi2pk: String,
    gsi2sk: String,
    /// GSI3: the tenant's tasks in one status, newest first.
    gsi3pk: String,
    gsi3sk: String,
}

impl TaskItem {
    fn from_task(t: &Task, expires_at: Option<i64>) -> Self {
        let created = format!("{}#{}", sort_ts(t.created_at), t.task_id);
        let (due_pk, due_sk) = match watch::next_check(t) {
            Some(when) => (Some(due_pk(watch::shard(&t.task_id))), Some(due_sk(when, &t.task_id))),
            None => (None, None),
        };
        Self {
            pk: task_pk(&t.task_id),
            sk: TASK_SK.to_owned(),
            task_id: t.task_id,
            tenant: t.tenant.clone(),
            status: t.status,
            progress: t.progress,
            message: t.message.clone(),
            source_type: t.source_type,
            source: t.source.clone(),
            webhook_url: t.webhook_url.clone(),
            metadata: Value::Object(t.metadata.clone()).to_string(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            started_at: t.started_at,
            completed_at: t.completed_at,
            result: t.result.as_ref().map(Value::to_string),
            error: t.error.clone(),
            event_seq: t.event_seq,
            last_event_at: t.last_event_at,
            recent_event_ids: t.recent_event_ids.clone(),
            webhook_events: t.webhook_events.clone(),
            milestones_sent: t.milestones_sent.clone(),
            heartbeat_timeout_s: t.heartbeat_timeout_s,
            deadline_at: Some(t.deadline_at),
            job_enqueued: t.job_enqueued,
            expires_at,
            due_pk,
            due_sk,
            gsi2pk: format!("TASKS#{}", t.tenant),
            gsi2sk: created.clone(),
            gsi3pk: format!("TASKS#{}#{}", t.tenant, t.status),
            gsi3sk: created,
        }
    }

    fn into_task(self) -> Result<Task, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "task item",
            detail,
        };
        let metadata: Map<String, Value> =
            serde_json::from_str(&self.metadata).map_err(|e| corrupt(format!("metadata: {e}")))?;
        let result = self
            .result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt(format!("result: {e}")))?;
        Ok(Task {
            task_id: self.task_id,
            tenant: self.tenant,
            status: self.status,
            progress: self.progress,
            message: self.message,
            source_type: self.source_type,
            source: self.source,
            webhook_url: self.webhook_url,
            metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            result,
            error: self.error,
            event_seq: self.event_seq,
            last_event_at: self.last_event_at,
            recent_event_ids: self.recent_event_ids,
            webhook_events: self.webhook_events,
            milestones_sent: self.milestones_sent,
            heartbeat_timeout_s: self.heartbeat_timeout_s,
            deadline_at: self
                .deadline_at
                .unwrap_or(self.created_at + Duration::seconds(i64::from(DEFAULT_TIMEOUT_S))),
            job_enqueued: self.job_enqueued,
        })
    }
}

fn all_webhook_events() -> Vec<WebhookEvent> {
    WebhookEvent::ALL.to_vec()
}

fn default_heartbeat() -> u32 {
    DEFAULT_HEARTBEAT_TIMEOUT_S
}

fn yes() -> bool {
    true
}

fn history_sk(seq: u64) -> String {
    format!("EVENT#{seq:010}")
}

#[derive(Serialize, Deserialize)]
pub(super) struct HistoryItem {
    pk: String,
    sk: String,
    task_id: TaskId,
    tenant: TenantId,
    seq: u64,
    event_id: String,
    timestamp: DateTime<Utc>,
    status: TaskStatus,
    progress: f64,
    message: String,
    /// JSON text, like the task's metadata.
    metadata: String,
    /// GSI1: `RECENT#{tenant}#{yyyy-mm-ddThh}` / `{timestamp}#{task_id}#{seq}`
    gsi1pk: String,
    gsi1sk: String,
    expires_at: i64,
}

impl HistoryItem {
    pub(super) fn new(task: &Task, e: &HistoryEntry, expires_at: i64) -> Self {
        Self {
            pk: task_pk(&task.task_id),
            sk: history_sk(e.seq),
            task_id: task.task_id,
            tenant: task.tenant.clone(),
            seq: e.seq,
            event_id: e.event_id.clone(),
            timestamp: e.timestamp,
            status: e.status,
            progress: e.progress,
            message: e.message.clone(),
            metadata: Value::Object(e.metadata.clone()).to_string(),
            gsi1pk: format!("RECENT#{}#{}", task.tenant, hour_bucket(e.timestamp)),
            gsi1sk: format!("{}#{}#{:010}", sort_ts(e.timestamp), task.task_id, e.seq),
            expires_at,
        }
    }

    fn into_recent(self) -> Result<RecentEvent, StoreError> {
        let metadata = serde_json::from_str(&self.metadata).map_err(|e| StoreError::Corrupt {
            what: "history item",
            detail: format!("metadata: {e}"),
        })?;
        Ok(RecentEvent {
            task_id: self.task_id,
            entry: HistoryEntry {
                seq: self.seq,
                event_id: self.event_id,
                timestamp: self.timestamp,
                status: self.status,
                progress: self.progress,
                message: self.message,
                metadata,
            },
        })
    }
}

impl DynamoStore {
    /// One hour bucket of a tenant's events at or after `since`, newest first.
    async fn recent_in_bucket(
        &self,
        tenant: &TenantId,
        bucket: DateTime<Utc>,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<RecentEvent>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("gsi1pk = :pk AND gsi1sk >= :since")
            .expression_attribute_values(":pk", s(format!("RECENT#{tenant}#{}", hour_bucket(bucket))))
            .expression_attribute_values(":since", s(sort_ts(since)));
        self.newest_first(query, limit, start, |i| {
            from_item::<HistoryItem>(i, "history item").and_then(HistoryItem::into_recent)
        })
        .await
    }
}

impl DynamoStore {
    /// An `UpdateItem` on a task item if `condition` holds (`false`: it did not).
    async fn update_task(&self, task_id: &TaskId, update: &str, condition: Condition) -> Result<bool, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_pk(task_id)))
            .key("sk", s(TASK_SK))
            .update_expression(update)
            .set_condition_expression(condition.expression())
            .set_expression_attribute_names(condition.names())
            .set_expression_attribute_values(condition.values())
            .send()
            .await;
        Ok(settle("UpdateItem", sent)?.is_some())
    }
}

/// A recent-events position: the hour bucket and, within it, DynamoDB's key.
fn bucket_key(bucket: DateTime<Utc>, key: Option<PageKey>) -> PageKey {
    let mut fields = key.map(|k| k.0).unwrap_or_default();
    fields.insert(BUCKET_FIELD.to_owned(), sort_ts(bucket));
    PageKey(fields)
}

fn open_bucket_key(key: PageKey) -> Result<(DateTime<Utc>, Option<PageKey>), StoreError> {
    let mut fields = key.0;
    let bucket = fields
        .remove(BUCKET_FIELD)
        .and_then(|b| DateTime::parse_from_rfc3339(&b).ok())
        .map(|b| b.with_timezone(&Utc))
        .ok_or_else(|| StoreError::Corrupt {
            what: "recent events position",
            detail: "no hour bucket".to_owned(),
        })?;
    Ok((bucket, (!fields.is_empty()).then_some(PageKey(fields))))
}

impl DynamoStore {
    /// The event's transaction (`TaskStore::apply_event` without the second
    /// fan-out stage): `None` if the task changed since `before` was read,
    /// else the fan-out markers it wrote (none if its deliveries fit).
    pub(super) async fn write_event(
        &self,
        before: &Task,
        after: &Task,
        entry: &HistoryEntry,
        deliveries: &[Delivery],
        retention: &Retention,
    ) -> Result<Option<Vec<Item>>, StoreError> {
        let now = crate::time::now();
        let task_expires = after
            .status
            .is_terminal()
            .then(|| (after.completed_at.unwrap_or(now) + crate::time::span(retention.ended_task)).timestamp());
        let history_expires = (now + crate::time::span(retention.history)).timestamp();
        let not_there = || Some(Condition::new("attribute_not_exists(pk)"));
        let task_item = to_item(&TaskItem::from_task(after, task_expires), "task item")?;
        let history_item = to_item(&HistoryItem::new(after, entry, history_expires), "history item")?;
        let trim = entry.seq > HISTORY_LIMIT;
        let fixed = 2 + usize::from(trim);
        let writes = delivery_writes(
            fixed,
            item_size(&task_item) + item_size(&history_item),
            deliveries,
            history_expires,
        )?;
        let mut items = vec![
            self.tx_put(
                task_item,
                Some(Condition::new("attribute_exists(pk) AND event_seq = :seq").value(":seq", n(before.event_seq))),
            )?,
            self.tx_put(history_item, not_there())?,
        ];
        for item in writes.items() {
            items.push(self.tx_put(item.clone(), not_there())?);
        }
        if trim {
            items.push(self.tx_delete(task_pk(&after.task_id), &history_sk(entry.seq - HISTORY_LIMIT), None)?);
        }
        if !self.transact(items).await? {
            return Ok(None);
        }
        Ok(Some(match writes {
            DeliveryWrites::Deferred(markers) => markers,
            DeliveryWrites::Inline(_) => Vec::new(),
        }))
    }
}

/// A history item as its entry (the history and the timeline).
fn history_entry(item: Item) -> Result<HistoryEntry, StoreError> {
    from_item::<HistoryItem>(item, "history item")
        .and_then(HistoryItem::into_recent)
        .map(|r| r.entry)
}

#[async_trait]
impl TaskStore for DynamoStore {
    async fn create_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<CreateOutcome, StoreError> {
        let task_item = to_item(&TaskItem::from_task(task, None), "task item")?;
        let Some(idem) = idem else {
            let sent = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(task_item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match settle("PutItem", sent)? {
                Some(_) => Ok(CreateOutcome::Created),
                None => Err(StoreError::Conflict {
                    op: "PutItem",
                    detail: format!("task {} already exists", task.task_id),
                }),
            };
        };
        let put_task = self.tx_put(task_item, Some(Condition::new("attribute_not_exists(pk)")))?;
        self.create_in_transaction(put_task, Some(idem), None).await
    }

    async fn create_task_from_upload(
        &self,
        task: &Task,
        idem: Option<&IdempotencyRecord>,
        upload: &UploadId,
    ) -> Result<CreateOutcome, StoreError> {
        let task_item = to_item(&TaskItem::from_task(task, None), "task item")?;
        let put_task = self.tx_put(task_item, Some(Condition::new("attribute_not_exists(pk)")))?;
        let claim = self.claim_upload(task, upload)?;
        self.create_in_transaction(put_task, idem, Some(claim)).await
    }

    async fn discard_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<(), StoreError> {
        let mut items = vec![self.tx_delete(
            task_pk(&task.task_id),
            TASK_SK,
            Some(
                Condition::new("attribute_not_exists(pk) OR #status = :pending")
                    .name("#status", "status")
                    .value(":pending", s(TaskStatus::Pending.as_str())),
            ),
        )?];
        if let Some(idem) = idem {
            items.push(self.discard_idempotency(task, idem)?);
        }
        if !self.transact(items).await? {
            return Err(StoreError::Conflict {
                op: "TransactWriteItems",
                detail: format!("task {} is no longer pending", task.task_id),
            });
        }
        Ok(())
    }

    async fn get_task(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        match self.get(task_pk(task_id), TASK_SK).await? {
            None => Ok(None),
            Some(item) => from_item::<TaskItem>(item, "task item")?.into_task().map(Some),
        }
    }

    async fn apply_event(
        &self,
        before: &Task,
        after: &Task,
        entry: &HistoryEntry,
        deliveries: &[Delivery],
        retention: &Retention,
    ) -> Result<ApplyOutcome, StoreError> {
        let Some(markers) = self.write_event(before, after, entry, deliveries, retention).await? else {
            return Ok(ApplyOutcome::Conflict);
        };
        if !markers.is_empty() {
            let count = markers.len();
            let written = self.expand_items(markers).await?;
            tracing::info!(
                markers = count,
                deliveries = written,
                "event's fan-out written in a second stage"
            );
        }
        Ok(ApplyOutcome::Applied)
    }

    async fn mark_job_enqueued(&self, task: &Task) -> Result<bool, StoreError> {
        let marked = Task {
            job_enqueued: true,
            ..task.clone()
        };
        // written only while pending, and a pending task is always watched
        let when = watch::next_check(&marked).unwrap_or(task.deadline_at);
        let condition = Condition::new("#status = :pending")
            .name("#status", "status")
            .value(":pending", s(TaskStatus::Pending.as_str()))
            .value(":yes", AttributeValue::Bool(true))
            .value(":due_pk", s(due_pk(watch::shard(&task.task_id))))
            .value(":due_sk", s(due_sk(when, &task.task_id)));
        let update = "SET job_enqueued = :yes, due_pk = :due_pk, due_sk = :due_sk REMOVE requeue_lease";
        self.update_task(&task.task_id, update, condition).await
    }

    async fn claim_requeue(&self, task: &Task, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let condition = Condition::new(
            "#status = :pending AND job_enqueued = :no AND \
             (attribute_not_exists(requeue_lease) OR requeue_lease < :now)",
        )
        .name("#status", "status")
        .value(":pending", s(TaskStatus::Pending.as_str()))
        .value(":no", AttributeValue::Bool(false))
        .value(":now", s(sort_ts(now)))
        .value(":until", s(sort_ts(until)));
        self.update_task(&task.task_id, "SET requeue_lease = :until", condition)
            .await
    }

    async fn history(
        &self,
        task_id: &TaskId,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(task_pk(task_id)))
            .expression_attribute_values(":prefix", s("EVENT#"));
        self.newest_first(query, limit, start, history_entry).await
    }

    async fn events_after(&self, task_id: &TaskId, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let items = self.ascending(task_id, "EVENT#", history_sk(after + 1), limit).await?;
        items.into_iter().map(history_entry).collect()
    }

    /// One GSI1 query per hour bucket, newest first, stopping at the limit;
    /// the page key carries the bucket to continue in.
    async fn recent_events(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<RecentEvent>, StoreError> {
        let hour = Duration::hours(1);
        let truncate = |t: DateTime<Utc>| t.duration_trunc(hour).unwrap_or(t);
        let (mut bucket, mut key) = match start {
            Some(position) => open_bucket_key(position)?,
            None => (truncate(crate::time::now()), None),
        };
        let oldest = truncate(since);
        let mut items = Vec::new();
        while bucket >= oldest {
            let page = self
                .recent_in_bucket(tenant, bucket, since, limit - items.len(), key.take())
                .await?;
            items.extend(page.items);
            match page.next {
                Some(next) if items.len() >= limit => {
                    return Ok(Page {
                        items,
                        next: Some(bucket_key(bucket, Some(next))),
                    })
                }
                Some(next) => key = Some(next),
                None => {
                    bucket -= hour;
                    if items.len() >= limit {
                        let next = (bucket >= oldest).then(|| bucket_key(bucket, None));
                        return Ok(Page { items, next });
                    }
                }
            }
        }
        Ok(Page { items, next: None })
    }

    async fn list_tasks(
        &self,
        tenant: &TenantId,
        status: Option<TaskStatus>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Task>, StoreError> {
        let (index, pk_name, pk) = match status {
            None => ("GSI2", "gsi2pk", format!("TASKS#{tenant}")),
            Some(st) => ("GSI3", "gsi3pk", format!("TASKS#{tenant}#{st}")),
        };
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", s(pk));
        // the listing indexes hold keys only (updating a task rewrites no
        // index entry): the page's tasks are then read by key
        let keys = self.newest_first(query, limit, start, Ok).await?;
        let mut tasks = Vec::with_capacity(keys.items.len());
        for item in self.get_many(&keys.items).await? {
            let task = from_item::<TaskItem>(item, "task item").and_then(TaskItem::into_task)?;
            // the index lags the item: a task that has moved on since is not listed under its old status
            if status.is_none_or(|st| st == task.status) {
                tasks.push(task);
            }
        }
        Ok(Page {
            items: tasks,
            next: keys.next,
        })
    }

    async fn mark_idempotency_enqueued(
        &self,
        tenant: &TenantId,
        key_hash: &str,
        task_id: &TaskId,
    ) -> Result<(), StoreError> {
        self.idempotency_enqueued(tenant, key_hash, task_id).await
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key_hash: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.idempotency_record(tenant, key_hash).await
    }
}
