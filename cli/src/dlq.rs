//! `morag dlq redrive`: moves parked messages back to their queue without
//! losing any: SQS `StartMessageMoveTask` where the service has it, otherwise
//! receive → send → delete (a message is deleted from the DLQ only after it
//! was sent; a crash in between duplicates, never loses). Webhook messages
//! start a fresh attempt cycle of their delivery (same `webhook-id`).

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;

use morag_shared::domain::DeliveryMessage;
use morag_shared::ports::{DeliveryStore, WebhookQueue};

/// How a redrive went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Moved by SQS's own move task (count unknown until it finishes).
    pub move_task_started: bool,
    pub moved: usize,
    /// Webhook messages whose delivery no longer exists (deleted, not moved).
    pub dropped: usize,
}

async fn arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("GetQueueAttributes {url}"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("no QueueArn")
}

/// Moves every message of `dlq_url` back to `queue_url`.
pub async fn redrive_plain(sqs: &aws_sdk_sqs::Client, queue_url: &str, dlq_url: &str) -> Result<Redriven> {
    let (source, destination) = (arn(sqs, dlq_url).await?, arn(sqs, queue_url).await?);
    match sqs
        .start_message_move_task()
        .source_arn(&source)
        .destination_arn(&destination)
        .send()
        .await
    {
        Ok(_) => {
            return Ok(Redriven {
                move_task_started: true,
                ..Default::default()
            })
        }
        Err(e) => {
            tracing::info!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "StartMessageMoveTask unavailable; moving messages one by one")
        }
    }
    let mut moved = 0;
    loop {
        let batch = receive(sqs, dlq_url).await?;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let mut send = sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(m.body().unwrap_or_default());
            for (k, v) in m.message_attributes().cloned().unwrap_or_default() {
                if !k.starts_with("morag_") {
                    send = send.message_attributes(k, v);
                }
            }
            send.send().await.context("SendMessage back to the queue")?;
            delete(sqs, dlq_url, m.receipt_handle().unwrap_or_default()).await?;
            moved += 1;
        }
    }
    Ok(Redriven {
        moved,
        ..Default::default()
    })
}

/// Webhook DLQ: each parked delivery gets a fresh attempt cycle.
pub async fn redrive_webhooks(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    deliveries: &dyn DeliveryStore,
    queue: &dyn WebhookQueue,
) -> Result<Redriven> {
    let mut out = Redriven::default();
    loop {
        let batch = receive(sqs, dlq_url).await?;
        if batch.is_empty() {
            return Ok(out);
        }
        for m in batch {
            let parsed: Option<DeliveryMessage> = serde_json::from_str(m.body().unwrap_or_default()).ok();
            let restarted = match &parsed {
                Some(msg) => deliveries.restart_delivery(&msg.task_id, &msg.delivery_id).await?,
                None => None,
            };
            match restarted {
                Some(d) => {
                    morag_shared::outbox::enqueue_delivery(queue, deliveries, &d).await?;
                    out.moved += 1;
                }
                None => {
                    tracing::warn!(
                        body = m.body().unwrap_or_default().len(),
                        "parked webhook message without a delivery; dropping it"
                    );
                    out.dropped += 1;
                }
            }
            delete(sqs, dlq_url, m.receipt_handle().unwrap_or_default()).await?;
        }
    }
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    Ok(sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(Duration::from_secs(60).as_secs() as i32)
        .message_attribute_names("All")
        .send()
        .await
        .context("ReceiveMessage from the DLQ")?
        .messages
        .unwrap_or_default())
}

async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, receipt: &str) -> Result<()> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(receipt)
        .send()
        .await
        .context("DeleteMessage from the DLQ")?;
    Ok(())
}
