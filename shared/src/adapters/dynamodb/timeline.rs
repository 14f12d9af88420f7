//! The task's timeline beside it: the attempt counter `TASK#{id}` /
//! `ATTEMPTSEQ` and one item per attempt `TASK#{id}` / `ATTEMPT#{n:010}`;
//! status events are the history items (`tasks`). Read in ascending key
//! order, strongly consistent (see `domain::timeline`).

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, n, s, task_pk, to_item, unavailable, DynamoStore, Item};
use crate::domain::{AttemptEntry, AttemptRecord, TaskId};
use crate::error::StoreError;

/// The attempt counter's sort key.
const COUNTER_SK: &str = "ATTEMPTSEQ";
/// The attempt entries' sort-key prefix.
const ATTEMPT_PREFIX: &str = "ATTEMPT#";

fn attempt_sk(n: u64) -> String {
    format!("{ATTEMPT_PREFIX}{n:010}")
}

#[derive(Serialize, Deserialize)]
struct AttemptItem {
    pk: String,
    sk: String,
    entry: AttemptEntry,
    expires_at: i64,
}

impl DynamoStore {
    /// `ADD` 1 to the task's attempt counter (it expires with the newest
    /// entry), then the entry under the number it returned.
    pub(super) async fn append_attempt(
        &self,
        task_id: &TaskId,
        record: &AttemptRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let number = self.take_attempt_number(task_id, expires_at).await?;
        self.put_attempt_entry(task_id, number, record, expires_at).await?;
        Ok(number)
    }

    /// The task's next attempt number.
    pub(super) async fn take_attempt_number(
        &self,
        task_id: &TaskId,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_pk(task_id)))
            .key("sk", s(COUNTER_SK))
            .update_expression("ADD attempts :one SET expires_at = :expires")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires_at.timestamp()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable("UpdateItem"))?;
        out.attributes
            .and_then(|a| {
                a.get("attempts")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| StoreError::Corrupt {
                what: "attempt counter",
                detail: "UpdateItem returned no number".into(),
            })
    }

    /// `record` under `number`, recorded now (after the number was taken).
    pub(super) async fn put_attempt_entry(
        &self,
        task_id: &TaskId,
        number: u64,
        record: &AttemptRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = AttemptItem {
            pk: task_pk(task_id),
            sk: attempt_sk(number),
            entry: AttemptEntry {
                n: number,
                recorded_at: crate::time::now(),
                record: record.clone(),
            },
            expires_at: expires_at.timestamp(),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item, "attempt entry")?))
            .send()
            .await
            .map_err(unavailable("PutItem"))?;
        Ok(())
    }

    pub(super) async fn attempts_after(
        &self,
        task_id: &TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AttemptEntry>, StoreError> {
        let items = self
            .ascending(task_id, ATTEMPT_PREFIX, attempt_sk(after + 1), limit)
            .await?;
        items
            .into_iter()
            .map(|i| from_item::<AttemptItem>(i, "attempt entry").map(|a| a.entry))
            .collect()
    }

    /// At most `limit` of the task's items from sort key `from` up to the
    /// end of `prefix`, ascending, strongly consistent (one page).
    pub(super) async fn ascending(
        &self,
        task_id: &TaskId,
        prefix: &str,
        from: String,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let query: QueryFluentBuilder = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(task_pk(task_id)))
            .expression_attribute_values(":from", s(from))
            // past every number of 10 digits
            .expression_attribute_values(":to", s(format!("{prefix}~")))
            .consistent_read(true)
            .scan_index_forward(true);
        Ok(self.query_page(query, limit, None, Ok).await?.items)
    }
}
