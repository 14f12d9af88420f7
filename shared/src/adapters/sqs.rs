//! SQS queues. One adapter type, [`SqsQueue`], is every queue port: the
//! processing queue ([`JobQueue`]), the status-events queue ([`EventSink`]),
//! the webhook queue ([`WebhookQueue`], and [`Visibility`] for the sender's
//! backoff on its own queue) and the dead-letter queues ([`DeadLetters`]).
//! Which one it is, is the URL it was built with.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::domain::{DeliveryMessage, JobMessage, StatusEvent};

/// The longest `DelaySeconds` SQS takes.
const MAX_SQS_SEND_DELAY_S: u64 = 900;
use crate::error::StoreError;
use crate::ports::{DeadJob, DeadLetterPeek, DeadLetters, EventSink, JobQueue, Visibility, WebhookQueue};

/// SQS's longest visibility timeout, in seconds.
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// Longest `morag_detail` attribute on a parked message.
const MAX_DETAIL: usize = 1024;

/// One queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `value` as a JSON message with string attributes; returns the message id.
    async fn send_json<T: serde::Serialize>(
        &self,
        what: &'static str,
        value: &T,
        attributes: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let body = serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        })?;
        self.send(&body, attributes).await
    }

    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<String, StoreError> {
        self.send_delayed(body, attributes, Duration::ZERO).await
    }

    /// `SendMessage` with `DelaySeconds` (SQS takes 0 to 900).
    async fn send_delayed(
        &self,
        body: &str,
        attributes: &[(&str, &str)],
        delay: Duration,
    ) -> Result<String, StoreError> {
        let delay_s = i32::try_from(delay.as_secs().min(MAX_SQS_SEND_DELAY_S)).unwrap_or(0);
        let mut send = self.client.send_message().queue_url(&self.url).message_body(body);
        if delay_s > 0 {
            send = send.delay_seconds(delay_s);
        }
        for (name, v) in attributes {
            send = send.message_attributes(*name, string_attribute(v)?);
        }
        let out = send
            .send()
            .await
            .map_err(|e| StoreError::unavailable("sqs", "SendMessage", DisplayErrorContext(e)))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| StoreError::unavailable("sqs", "SendMessage", e))
}

/// At most `max` bytes of `s`, cut at a character boundary.
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
impl JobQueue for SqsQueue {
    async fn enqueue(&self, job: &JobMessage) -> Result<String, StoreError> {
        let task_id = job.task_id.to_string();
        self.send_json("job message", job, &[("task_id", &task_id)]).await
    }
}

#[async_trait]
impl EventSink for SqsQueue {
    async fn send(&self, event: &StatusEvent) -> Result<(), StoreError> {
        let task_id = event.task_id.to_string();
        self.send_json("status event", event, &[("task_id", &task_id)]).await?;
        Ok(())
    }
}

#[async_trait]
impl WebhookQueue for SqsQueue {
    async fn enqueue(&self, message: &DeliveryMessage) -> Result<(), StoreError> {
        self.enqueue_after(message, Duration::ZERO).await
    }

    async fn enqueue_after(&self, message: &DeliveryMessage, delay: Duration) -> Result<(), StoreError> {
        let task_id = message.task_id.to_string();
        let attributes = [
            ("task_id", task_id.as_str()),
            ("delivery_id", message.delivery_id.as_str()),
        ];
        let body = serde_json::to_string(message).map_err(|e| StoreError::Corrupt {
            what: "delivery message",
            detail: e.to_string(),
        })?;
        self.send_delayed(&body, &attributes, delay).await?;
        Ok(())
    }
}

/// Parked messages keep their body, with the reason as message attributes
/// (`morag_reason`, `morag_detail`, `morag_source_message_id`).
#[async_trait]
impl DeadLetters for SqsQueue {
    async fn park(&self, body: &str, reason: &str, detail: &str, source_message_id: &str) -> Result<(), StoreError> {
        // an empty body cannot be sent; park a placeholder that says so
        let body = if body.is_empty() { "<empty message body>" } else { body };
        let attributes = [
            ("morag_reason", reason),
            ("morag_detail", clip(detail, MAX_DETAIL)),
            ("morag_source_message_id", source_message_id),
        ];
        self.send(body, &attributes).await?;
        Ok(())
    }
}

/// `ChangeMessageVisibility` on this queue (the sender's own).
#[async_trait]
impl Visibility for SqsQueue {
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        // SQS counts whole seconds: round up so a jittered 0.9 s is not 0
        let secs = delay.as_millis().div_ceil(1000).min(u128::from(MAX_VISIBILITY_SECONDS));
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(secs).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| StoreError::unavailable("sqs", "ChangeMessageVisibility", DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// The processing DLQ, read by the watchdog: the message stays.
#[async_trait]
impl DeadLetterPeek for SqsQueue {
    async fn peek(&self, max: usize, hide_for: Duration) -> Result<Vec<DeadJob>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(i32::try_from(hide_for.as_secs().max(1)).unwrap_or(30))
            .message_attribute_names("morag_reason")
            .message_attribute_names("morag_detail")
            .send()
            .await
            .map_err(|e| StoreError::unavailable("sqs", "ReceiveMessage", DisplayErrorContext(e)))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attribute = |name: &str| {
                    m.message_attributes
                        .as_ref()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value.clone())
                };
                let reason = match (attribute("morag_reason"), attribute("morag_detail")) {
                    (Some(r), Some(d)) => Some(format!("{r}: {d}")),
                    (r, _) => r,
                };
                DeadJob {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    reason,
                }
            })
            .collect())
    }

    async fn release(&self, receipt_handles: &[String]) -> Result<usize, StoreError> {
        let mut failed = 0;
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| StoreError::unavailable("sqs", "ChangeMessageVisibilityBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::unavailable("sqs", "ChangeMessageVisibilityBatch", DisplayErrorContext(e)))?;
            failed += out.failed.len();
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_cuts_at_character_boundaries() {
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
    }
}
