//! A local event-source mapping (one per mapping the stack has, see `stack`): polls an SQS queue and invokes a handler
//! with batches the way Lambda's SQS integration does (up to 10 records,
//! partial batch failures honoured: successful records are deleted, failed
//! ones are left for their visibility timeout to expire, so SQS's redrive
//! policy moves them to the DLQ after `maxReceiveCount` receives).

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
}

/// Receives one batch (waiting up to `wait`), runs `handler`, deletes what
/// succeeded.
pub async fn poll_once<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch_size: i32,
    wait: Duration,
    handler: F,
) -> Result<Polled>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch_size.clamp(1, 10))
        .wait_time_seconds(wait.as_secs().min(20) as i32)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .context("ReceiveMessage")?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(Polled::default());
    }
    let mut receipts = Vec::with_capacity(messages.len());
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.md5_of_body = m.md5_of_body.clone();
        record.attributes = m
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        record.event_source = Some("aws:sqs".to_owned());
        record.aws_region = Some("us-east-1".to_owned());
        receipts.push((m.message_id.unwrap_or_default(), m.receipt_handle.unwrap_or_default()));
        event.records.push(record);
    }
    let received = receipts.len();
    let response = handler(event).await;
    let ids: HashSet<&str> = receipts.iter().map(|(id, _)| id.as_str()).collect();
    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    // Lambda treats a failure id that is not in the batch as a whole-batch failure
    if failed.iter().any(|id| !ids.contains(id)) {
        tracing::error!(
            queue_url,
            "handler reported an unknown message id; the whole batch is retried"
        );
        return Ok(Polled {
            received,
            deleted: 0,
            failed: received,
        });
    }
    let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
        .iter()
        .enumerate()
        .filter(|(_, (id, _))| !failed.contains(id.as_str()))
        .map(|(i, (_, receipt))| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
        })
        .collect::<Result<_, _>>()?;
    let deleted = entries.len();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("DeleteMessageBatch")?;
    }
    Ok(Polled {
        received,
        deleted,
        failed: failed.len(),
    })
}

/// Polls `queue_url` forever in batches of `batch_size` (the mapping's
/// `BatchSize`), logging what each batch did.
pub async fn run<F, Fut>(sqs: aws_sdk_sqs::Client, queue_url: String, batch_size: i32, name: &'static str, handler: F)
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    loop {
        match poll_once(&sqs, &queue_url, batch_size, Duration::from_secs(1), &handler).await {
            Ok(p) if p.received > 0 => {
                tracing::info!(
                    function = name,
                    received = p.received,
                    deleted = p.deleted,
                    failed = p.failed,
                    "batch"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(function = name, error = %format!("{e:#}"), "poll failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A function an event-source mapping invokes with SQS batches.
pub trait SqsFunction: Send + Sync + 'static {
    fn handle(&self, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send;
}

impl SqsFunction for morag_recorder::Recorder {
    fn handle(&self, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send {
        morag_recorder::Recorder::handle(self, event)
    }
}

impl SqsFunction for morag_processor::Processor {
    fn handle(&self, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send {
        morag_processor::Processor::handle(self, event)
    }
}

impl SqsFunction for morag_webhook_sender::Sender {
    fn handle(&self, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send {
        morag_webhook_sender::Sender::handle(self, event)
    }
}

/// Starts a local copy of the stack's event-source mapping of function
/// `logical_id`: its queue, its batch size. Refuses a mapping without
/// `ReportBatchItemFailures` (every SQS function reports partial failures).
pub fn start<F: SqsFunction>(
    sqs: &aws_sdk_sqs::Client,
    stack: &crate::stack::LocalStack,
    logical_id: &'static str,
    function: std::sync::Arc<F>,
) -> Result<()> {
    let event = stack.queue_event(logical_id)?;
    anyhow::ensure!(
        event
            .function_response_types
            .iter()
            .any(|t| t == "ReportBatchItemFailures"),
        "{logical_id}'s event source mapping must report batch item failures"
    );
    tokio::spawn(run(
        sqs.clone(),
        event.queue_url.clone(),
        event.batch_size,
        logical_id,
        move |batch| {
            let function = function.clone();
            async move { function.handle(batch).await }
        },
    ));
    Ok(())
}
