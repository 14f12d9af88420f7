//! Bulk loading and a writer's death, for benchmarks and tests only
//! (`test-support` feature): not in a release binary.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use super::tasks::HistoryItem;
use super::{to_item, unavailable, DynamoStore};
use chrono::{DateTime, Utc};

use crate::domain::{ApplyOutcome, AttemptRecord, Delivery, HistoryEntry, Retention, Task, TaskId};
use crate::error::StoreError;

impl DynamoStore {
    /// Writes history entries directly (25 per `BatchWriteItem`), without
    /// touching the task.
    pub async fn load_history(&self, task: &Task, entries: &[HistoryEntry], expires_at: i64) -> Result<(), StoreError> {
        for chunk in entries.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for e in chunk {
                let item = to_item(&HistoryItem::new(task, e, expires_at), "history item")?;
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(unavailable("BatchWriteItem"))?;
                requests.push(WriteRequest::builder().put_request(put).build());
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

    /// `TaskStore::apply_event` by a writer that dies right after the
    /// event's transaction: fan-out markers stay unexpanded.
    pub async fn apply_event_then_die(
        &self,
        before: &Task,
        after: &Task,
        entry: &HistoryEntry,
        deliveries: &[Delivery],
        retention: &Retention,
    ) -> Result<ApplyOutcome, StoreError> {
        Ok(
            match self.write_event(before, after, entry, deliveries, retention).await? {
                Some(_) => ApplyOutcome::Applied,
                None => ApplyOutcome::Conflict,
            },
        )
    }

    /// A sender's first step of `DeliveryStore::append_attempt_entry` only:
    /// the number is taken, its entry not yet written (a slow or dead sender).
    pub async fn take_attempt_number_only(&self, task_id: &TaskId) -> Result<u64, StoreError> {
        self.take_attempt_number(task_id, crate::time::now() + chrono::Duration::days(1))
            .await
    }

    /// The second step, late: `record` under a number taken before.
    pub async fn put_attempt_entry_late(
        &self,
        task_id: &TaskId,
        number: u64,
        record: &AttemptRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.put_attempt_entry(task_id, number, record, expires_at).await
    }
}
