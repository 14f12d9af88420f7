//! SQS batch plumbing shared by the SQS functions.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};

use crate::error::StoreError;
use crate::ports::{Delivery, DeliveryMessage, DeliveryStore, WebhookQueue};

/// A partial-batch response naming only the failed message ids.
pub fn failures(ids: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = ids
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Puts a delivery's current cycle on the webhook queue, then marks it
/// enqueued (the outbox flag). Callers that fail between the two leave it
/// unsent; the recorder's outbox flush or a redelivery sends it again.
pub async fn enqueue_delivery(
    queue: &dyn WebhookQueue,
    store: &dyn DeliveryStore,
    d: &Delivery,
) -> Result<(), StoreError> {
    let message = DeliveryMessage {
        task_id: d.task_id,
        delivery_id: d.delivery_id.clone(),
        cycle: d.cycle,
    };
    queue.enqueue(&message).await?;
    store.mark_enqueued(&d.task_id, &d.delivery_id, d.cycle).await
}
