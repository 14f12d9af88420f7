//! Granted uploads (`UPLOAD#{upload_id}` / `UPLOAD`), and their claim by a
//! task, written in the task's own transaction.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, s, to_item, unavailable, Condition, DynamoStore};
use crate::domain::{Task, TaskId, TenantId, Upload, UploadId};
use crate::error::StoreError;
use crate::ports::UploadStore;

fn upload_pk(id: &UploadId) -> String {
    format!("UPLOAD#{id}")
}
const UPLOAD_SK: &str = "UPLOAD";

#[derive(Serialize, Deserialize)]
struct UploadItem {
    pk: String,
    sk: String,
    upload_id: UploadId,
    tenant: TenantId,
    key: String,
    filename: String,
    content_type: String,
    size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    created_at: DateTime<Utc>,
    url_expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_id: Option<TaskId>,
    /// TTL.
    expires_at: i64,
}

#[async_trait]
impl UploadStore for DynamoStore {
    async fn put_upload(&self, u: &Upload) -> Result<(), StoreError> {
        let item = UploadItem {
            pk: upload_pk(&u.upload_id),
            sk: UPLOAD_SK.to_owned(),
            upload_id: u.upload_id.clone(),
            tenant: u.tenant.clone(),
            key: u.key.clone(),
            filename: u.filename.clone(),
            content_type: u.content_type.clone(),
            size_bytes: u.size_bytes,
            sha256: u.sha256.clone(),
            created_at: u.created_at,
            url_expires_at: u.expires_at,
            task_id: u.task_id,
            expires_at: u.claimable_until().timestamp(),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item, "upload item")?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable("PutItem"))?;
        Ok(())
    }

    async fn get_upload(&self, upload_id: &UploadId) -> Result<Option<Upload>, StoreError> {
        let Some(item) = self.get(upload_pk(upload_id), UPLOAD_SK).await? else {
            return Ok(None);
        };
        let i: UploadItem = from_item(item, "upload item")?;
        Ok(Some(Upload {
            upload_id: i.upload_id,
            tenant: i.tenant,
            key: i.key,
            filename: i.filename,
            content_type: i.content_type,
            size_bytes: i.size_bytes,
            sha256: i.sha256,
            created_at: i.created_at,
            expires_at: i.url_expires_at,
            task_id: i.task_id,
        }))
    }

    /// Only the task that claimed it (`task_id`) releases it.
    async fn release_upload(&self, upload_id: &UploadId, task_id: &TaskId) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(upload_pk(upload_id)))
            .key("sk", s(UPLOAD_SK))
            .update_expression("REMOVE task_id")
            .condition_expression("task_id = :task")
            .expression_attribute_values(":task", s(task_id.to_string()))
            .send()
            .await;
        super::settle("UpdateItem", sent)?;
        Ok(())
    }
}

impl DynamoStore {
    /// The claim of `upload` by `task`, for the task's transaction: only an
    /// existing, unclaimed upload of the task's tenant.
    pub(super) fn claim_upload(&self, task: &Task, upload: &UploadId) -> Result<TransactWriteItem, StoreError> {
        let c = Condition::new("attribute_exists(pk) AND tenant = :tenant AND attribute_not_exists(task_id)")
            .value(":tenant", s(task.tenant.as_str()))
            .value(":task", s(task.task_id.to_string()));
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(upload_pk(upload)))
            .key("sk", s(UPLOAD_SK))
            .update_expression("SET task_id = :task")
            .set_condition_expression(c.expression())
            .set_expression_attribute_values(c.values())
            .build()
            .map_err(unavailable("TransactWriteItems"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
