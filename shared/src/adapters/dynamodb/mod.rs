//! The table, through the DynamoDB API. Item mapping lives here only, through
//! `serde_dynamo`, one file per aggregate:
//!
//! | file | items (pk / sk) |
//! |---|---|
//! | `tasks` | task `TASK#{id}` / `STATE`; history `TASK#{id}` / `EVENT#{seq:010}` (GSI1 recent events; GSI2/GSI3 task listing) |
//! | `idempotency` | `IDEM#{tenant}#{sha256(key)}` / `IDEM` (written with its task) |
//! | `deliveries` | `TASK#{id}` / `DELIVERY#{delivery_id}` (GSI4: an endpoint's deliveries) |
//! | `fanout` | an event's deliveries beyond one transaction, until expanded: `TASK#{id}` / `FANOUT#{seq:010}#{chunk:03}` |
//! | `timeline` | attempt counter `TASK#{id}` / `ATTEMPTSEQ`, attempt entries `TASK#{id}` / `ATTEMPT#{n:010}` |
//! | `endpoints` | tenant webhook endpoint `WHEP#{tenant}` / `EP#{endpoint_id}` |
//! | `uploads` | `UPLOAD#{upload_id}` / `UPLOAD` (claimed in the task's transaction) |
//! | `watch` | no items of its own: `DueIndex` over the `due_pk` / `due_sk` of live tasks and unfinished deliveries |
//! | `keys` | API key `APIKEY#{sha256}` / `KEY`, tenant key index `TENANT#{tenant}` / `APIKEY#{sha256}`, signing secret `WHSECRET#{tenant}` / `SECRET` |
//!
//! `expires_at` (epoch seconds) is the table's TTL attribute. Every
//! conditional write goes through [`settle`]: written, condition failed, or a
//! 503-class error naming the operation.

mod deliveries;
mod endpoints;
mod fanout;
mod idempotency;
mod keys;
#[cfg(feature = "test-support")]
mod support;
mod tasks;
mod timeline;
mod uploads;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsError, TransactWriteItemsOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::{Deserialize, Serialize};

use crate::domain::{Page, PageKey, TaskId};
use crate::error::StoreError;

type Item = HashMap<String, AttributeValue>;

/// The partition of everything about one task (its state, history and deliveries).
pub fn task_pk(id: &TaskId) -> String {
    format!("TASK#{id}")
}
/// The task item's sort key.
pub const TASK_SK: &str = "STATE";
/// The sort-key prefix of an event's fan-out markers (`fanout.rs`).
const FANOUT_PREFIX: &str = "FANOUT#";

/// The table, through the DynamoDB API.
#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Items DynamoDB evaluated for this store's queries (`ScannedCount`).
    scanned: Arc<AtomicU64>,
    /// Seals and opens signing secrets; without it, reading or writing one
    /// is an error (never plaintext at rest).
    secrets_cipher: Option<Arc<dyn crate::ports::SecretCipher>>,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            scanned: Arc::default(),
            secrets_cipher: None,
        }
    }

    /// The store, sealing signing secrets with `cipher`.
    pub fn with_secrets_cipher(mut self, cipher: Arc<dyn crate::ports::SecretCipher>) -> Self {
        self.secrets_cipher = Some(cipher);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Items DynamoDB evaluated for this store's queries so far: what a
    /// query costs, whatever the emulator's speed.
    pub fn items_scanned(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }

    /// A strongly consistent `GetItem`.
    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("GetItem"))?;
        Ok(out.item)
    }

    /// The items at `keys` (their `pk` and `sk`), in the order of `keys`;
    /// a key whose item is gone (expired since the index was read) is
    /// skipped. Eventually consistent, like the index the keys came from.
    async fn get_many(&self, keys: &[Item]) -> Result<Vec<Item>, StoreError> {
        /// BatchGetItem's limit per request.
        const MAX_KEYS: usize = 100;
        let key_of = |item: &Item| {
            let part = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (part("pk"), part("sk"))
        };
        let mut found: HashMap<(String, String), Item> = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_KEYS) {
            let wanted: Vec<Item> = chunk
                .iter()
                .map(|k| {
                    let (pk, sk) = key_of(k);
                    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
                })
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(wanted))
                    .build()
                    .map_err(|e| StoreError::Unavailable {
                        service: "DynamoDB",
                        op: "BatchGetItem",
                        detail: e.to_string(),
                    })?,
            );
            // unprocessed keys (throttling) are asked again, a bounded number of times
            for round in 0..5u32 {
                let Some(request) = pending.take() else { break };
                if round > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << round)).await;
                }
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable("BatchGetItem"))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    found.insert(key_of(&item), item);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
            }
            if pending.is_some() {
                return Err(StoreError::Unavailable {
                    service: "DynamoDB",
                    op: "BatchGetItem",
                    detail: "keys left unprocessed after 5 requests".to_owned(),
                });
            }
        }
        Ok(keys.iter().filter_map(|k| found.remove(&key_of(k))).collect())
    }

    /// Runs a key-condition query newest first, one page of at most `limit`
    /// items from `start`, counting what DynamoDB evaluated.
    async fn newest_first<T>(
        &self,
        query: QueryFluentBuilder,
        limit: usize,
        start: Option<PageKey>,
        map: impl Fn(Item) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        self.query_page(query.scan_index_forward(false), limit, start, map)
            .await
    }

    /// One page of a key-condition query in the order it was built with.
    async fn query_page<T>(
        &self,
        query: QueryFluentBuilder,
        limit: usize,
        start: Option<PageKey>,
        map: impl Fn(Item) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let out = query
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .set_exclusive_start_key(start.map(from_page_key))
            .send()
            .await
            .map_err(unavailable("Query"))?;
        self.scanned
            .fetch_add(u64::try_from(out.scanned_count).unwrap_or(0), Ordering::Relaxed);
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(map)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: out.last_evaluated_key.map(to_page_key),
        })
    }

    /// Every item of a task whose sort key starts with `prefix`, all pages.
    async fn task_items(
        &self,
        task_id: &TaskId,
        prefix: &str,
        filter: Option<Condition>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(task_pk(task_id)))
            .expression_attribute_values(":prefix", s(prefix));
        if let Some(f) = filter {
            query = query.filter_expression(f.expression);
            for (k, v) in f.values {
                query = query.expression_attribute_values(k, v);
            }
        }
        let mut pages = query.into_paginator().items().send();
        let mut items = Vec::new();
        while let Some(item) = pages.try_next().await.map_err(unavailable("Query"))? {
            items.push(item);
        }
        Ok(items)
    }

    /// A put for a transaction.
    fn tx_put(&self, item: Item, condition: Option<Condition>) -> Result<TransactWriteItem, StoreError> {
        let c = condition.unwrap_or_default();
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(c.expression())
            .set_expression_attribute_names(c.names())
            .set_expression_attribute_values(c.values())
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A delete for a transaction.
    fn tx_delete(&self, pk: String, sk: &str, condition: Option<Condition>) -> Result<TransactWriteItem, StoreError> {
        let c = condition.unwrap_or_default();
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .set_condition_expression(c.expression())
            .set_expression_attribute_names(c.names())
            .set_expression_attribute_values(c.values())
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs a transaction: `Ok(true)` written, `Ok(false)` a condition did not hold.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        Ok(settle("TransactWriteItems", self.send_transaction(items).await)?.is_some())
    }

    /// Sends a transaction and answers the SDK's own result (for callers that
    /// read the cancellation reasons).
    async fn send_transaction(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<TransactWriteItemsOutput, SdkError<TransactWriteItemsError>> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
    }
}

/// A condition expression with its names and values.
#[derive(Debug, Default, Clone)]
struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Condition {
    fn new(expression: &str) -> Self {
        Self {
            expression: expression.to_owned(),
            ..Self::default()
        }
    }

    /// The expression and `more`.
    fn and(mut self, more: &str) -> Self {
        self.expression = format!("({}) AND ({more})", self.expression);
        self
    }

    fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names.insert(placeholder.to_owned(), attribute.to_owned());
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    fn expression(&self) -> Option<String> {
        (!self.expression.is_empty()).then(|| self.expression.clone())
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Operation errors that can mean "the write's condition did not hold".
trait ConditionFailed {
    fn condition_failed(&self) -> bool;
}

impl ConditionFailed for PutItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for UpdateItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for TransactWriteItemsError {
    fn condition_failed(&self) -> bool {
        self.is_transaction_canceled_exception()
    }
}

/// What a conditional write came to: `Some(output)` written, `None` its
/// condition did not hold, an `Unavailable` error naming `op` otherwise.
fn settle<O, E>(op: &'static str, sent: Result<O, SdkError<E>>) -> Result<Option<O>, StoreError>
where
    E: ConditionFailed + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.as_service_error().is_some_and(ConditionFailed::condition_failed) => Ok(None),
        Err(e) => Err(unavailable(op)(e)),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E>(op: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::unavailable("dynamodb", op, DisplayErrorContext(e))
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

fn to_page_key(key: Item) -> PageKey {
    PageKey(
        key.into_iter()
            .filter_map(|(name, v)| v.as_s().ok().map(|s| (name, s.clone())))
            .collect(),
    )
}

fn from_page_key(key: PageKey) -> Item {
    key.0.into_iter().map(|(name, v)| (name, s(v))).collect()
}
