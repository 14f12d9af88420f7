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
        let task_id = job.task_id.to_string();
        send_json(
            &self.client,
            &self.queue_url,
            "job message",
            job,
            &[("task_id", &task_id)],
        )
        .await
    }
}

/// Sends `value` as a JSON message with string attributes; returns the message id.
async fn send_json<T: serde::Serialize>(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    what: &'static str,
    value: &T,
    attributes: &[(&str, &str)],
) -> Result<String, StoreError> {
    let body = serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })?;
    let mut send = client.send_message().queue_url(queue_url).message_body(body);
    for (name, v) in attributes {
        send = send.message_attributes(*name, string_attribute(v)?);
    }
    let out = send
        .send()
        .await
        .map_err(|e| StoreError::unavailable("sqs", "SendMessage", DisplayErrorContext(e)))?;
    Ok(out.message_id.unwrap_or_default())
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| StoreError::unavailable("sqs", "SendMessage", e))
}

/// The status-events queue, for pipelines (through `TaskReporter`).
pub struct SqsEventSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsEventSink {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl crate::ports::EventSink for SqsEventSink {
    async fn send(&self, event: &crate::domain::StatusEvent) -> Result<(), StoreError> {
        let task_id = event.task_id.to_string();
        send_json(
            &self.client,
            &self.queue_url,
            "status event",
            event,
            &[("task_id", &task_id)],
        )
        .await?;
        Ok(())
    }
}

/// A dead-letter queue a function parks unprocessable messages in, with the
/// reason as message attributes (`morag_reason`, `morag_detail`,
/// `morag_source_message_id`).
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// Message attribute values are at most 256 KiB; keep details short.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[async_trait]
impl crate::ports::DeadLetters for SqsDeadLetters {
    async fn park(&self, body: &str, reason: &str, detail: &str, source_message_id: &str) -> Result<(), StoreError> {
        // an empty body cannot be sent; park a placeholder that says so
        let body = if body.is_empty() { "<empty message body>" } else { body };
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("morag_reason", string_attribute(reason)?)
            .message_attributes("morag_detail", string_attribute(clip(detail, 1024))?)
            .message_attributes("morag_source_message_id", string_attribute(source_message_id)?)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("sqs", "SendMessage", DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// The webhook queue.
pub struct SqsWebhookQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsWebhookQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl crate::ports::WebhookQueue for SqsWebhookQueue {
    async fn enqueue(&self, message: &crate::ports::DeliveryMessage) -> Result<(), StoreError> {
        let task_id = message.task_id.to_string();
        let attributes = [
            ("task_id", task_id.as_str()),
            ("delivery_id", message.delivery_id.as_str()),
        ];
        send_json(&self.client, &self.queue_url, "delivery message", message, &attributes).await?;
        Ok(())
    }
}

/// `ChangeMessageVisibility` on one queue (the sender's own).
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl crate::ports::Visibility for SqsVisibility {
    async fn delay(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<(), StoreError> {
        // SQS counts whole seconds: round up so a jittered 0.9 s is not 0
        let secs = i32::try_from(delay.as_millis().div_ceil(1000).min(43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("sqs", "ChangeMessageVisibility", DisplayErrorContext(e)))?;
        Ok(())
    }
}
