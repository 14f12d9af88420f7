//! The delivery outbox: a delivery is stored first (with its task's event, or
//! by a redelivery) and only then put on the webhook queue and marked
//! enqueued. A caller that fails between the two leaves it unsent; the
//! recorder's outbox flush or a redelivery sends it again.

use crate::domain::Delivery;
use crate::error::StoreError;
use crate::ports::{DeliveryStore, WebhookQueue};

/// Puts a delivery's current cycle on the webhook queue, then marks it enqueued.
pub async fn enqueue_delivery(
    queue: &dyn WebhookQueue,
    store: &dyn DeliveryStore,
    d: &Delivery,
) -> Result<(), StoreError> {
    queue.enqueue(&d.message()).await?;
    store.mark_enqueued(&d.task_id, &d.delivery_id, d.cycle).await
}
