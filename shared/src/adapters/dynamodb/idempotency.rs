//! Idempotency records, written in one transaction with the task they answer for.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, n, s, to_item, unavailable, Condition, DynamoStore};
use crate::domain::{CreateOutcome, IdempotencyRecord, IdempotencyState, Task, TaskId, TenantId};
use crate::error::StoreError;

fn idem_pk(tenant: &TenantId, key_hash: &str) -> String {
    format!("IDEM#{tenant}#{key_hash}")
}
const IDEM_SK: &str = "IDEM";

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
    /// Records written before the state existed were answered as final.
    #[serde(default = "enqueued")]
    state: IdempotencyState,
}

fn enqueued() -> IdempotencyState {
    IdempotencyState::Enqueued
}

impl DynamoStore {
    /// Puts the task (`put_task`), the idempotency record (if any) and the
    /// upload claim (if any) in one transaction. If the record's condition
    /// fails, another request used the key first: its record is the answer;
    /// if the claim's fails, the upload is not this task's to take.
    pub(super) async fn create_in_transaction(
        &self,
        put_task: TransactWriteItem,
        idem: Option<&IdempotencyRecord>,
        claim: Option<TransactWriteItem>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut items = vec![put_task];
        if let Some(idem) = idem {
            items.push(self.idempotency_put(idem)?);
        }
        let claim_at = claim.as_ref().map(|_| items.len());
        items.extend(claim);
        let Err(e) = self.send_transaction(items).await else {
            return Ok(CreateOutcome::Created);
        };
        let failed = |at: Option<usize>| match (e.as_service_error(), at) {
            (Some(TransactWriteItemsError::TransactionCanceledException(c)), Some(i)) => {
                c.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
            }
            _ => false,
        };
        if let Some(idem) = idem.filter(|_| failed(Some(1))) {
            return match self.idempotency_record(&idem.tenant, &idem.key_hash).await? {
                Some(existing) => Ok(CreateOutcome::IdempotencyHit(existing)),
                None => Err(StoreError::Conflict {
                    op: "TransactWriteItems",
                    detail: "idempotency record changed concurrently".to_owned(),
                }),
            };
        }
        if failed(claim_at) {
            return Ok(CreateOutcome::UploadUnavailable);
        }
        Err(unavailable("TransactWriteItems")(e))
    }

    /// The idempotency record's put, for a transaction.
    fn idempotency_put(&self, idem: &IdempotencyRecord) -> Result<TransactWriteItem, StoreError> {
        let item = to_item(
            &IdemItem {
                pk: idem_pk(&idem.tenant, &idem.key_hash),
                sk: IDEM_SK.to_owned(),
                tenant: idem.tenant.clone(),
                key_hash: idem.key_hash.clone(),
                fingerprint: idem.fingerprint.clone(),
                task_id: idem.task_id,
                created_at: idem.created_at,
                expires_at: idem.expires_at.timestamp(),
                state: idem.state,
            },
            "idempotency item",
        )?;
        // an expired record (TTL deletion lags) may be replaced
        self.tx_put(
            item,
            Some(
                Condition::new("attribute_not_exists(pk) OR expires_at < :now")
                    .value(":now", n(crate::time::now().timestamp())),
            ),
        )
    }

    /// The delete of `task`'s idempotency record, for a transaction.
    pub(super) fn discard_idempotency(
        &self,
        task: &Task,
        idem: &IdempotencyRecord,
    ) -> Result<TransactWriteItem, StoreError> {
        self.tx_delete(
            idem_pk(&idem.tenant, &idem.key_hash),
            IDEM_SK,
            Some(
                Condition::new("attribute_not_exists(pk) OR task_id = :task")
                    .value(":task", s(task.task_id.to_string())),
            ),
        )
    }

    /// An unexpired record, if any.
    pub(super) async fn idempotency_record(
        &self,
        tenant: &TenantId,
        key_hash: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(item) = self.get(idem_pk(tenant, key_hash), IDEM_SK).await? else {
            return Ok(None);
        };
        let item: IdemItem = from_item(item, "idempotency item")?;
        let expires_at = DateTime::<Utc>::from_timestamp(item.expires_at, 0).unwrap_or_default();
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
            state: item.state,
        }))
    }

    /// `state = enqueued`, on the record of `task_id` only.
    pub(super) async fn idempotency_enqueued(
        &self,
        tenant: &TenantId,
        key_hash: &str,
        task_id: &TaskId,
    ) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(idem_pk(tenant, key_hash)))
            .key("sk", s(IDEM_SK))
            .update_expression("SET #state = :enqueued")
            .condition_expression("task_id = :task")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":enqueued", s("enqueued"))
            .expression_attribute_values(":task", s(task_id.to_string()))
            .send()
            .await;
        super::settle("UpdateItem", sent)?;
        Ok(())
    }
}
