//! The processing queue on SQS.

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::domain::JobMessage;
use crate::error::StoreError;
use crate::ports::JobQueue;

pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &JobMessage) -> Result<String, StoreError> {
        let body = serde_json::to_string(job).map_err(|e| StoreError::Corrupt {
            what: "job message",
            detail: e.to_string(),
        })?;
        let task_id = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(job.task_id.to_string())
            .build()
            .map_err(|e| StoreError::unavailable("sqs", "SendMessage", e))?;
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("task_id", task_id)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("sqs", "SendMessage", DisplayErrorContext(e)))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
