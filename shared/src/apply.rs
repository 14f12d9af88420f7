//! Applying one lifecycle event to its task: read, decide (pure), write the
//! task, its history entry and its webhook deliveries in one transaction
//! (retried on a concurrent change), then put the deliveries on the webhook
//! queue (the outbox). The recorder applies pipeline events this way, the
//! watchdog its own (`stalled`, `timed_out`, `processing_failed`).

use futures_util::stream::{self, StreamExt};

use crate::domain::{
    decide_linked, ApplyOutcome, Decision, Delivery, DeliveryState, Ignored, Links, Retention, StatusEvent, Task,
    TaskId, TaskStatus,
};
use crate::endpoints::EndpointCache;
use crate::error::StoreError;
use crate::outbox::enqueue_delivery;
use crate::ports::{DeliveryStore, TaskStore, WebhookQueue};

/// Optimistic-concurrency retries before giving up.
const MAX_CONFLICTS: usize = 5;
/// Deliveries put on the webhook queue at once.
const ENQUEUE_CONCURRENCY: usize = 16;

/// What applying one event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied: the task's new status and the number of webhooks enqueued.
    Applied(TaskStatus, u32),
    /// Kept out, with the number of outbox webhooks enqueued.
    Ignored(Ignored, u32),
    UnknownTask,
}

/// The ports an event is applied through.
pub struct Applier<'a> {
    pub tasks: &'a dyn TaskStore,
    pub deliveries: &'a dyn DeliveryStore,
    pub webhooks: &'a dyn WebhookQueue,
    pub retention: &'a Retention,
    /// On a duplicate event, enqueue the task's unsent deliveries (the
    /// recorder: a redelivered event retries a writer that died before its
    /// enqueue). The watchdog leaves them to its outbox sweep.
    pub flush_on_duplicate: bool,
    /// The deployment's public API URL, for the webhooks' `data.status_url`.
    pub api_base: Option<&'a str>,
    /// The tenants' endpoints, which get the task's webhooks too.
    pub endpoints: &'a EndpointCache,
}

impl Applier<'_> {
    /// Applies `event`. `known`: the task as last read or written (consecutive
    /// events of one task need no second read; the conditional write still
    /// guards it); updated to the task as written.
    pub async fn apply(&self, event: &StatusEvent, known: &mut Option<Task>) -> Result<Applied, StoreError> {
        for _ in 0..MAX_CONFLICTS {
            let task = match known.take() {
                Some(task) => task,
                None => match self.tasks.get_task(&event.task_id).await? {
                    Some(task) => task,
                    None => return Ok(Applied::UnknownTask),
                },
            };
            let endpoints = self.endpoints.of_tenant(&task.tenant).await?;
            let links = Links {
                api_base: self.api_base,
                endpoints: &endpoints,
            };
            let (after, entry, planned) = match decide_linked(&task, event, links) {
                Decision::Ignore(why) => {
                    // a redelivered event may be the retry of a writer that
                    // died before enqueueing its webhooks: finish that job
                    let flushed = if why == Ignored::Duplicate && self.flush_on_duplicate {
                        self.flush_outbox(&task.task_id).await?
                    } else {
                        0
                    };
                    *known = Some(task);
                    return Ok(Applied::Ignored(why, flushed));
                }
                Decision::Apply { task, entry, webhooks } => (task, entry, webhooks),
            };
            let now = crate::time::now();
            let deliveries: Vec<Delivery> = planned.into_iter().map(|p| p.into_delivery(&after, now)).collect();
            match self
                .tasks
                .apply_event(&task, &after, &entry, &deliveries, self.retention)
                .await?
            {
                ApplyOutcome::Applied => {
                    let status = after.status;
                    *known = Some(*after);
                    let sent = self.enqueue(&deliveries).await?;
                    return Ok(Applied::Applied(status, sent));
                }
                // changed since read: read again and decide again
                ApplyOutcome::Conflict => {
                    tracing::debug!("task changed concurrently; deciding again")
                }
            }
        }
        Err(StoreError::Conflict {
            op: "apply_event",
            detail: format!("task kept changing over {MAX_CONFLICTS} attempts"),
        })
    }

    /// Puts deliveries on the webhook queue and marks them enqueued, up to
    /// [`ENQUEUE_CONCURRENCY`] at a time (an event to 100 endpoints is 200
    /// of them). A failure is returned once all were tried: the caller's
    /// retry (or the watchdog) sends the rest.
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<u32, StoreError> {
        // a disabled endpoint's are stored paused, not sent
        // futures built in a loop, not by a closure: a closure over `&Delivery`
        // would make the recorder's future not `Send` for every lifetime
        let mut sends = Vec::new();
        for d in deliveries {
            if d.state != DeliveryState::Pending {
                continue;
            }
            sends.push(async move {
                enqueue_delivery(self.webhooks, self.deliveries, d).await?;
                tracing::info!(delivery_id = %d.delivery_id, event_type = %d.event_type, "webhook enqueued");
                Ok::<(), StoreError>(())
            });
        }
        let results: Vec<Result<(), StoreError>> = stream::iter(sends)
            .buffer_unordered(ENQUEUE_CONCURRENCY)
            .collect()
            .await;
        let sent = results.iter().filter(|r| r.is_ok()).count() as u32;
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    async fn flush_outbox(&self, task_id: &TaskId) -> Result<u32, StoreError> {
        // the writer may have died before its second fan-out stage too
        let expanded = self.deliveries.expand_fanout(task_id).await?;
        if expanded > 0 {
            tracing::warn!(
                deliveries = expanded,
                "wrote the fan-out a previous attempt left as markers"
            );
        }
        let unsent = self.deliveries.unsent_deliveries(task_id).await?;
        if !unsent.is_empty() {
            tracing::warn!(
                count = unsent.len(),
                "enqueueing webhooks a previous attempt left unsent"
            );
        }
        self.enqueue(&unsent).await
    }
}
