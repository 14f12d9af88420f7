//! The status recorder: applies pipeline status events (SQS status-events
//! queue) to tasks, one transaction per event, and reports partial batch
//! failures.
//!
//! - Records of one task are applied in batch order; tasks run concurrently.
//! - A malformed message, or one for an unknown task, is parked in the
//!   status-events DLQ with the reason as message attributes and deleted from
//!   the queue: it would never succeed, so it is not retried.
//! - A dependency failure fails that record and the later records of the same
//!   task in the batch (so they are retried in order), never the rest.
//! - Duplicate, stale, already-started and post-terminal events are kept out
//!   of the state, logged and counted.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use tracing::Instrument;

use morag_shared::apply::{Applied, Applier};
use morag_shared::batch::{self, Batch, Received, Unparseable};
use morag_shared::domain::{Ignored, Retention, StatusEvent, Task, TaskId};
use morag_shared::endpoints::EndpointCache;
use morag_shared::error::StoreError;
use morag_shared::ports::{DeadLetters, DeliveryStore, TaskStore, WebhookQueue};

pub mod wiring;

pub struct Recorder {
    pub tasks: Arc<dyn TaskStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    /// The tenants' webhook endpoints (cached).
    pub endpoints: Arc<EndpointCache>,
    pub webhooks: Arc<dyn WebhookQueue>,
    pub dead_letters: Arc<dyn DeadLetters>,
    pub retention: Retention,
    /// The API's base URL, for the webhooks' `data.status_url`.
    pub public_api_url: Option<String>,
}

/// What happened to the records of one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub applied: u32,
    pub duplicate: u32,
    pub stale: u32,
    pub terminal: u32,
    pub already_started: u32,
    pub parked_malformed: u32,
    pub parked_unknown_task: u32,
    pub failed: u32,
    pub webhooks_enqueued: u32,
}

impl BatchStats {
    fn add(&mut self, o: &BatchStats) {
        self.applied += o.applied;
        self.duplicate += o.duplicate;
        self.stale += o.stale;
        self.terminal += o.terminal;
        self.already_started += o.already_started;
        self.parked_malformed += o.parked_malformed;
        self.parked_unknown_task += o.parked_unknown_task;
        self.failed += o.failed;
        self.webhooks_enqueued += o.webhooks_enqueued;
    }

    fn ignored(&mut self, why: Ignored) {
        match why {
            Ignored::Duplicate => self.duplicate += 1,
            Ignored::Stale => self.stale += 1,
            Ignored::Terminal => self.terminal += 1,
            Ignored::AlreadyStarted | Ignored::NotRunning => self.already_started += 1,
        }
    }

    /// One CloudWatch Embedded Metric Format line, so the counts become metrics
    /// without an API call.
    pub fn emf(&self) -> String {
        let names = [
            ("EventsApplied", self.applied),
            ("EventsDuplicate", self.duplicate),
            ("EventsStale", self.stale),
            ("EventsAfterTerminal", self.terminal),
            ("EventsAlreadyStarted", self.already_started),
            ("EventsParkedMalformed", self.parked_malformed),
            ("EventsParkedUnknownTask", self.parked_unknown_task),
            ("EventsFailed", self.failed),
            ("WebhooksEnqueued", self.webhooks_enqueued),
        ];
        morag_shared::telemetry::emf("status-recorder", &names)
    }
}

impl Recorder {
    /// Handles one SQS batch; only failed records are reported.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_with_stats(event).await.0
    }

    pub async fn handle_with_stats(&self, event: SqsEvent) -> (SqsBatchResponse, BatchStats) {
        let now = morag_shared::time::now();
        let mut stats = BatchStats::default();
        let batch = Batch::parse(event, |body| {
            StatusEvent::parse(body, now).map_err(|bad| Unparseable {
                reason: bad.code,
                detail: bad.detail,
            })
        });
        stats.failed += batch.without_id;
        let (parked, mut failures) = batch::park_rejected(self.dead_letters.as_ref(), batch.rejected).await;
        stats.parked_malformed += parked;
        stats.failed += failures.len() as u32;

        // one group per task, in batch order within it
        let mut groups: Vec<Vec<Received<StatusEvent>>> = Vec::new();
        let mut index: HashMap<TaskId, usize> = HashMap::new();
        for record in batch.received {
            let slot = *index.entry(record.message.task_id).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[slot].push(record);
        }
        let results = join_all(groups.into_iter().map(|records| self.record_in_order(records))).await;
        for (group_stats, group_failures) in results {
            stats.add(&group_stats);
            failures.extend(group_failures);
        }

        tracing::info!(?stats, "batch recorded");
        (batch::failures(failures), stats)
    }

    /// The records of one task, in order; after a failure the rest are failed too.
    async fn record_in_order(&self, records: Vec<Received<StatusEvent>>) -> (BatchStats, Vec<String>) {
        let mut stats = BatchStats::default();
        let mut failures = Vec::new();
        let mut records = records.into_iter();
        // the task as last read or written: consecutive events of one task
        // need no second read (the conditional write still guards it)
        let mut known: Option<Task> = None;
        while let Some(Received {
            message_id,
            message: event,
            ..
        }) = records.next()
        {
            let span = tracing::info_span!(
                "record",
                %message_id,
                task_id = %event.task_id,
                event_id = %event.event_id,
                status = ?event.status,
            );
            let ok = async {
                match self.record(&event, &mut known).await {
                    Ok(Applied::Applied(status, webhooks)) => {
                        stats.applied += 1;
                        stats.webhooks_enqueued += webhooks;
                        tracing::info!(new_status = %status, webhooks, "event applied");
                        true
                    }
                    Ok(Applied::Ignored(why, webhooks)) => {
                        stats.ignored(why);
                        stats.webhooks_enqueued += webhooks;
                        tracing::info!(ignored = why.as_str(), webhooks, "event kept out of the state");
                        true
                    }
                    Ok(Applied::UnknownTask) => {
                        tracing::warn!("status event for an unknown task; parking it in the DLQ");
                        let body = serde_json::to_string(&event).unwrap_or_default();
                        let detail = format!("no task {}", event.task_id);
                        match self
                            .dead_letters
                            .park(&body, "unknown_task", &detail, &message_id)
                            .await
                        {
                            Ok(()) => stats.parked_unknown_task += 1,
                            Err(e) => {
                                tracing::error!(error = %e, "could not park; leaving it to SQS");
                                stats.failed += 1;
                                failures.push(message_id.clone());
                            }
                        }
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not record the event; SQS will retry it");
                        false
                    }
                }
            }
            .instrument(span)
            .await;
            if !ok {
                // this record, and this task's later records behind it
                stats.failed += 1;
                failures.push(message_id);
                for later in records.by_ref() {
                    stats.failed += 1;
                    failures.push(later.message_id);
                }
            }
        }
        (stats, failures)
    }

    async fn record(&self, event: &StatusEvent, known: &mut Option<Task>) -> Result<Applied, StoreError> {
        Applier {
            tasks: self.tasks.as_ref(),
            deliveries: self.deliveries.as_ref(),
            webhooks: self.webhooks.as_ref(),
            retention: &self.retention,
            flush_on_duplicate: true,
            api_base: self.public_api_url.as_deref(),
            endpoints: &self.endpoints,
        }
        .apply(event, known)
        .await
    }
}

#[cfg(test)]
mod tests;
