//! The table: tasks, idempotency records and API keys. Item mapping lives
//! here only, through `serde_dynamo`.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | task | `TASK#{task_id}` | `STATE` |
//! | idempotency record | `IDEM#{tenant}#{sha256(key)}` | `IDEM` |
//! | API key | `APIKEY#{sha256(key)}` | `KEY` |
//! | tenant's key index | `TENANT#{tenant}` | `APIKEY#{sha256(key)}` |
//!
//! `expires_at` (epoch seconds) is the table's TTL attribute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::KeyHash;
use crate::domain::lifecycle::HISTORY_LIMIT;
use crate::domain::{HistoryEntry, Source, SourceType, Task, TaskId, TaskStatus, TenantId};
use crate::error::StoreError;
use crate::ports::{
    ApiKeyRecord, ApplyOutcome, Attempt, CreateOutcome, Delivery, DeliveryState, DeliveryStore, IdempotencyRecord,
    KeyStore, Page, PageKey, RecentEvent, Retention, SecretStore, TaskStore,
};
use crate::time::sort_ts;
use crate::webhook::WebhookEvent;

type Item = HashMap<String, AttributeValue>;

pub fn task_pk(id: &TaskId) -> String {
    format!("TASK#{id}")
}
pub const TASK_SK: &str = "STATE";

fn idem_pk(tenant: &TenantId, key_hash: &str) -> String {
    format!("IDEM#{tenant}#{key_hash}")
}
const IDEM_SK: &str = "IDEM";

fn apikey_pk(hash: &KeyHash) -> String {
    format!("APIKEY#{}", hash.as_hex())
}
const APIKEY_SK: &str = "KEY";

fn tenant_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn unavailable<E>(op: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::unavailable("dynamodb", op, DisplayErrorContext(e))
}

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
    /// TTL, set once the task has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
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
            expires_at,
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
        })
    }
}

fn all_webhook_events() -> Vec<WebhookEvent> {
    WebhookEvent::ALL.to_vec()
}

fn history_sk(seq: u64) -> String {
    format!("EVENT#{seq:010}")
}

#[derive(Serialize, Deserialize)]
struct HistoryItem {
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
    fn new(task: &Task, e: &HistoryEntry, expires_at: i64) -> Self {
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
            gsi1pk: format!("RECENT#{}#{}", task.tenant, crate::time::hour_bucket(e.timestamp)),
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

fn to_page_key(key: Option<Item>) -> Option<PageKey> {
    key.map(|k| {
        PageKey(
            k.into_iter()
                .filter_map(|(name, v)| v.as_s().ok().map(|s| (name, s.clone())))
                .collect(),
        )
    })
}

fn from_page_key(key: Option<PageKey>) -> Option<Item> {
    key.map(|k| k.0.into_iter().map(|(name, v)| (name, s(v))).collect())
}

fn delivery_sk(delivery_id: &str) -> String {
    format!("DELIVERY#{delivery_id}")
}

#[derive(Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    task_id: TaskId,
    tenant: TenantId,
    delivery_id: String,
    event_type: WebhookEvent,
    url: String,
    payload: String,
    state: DeliveryState,
    created_at: DateTime<Utc>,
    enqueued: bool,
    cycle: u32,
    #[serde(default)]
    attempts: Vec<Attempt>,
    expires_at: i64,
}

impl DeliveryItem {
    fn new(d: &Delivery, expires_at: i64) -> Self {
        Self {
            pk: task_pk(&d.task_id),
            sk: delivery_sk(&d.delivery_id),
            task_id: d.task_id,
            tenant: d.tenant.clone(),
            delivery_id: d.delivery_id.clone(),
            event_type: d.event_type,
            url: d.url.clone(),
            payload: d.payload.clone(),
            state: d.state,
            created_at: d.created_at,
            enqueued: d.enqueued,
            cycle: d.cycle,
            attempts: d.attempts.clone(),
            expires_at,
        }
    }

    fn into_delivery(self) -> Delivery {
        Delivery {
            task_id: self.task_id,
            tenant: self.tenant,
            delivery_id: self.delivery_id,
            event_type: self.event_type,
            url: self.url,
            payload: self.payload,
            state: self.state,
            created_at: self.created_at,
            enqueued: self.enqueued,
            cycle: self.cycle,
            attempts: self.attempts,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SecretItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_until: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

fn secret_pk(tenant: &TenantId) -> String {
    format!("WHSECRET#{tenant}")
}

#[derive(Serialize, Deserialize)]
struct IdemItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    key_hash: String,
    fingerprint: String,
    task_id: TaskId,
    created_at: DateTime<Utc>,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    key_hash: String,
    tenant: TenantId,
    created_at: DateTime<Utc>,
    #[serde(default)]
    description: String,
}

impl ApiKeyItem {
    fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        let key_hash = KeyHash::from_hex(&self.key_hash).ok_or_else(|| StoreError::Corrupt {
            what: "api key item",
            detail: "key_hash is not a SHA-256 hex digest".to_owned(),
        })?;
        Ok(ApiKeyRecord {
            key_hash,
            tenant: self.tenant,
            created_at: self.created_at,
            description: self.description,
        })
    }
}

fn to_item<T: Serialize>(value: &T, what: &'static str) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn from_item<T: for<'de> Deserialize<'de>>(item: Item, what: &'static str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// The table, through the DynamoDB API.
#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Items DynamoDB evaluated for this store's queries (`ScannedCount`).
    scanned: Arc<AtomicU64>,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            scanned: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Items DynamoDB evaluated for this store's queries so far: what a
    /// query costs, whatever the emulator's speed.
    pub fn items_scanned(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }

    fn count_scanned(&self, n: i32) {
        self.scanned.fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
    }

    /// Runs a key-condition query newest first, one page of at most `limit`
    /// items from `start`, counting what DynamoDB evaluated.
    async fn newest_first<T>(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: usize,
        start: Option<PageKey>,
        map: impl Fn(Item) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let out = query
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(from_page_key(start))
            .send()
            .await
            .map_err(unavailable("Query"))?;
        self.count_scanned(out.scanned_count);
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(map)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: to_page_key(out.last_evaluated_key),
        })
    }

    /// Writes history entries directly (25 per `BatchWriteItem`), without
    /// touching the task: for benchmarks and backfills only.
    pub async fn load_history(&self, task: &Task, entries: &[HistoryEntry], expires_at: i64) -> Result<(), StoreError> {
        for chunk in entries.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for e in chunk {
                let item = to_item(&HistoryItem::new(task, e, expires_at), "history item")?;
                let put = aws_sdk_dynamodb::types::PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(unavailable("BatchWriteItem"))?;
                requests.push(
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .put_request(put)
                        .build(),
                );
            }
            let mut pending = Some(HashMap::from([(self.table.clone(), requests)]));
            while let Some(items) = pending.take().filter(|p| p.values().any(|v| !v.is_empty())) {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(items))
                    .send()
                    .await
                    .map_err(unavailable("BatchWriteItem"))?;
                pending = out.unprocessed_items;
            }
        }
        Ok(())
    }

    async fn get(&self, pk: String, sk: &str, op: &'static str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable(op))?;
        Ok(out.item)
    }
}

#[async_trait]
impl TaskStore for DynamoStore {
    async fn create_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<CreateOutcome, StoreError> {
        let task_item = to_item(&TaskItem::from_task(task, None), "task item")?;
        let Some(idem) = idem else {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(task_item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match result {
                Ok(_) => Ok(CreateOutcome::Created),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    Err(StoreError::Conflict {
                        op: "PutItem",
                        detail: format!("task {} already exists", task.task_id),
                    })
                }
                Err(e) => Err(unavailable("PutItem")(e)),
            };
        };

        let idem_item = to_item(
            &IdemItem {
                pk: idem_pk(&idem.tenant, &idem.key_hash),
                sk: IDEM_SK.to_owned(),
                tenant: idem.tenant.clone(),
                key_hash: idem.key_hash.clone(),
                fingerprint: idem.fingerprint.clone(),
                task_id: idem.task_id,
                created_at: idem.created_at,
                expires_at: idem.expires_at.timestamp(),
            },
            "idempotency item",
        )?;
        let put_task = Put::builder()
            .table_name(&self.table)
            .set_item(Some(task_item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let put_idem = Put::builder()
            .table_name(&self.table)
            .set_item(Some(idem_item))
            // an expired record (TTL deletion lags) may be replaced
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", AttributeValue::N(crate::time::now().timestamp().to_string()))
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_task).build())
            .transact_items(TransactWriteItem::builder().put(put_idem).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e) => {
                let idem_conflict = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                            Some(c.cancellation_reasons().get(1).and_then(|r| r.code()) == Some("ConditionalCheckFailed"))
                        }
                        _ => None,
                    })
                    .unwrap_or(false);
                if !idem_conflict {
                    return Err(unavailable("TransactWriteItems")(e));
                }
                match self.get_idempotency(&idem.tenant, &idem.key_hash).await? {
                    Some(existing) => Ok(CreateOutcome::IdempotencyHit(existing)),
                    None => Err(StoreError::Conflict {
                        op: "TransactWriteItems",
                        detail: "idempotency record changed concurrently".to_owned(),
                    }),
                }
            }
        }
    }

    async fn discard_task(&self, task: &Task, idem: Option<&IdempotencyRecord>) -> Result<(), StoreError> {
        let delete_task = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(task_pk(&task.task_id)))
            .key("sk", s(TASK_SK))
            .condition_expression("attribute_not_exists(pk) OR #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(TaskStatus::Pending.as_str()))
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete_task).build());
        if let Some(idem) = idem {
            let delete_idem = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(idem_pk(&idem.tenant, &idem.key_hash)))
                .key("sk", s(IDEM_SK))
                .condition_expression("attribute_not_exists(pk) OR task_id = :task")
                .expression_attribute_values(":task", s(task.task_id.to_string()))
                .build()
                .map_err(unavailable("TransactWriteItems"))?;
            tx = tx.transact_items(TransactWriteItem::builder().delete(delete_idem).build());
        }
        tx.send().await.map_err(unavailable("TransactWriteItems"))?;
        Ok(())
    }

    async fn get_task(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        match self.get(task_pk(task_id), TASK_SK, "GetItem").await? {
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
        let now = crate::time::now();
        let ttl = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let task_expires = after
            .status
            .is_terminal()
            .then(|| (after.completed_at.unwrap_or(now) + ttl(retention.ended_task)).timestamp());
        let put_task = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&TaskItem::from_task(after, task_expires), "task item")?))
            .condition_expression("attribute_exists(pk) AND event_seq = :seq")
            .expression_attribute_values(":seq", AttributeValue::N(before.event_seq.to_string()))
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let history_expires = (now + ttl(retention.history)).timestamp();
        let put_history = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(
                &HistoryItem::new(after, entry, history_expires),
                "history item",
            )?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_task).build())
            .transact_items(TransactWriteItem::builder().put(put_history).build());
        for d in deliveries {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_item(&DeliveryItem::new(d, history_expires), "delivery item")?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(unavailable("TransactWriteItems"))?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        if entry.seq > HISTORY_LIMIT {
            let trim = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(task_pk(&after.task_id)))
                .key("sk", s(history_sk(entry.seq - HISTORY_LIMIT)))
                .build()
                .map_err(unavailable("TransactWriteItems"))?;
            tx = tx.transact_items(TransactWriteItem::builder().delete(trim).build());
        }
        match tx.send().await {
            Ok(_) => Ok(ApplyOutcome::Applied),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_transaction_canceled_exception()) =>
            {
                Ok(ApplyOutcome::Conflict)
            }
            Err(e) => Err(unavailable("TransactWriteItems")(e)),
        }
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
        self.newest_first(query, limit, start, |i| {
            from_item::<HistoryItem>(i, "history item")
                .and_then(HistoryItem::into_recent)
                .map(|r| r.entry)
        })
        .await
    }

    async fn recent_events(
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
            .expression_attribute_values(
                ":pk",
                s(format!("RECENT#{tenant}#{}", crate::time::hour_bucket(bucket))),
            )
            .expression_attribute_values(":since", s(sort_ts(since)));
        self.newest_first(query, limit, start, |i| {
            from_item::<HistoryItem>(i, "history item").and_then(HistoryItem::into_recent)
        })
        .await
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
        self.newest_first(query, limit, start, |i| {
            from_item::<TaskItem>(i, "task item").and_then(TaskItem::into_task)
        })
        .await
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key_hash: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(item) = self.get(idem_pk(tenant, key_hash), IDEM_SK, "GetItem").await? else {
            return Ok(None);
        };
        let item: IdemItem = from_item(item, "idempotency item")?;
        let expires_at = DateTime::from_timestamp(item.expires_at, 0).unwrap_or_default();
        if expires_at <= crate::time::now() {
            return Ok(None);
        }
        Ok(Some(IdempotencyRecord {
            tenant: item.tenant,
            key_hash: item.key_hash,
            fingerprint: item.fingerprint,
            task_id: item.task_id,
            created_at: item.created_at,
            expires_at,
        }))
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        match self.get(apikey_pk(hash), APIKEY_SK, "GetItem").await? {
            None => Ok(None),
            Some(item) => from_item::<ApiKeyItem>(item, "api key item")?.into_record().map(Some),
        }
    }

    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let item = |pk: String, sk: String| {
            to_item(
                &ApiKeyItem {
                    pk,
                    sk,
                    key_hash: record.key_hash.as_hex().to_owned(),
                    tenant: record.tenant.clone(),
                    created_at: record.created_at,
                    description: record.description.clone(),
                },
                "api key item",
            )
        };
        let key = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item(apikey_pk(&record.key_hash), APIKEY_SK.to_owned())?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let index = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item(tenant_pk(&record.tenant), apikey_pk(&record.key_hash))?))
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(key).build())
            .transact_items(TransactWriteItem::builder().put(index).build())
            .send()
            .await
            .map_err(unavailable("TransactWriteItems"))?;
        Ok(())
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(tenant_pk(tenant)))
            .expression_attribute_values(":prefix", s("APIKEY#"))
            .into_paginator()
            .items()
            .send();
        let mut keys = Vec::new();
        while let Some(item) = pages.try_next().await.map_err(unavailable("Query"))? {
            keys.push(from_item::<ApiKeyItem>(item, "api key item")?.into_record()?);
        }
        Ok(keys)
    }

    async fn revoke_key(&self, tenant: &TenantId, hash: &KeyHash) -> Result<bool, StoreError> {
        let key = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(apikey_pk(hash)))
            .key("sk", s(APIKEY_SK))
            .condition_expression("tenant = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let index = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(tenant)))
            .key("sk", s(apikey_pk(hash)))
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(key).build())
            .transact_items(TransactWriteItem::builder().delete(index).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_transaction_canceled_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("TransactWriteItems")(e)),
        }
    }
}

impl DynamoStore {
    async fn query_deliveries(&self, task_id: &TaskId, unsent_only: bool) -> Result<Vec<Delivery>, StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(task_pk(task_id)))
            .expression_attribute_values(":prefix", s("DELIVERY#"));
        if unsent_only {
            q = q
                .filter_expression("enqueued = :no")
                .expression_attribute_values(":no", AttributeValue::Bool(false));
        }
        let mut pages = q.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.try_next().await.map_err(unavailable("Query"))? {
            out.push(from_item::<DeliveryItem>(item, "delivery item")?.into_delivery());
        }
        Ok(out)
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn unsent_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        self.query_deliveries(task_id, true).await
    }

    async fn mark_enqueued(&self, task_id: &TaskId, delivery_id: &str, cycle: u32) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_pk(task_id)))
            .key("sk", s(delivery_sk(delivery_id)))
            .update_expression("SET enqueued = :yes")
            .condition_expression("attribute_exists(pk) AND #cycle = :cycle")
            .expression_attribute_names("#cycle", "cycle")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":cycle", AttributeValue::N(cycle.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // a newer cycle started meanwhile: nothing to mark
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable("UpdateItem")(e)),
        }
    }

    async fn get_delivery(&self, task_id: &TaskId, delivery_id: &str) -> Result<Option<Delivery>, StoreError> {
        match self.get(task_pk(task_id), &delivery_sk(delivery_id), "GetItem").await? {
            None => Ok(None),
            Some(item) => Ok(Some(from_item::<DeliveryItem>(item, "delivery item")?.into_delivery())),
        }
    }

    async fn record_attempt(
        &self,
        task_id: &TaskId,
        delivery_id: &str,
        cycle: u32,
        attempt: &Attempt,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        let attempt =
            serde_dynamo::to_attribute_value::<_, AttributeValue>(attempt).map_err(|e| StoreError::Corrupt {
                what: "attempt",
                detail: e.to_string(),
            })?;
        let state = serde_dynamo::to_attribute_value::<_, AttributeValue>(state).map_err(|e| StoreError::Corrupt {
            what: "delivery state",
            detail: e.to_string(),
        })?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_pk(task_id)))
            .key("sk", s(delivery_sk(delivery_id)))
            .update_expression("SET attempts = list_append(if_not_exists(attempts, :empty), :attempt), #state = :state")
            .condition_expression("attribute_exists(pk) AND #cycle = :cycle")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#cycle", "cycle")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":attempt", AttributeValue::L(vec![attempt]))
            .expression_attribute_values(":state", state)
            .expression_attribute_values(":cycle", AttributeValue::N(cycle.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // redelivered meanwhile: this attempt belongs to an old cycle
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable("UpdateItem")(e)),
        }
    }

    async fn list_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        let mut all = self.query_deliveries(task_id, false).await?;
        all.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(all)
    }

    async fn restart_delivery(&self, task_id: &TaskId, delivery_id: &str) -> Result<Option<Delivery>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_pk(task_id)))
            .key("sk", s(delivery_sk(delivery_id)))
            .update_expression("SET #cycle = #cycle + :one, #state = :pending, enqueued = :no")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#cycle", "cycle")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => Ok(Some(from_item::<DeliveryItem>(item, "delivery item")?.into_delivery())),
                None => Ok(None),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable("UpdateItem")(e)),
        }
    }
}

#[async_trait]
impl SecretStore for DynamoStore {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<Vec<String>>, StoreError> {
        let Some(item) = self.get(secret_pk(tenant), "SECRET", "GetItem").await? else {
            return Ok(None);
        };
        let item: SecretItem = from_item(item, "secret item")?;
        let mut secrets = vec![item.current];
        if let (Some(previous), Some(until)) = (item.previous, item.previous_until) {
            if until > crate::time::now() {
                secrets.push(previous);
            }
        }
        Ok(Some(secrets))
    }

    async fn rotate_secret(
        &self,
        tenant: &TenantId,
        new_secret: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let previous = match overlap_until {
            None => None,
            Some(_) => self.signing_secrets(tenant).await?.and_then(|v| v.into_iter().next()),
        };
        let item = SecretItem {
            pk: secret_pk(tenant),
            sk: "SECRET".to_owned(),
            tenant: tenant.clone(),
            current: new_secret.to_owned(),
            previous_until: previous.as_ref().and(overlap_until),
            previous,
            updated_at: crate::time::now(),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item, "secret item")?))
            .send()
            .await
            .map_err(unavailable("PutItem"))?;
        Ok(())
    }
}
