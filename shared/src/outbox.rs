//! The delivery outbox: a delivery is stored first (with its task's event, or
//! by a redelivery) and only then put on the webhook queue and marked
//! enqueued. A caller that fails between the two leaves it unsent; the
//! recorder's outbox flush or a redelivery sends it again.

use crate::domain::{Delivery, Endpoint, TenantId};
use crate::error::StoreError;
use crate::ports::{DeliveryStore, EndpointStore, WebhookQueue};

/// Puts a delivery's current cycle on the webhook queue, then marks it enqueued.
pub async fn enqueue_delivery(
    queue: &dyn WebhookQueue,
    store: &dyn DeliveryStore,
    d: &Delivery,
) -> Result<(), StoreError> {
    queue.enqueue(&d.message()).await?;
    store.mark_enqueued(&d.task_id, &d.delivery_id, d.cycle).await
}

/// How long an operational webhook's delivery is kept (as task history).
pub const OPERATIONAL_TTL_DAYS: i64 = 7;

/// Plans an operational webhook over the tenant's endpoints (`plan`, e.g.
/// `fanout::endpoint_disabled`) and sends it: each delivery stored in the
/// outbox first (the watchdog sends it if the enqueue fails), then put on
/// the queue. Answers how many endpoints were told.
pub async fn announce(
    endpoints: &dyn EndpointStore,
    store: &dyn DeliveryStore,
    queue: &dyn WebhookQueue,
    tenant: &TenantId,
    plan: impl FnOnce(&[Endpoint]) -> Vec<Delivery>,
) -> Result<usize, StoreError> {
    let all = endpoints.list_endpoints(tenant).await?;
    let deliveries = plan(&all);
    let expires_at = crate::time::now() + chrono::Duration::days(OPERATIONAL_TTL_DAYS);
    for d in &deliveries {
        store.insert_delivery(d, expires_at).await?;
        enqueue_delivery(queue, store, d).await?;
    }
    Ok(deliveries.len())
}
