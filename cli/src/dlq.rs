//! `morag dlq redrive`: moves parked messages back to their queue without
//! losing any: SQS `StartMessageMoveTask` where the service has it, otherwise
//! receive → send → delete (a message is deleted from the DLQ only after it
//! was sent; a crash in between duplicates, never loses). Webhook messages
//! start a fresh attempt cycle of their delivery (same `webhook-id`).

use std::time::Duration;

use anyhow::{Context, Result};
use std::collections::HashSet;

use aws_sdk_sqs::types::QueueAttributeName;

use morag_shared::domain::{DeliveryMessage, DeliveryState};
use morag_shared::ports::{DeadLetterPeek, DeliveryStore, WebhookQueue};

/// How a redrive went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// Moved by SQS's own move task (count unknown until it finishes).
    pub move_task_started: bool,
    pub moved: usize,
    /// Webhook messages whose delivery no longer exists (deleted, not moved).
    pub dropped: usize,
    /// Webhook messages of an older cycle, or of a delivery that has since
    /// succeeded or failed (deleted, not moved).
    pub stale: usize,
    /// Ids of messages that are not delivery messages: left in the DLQ.
    pub kept: Vec<String>,
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

/// Webhook DLQ: each parked delivery that is still `dead` (or `pending`)
/// in the message's cycle gets a fresh attempt cycle. A message of an older
/// cycle, or of a delivery that succeeded or failed since, is deleted
/// (`stale`); one whose delivery is gone is deleted (`dropped`); a body that
/// is not a delivery message stays in the DLQ, visible again, and is
/// reported (`kept`).
pub async fn redrive_webhooks(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    deliveries: &dyn DeliveryStore,
    queue: &dyn WebhookQueue,
) -> Result<Redriven> {
    let mut out = Redriven::default();
    let mut kept_ids = HashSet::new();
    let mut kept_receipts = Vec::new();
    loop {
        let batch = receive(sqs, dlq_url).await?;
        // only kept messages come back (their hide ran out): done
        if batch
            .iter()
            .all(|m| kept_ids.contains(m.message_id().unwrap_or_default()))
        {
            kept_receipts.extend(batch.iter().map(|m| m.receipt_handle().unwrap_or_default().to_owned()));
            break;
        }
        for m in batch {
            let (id, receipt) = (
                m.message_id().unwrap_or_default(),
                m.receipt_handle().unwrap_or_default(),
            );
            if kept_ids.contains(id) {
                kept_receipts.push(receipt.to_owned());
                continue;
            }
            let body = m.body().unwrap_or_default();
            let Ok(parked) = serde_json::from_str::<DeliveryMessage>(body) else {
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get("morag_reason"))
                    .and_then(|v| v.string_value())
                    .unwrap_or("none");
                tracing::warn!(
                    message_id = id,
                    bytes = body.len(),
                    reason,
                    "not a delivery message; kept in the DLQ"
                );
                out.kept.push(id.to_owned());
                kept_ids.insert(id.to_owned());
                kept_receipts.push(receipt.to_owned());
                continue;
            };
            match deliveries.get_delivery(&parked.task_id, &parked.delivery_id).await? {
                None => {
                    tracing::warn!(
                        message_id = id,
                        "parked webhook message without a delivery; deleting it"
                    );
                    out.dropped += 1;
                }
                Some(d)
                    if d.cycle != parked.cycle || !matches!(d.state, DeliveryState::Dead | DeliveryState::Pending) =>
                {
                    tracing::info!(message_id = id, state = ?d.state, cycle = d.cycle, "delivery moved on since it was parked; deleting the message");
                    out.stale += 1;
                }
                Some(_) => match deliveries
                    .restart_delivery(&parked.task_id, &parked.delivery_id)
                    .await?
                {
                    Some(d) => {
                        morag_shared::outbox::enqueue_delivery(queue, deliveries, &d).await?;
                        out.moved += 1;
                    }
                    None => out.dropped += 1,
                },
            }
            delete(sqs, dlq_url, receipt).await?;
        }
    }
    let dlq = morag_shared::adapters::sqs::SqsQueue::new(sqs.clone(), dlq_url);
    let stuck = DeadLetterPeek::release(&dlq, &kept_receipts).await?;
    if stuck > 0 {
        tracing::warn!(stuck, "kept messages stay hidden until their visibility timeout (60 s)");
    }
    Ok(out)
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
