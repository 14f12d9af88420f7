//! The watchdog: a scheduled run that moves every record nobody else will
//! move. It reads only what is due (the due index, oldest first, in pages,
//! within a time budget) and each step is idempotent and claimed, so two
//! runs at once do each thing once:
//!
//! - a `pending` task whose job was never confirmed on the queue: the job is
//!   sent again (same `job_id`) after a claim;
//! - a running task whose worker missed its heartbeat: `stalled`, with a
//!   `task_stalled` webhook;
//! - a task past its deadline: `failed` with `timed_out`;
//! - a delivery left in the outbox, or whose queue message is gone without
//!   a final state: enqueued again (same `webhook-id`);
//! - a job in the processing DLQ: its task `failed` with
//!   `processing_failed`; the message stays for `morag dlq redrive`;
//! - a delivery message in the webhook DLQ whose delivery still says
//!   `pending` (its last receive recorded no attempt): `dead`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Instrument;

use morag_shared::apply::{Applied, Applier};
use morag_shared::config::{DEFAULT_HISTORY_TTL_DAYS, DEFAULT_TASK_TTL_DAYS};
use morag_shared::domain::watch::{self, Due, Watched, WATCH_SHARDS};
use morag_shared::domain::{
    DeliveryId, DeliveryMessage, DeliveryState, Ignored, JobMessage, Retention, StatusEvent, TaskId,
};
use morag_shared::endpoints::EndpointCache;
use morag_shared::error::StoreError;
use morag_shared::ports::{DeadJob, DeadLetterPeek, DeliveryStore, JobQueue, TaskStore, WatchIndex, WebhookQueue};

pub mod wiring;

/// How long a re-enqueue claim holds: a run that dies after claiming is
/// retried by a later run after it.
const REQUEUE_LEASE: chrono::Duration = chrono::Duration::minutes(2);

#[derive(Debug, Clone)]
pub struct WatchdogSettings {
    pub retention: Retention,
    /// A run takes no new work after this (below the function's timeout).
    pub time_budget: Duration,
    /// Due-index entries per query.
    pub page_size: usize,
    /// Messages read per run from each DLQ. Every run walks the whole DLQ up
    /// to this (a DLQ of N messages costs N/10 receives and N/10 releases a
    /// run); past it a run sees those SQS returns first, and a delivery it
    /// never sees is restarted after `watch::ATTEMPT_GRACE` instead.
    pub max_dlq_messages: usize,
    /// How long a peeked DLQ message stays hidden within a run, so the walk
    /// does not meet it twice (all are made visible again when the run
    /// ends); longer than the time budget.
    pub dlq_peek_hide: Duration,
    /// The API's base URL, for the webhooks' `data.status_url`.
    pub public_api_url: Option<String>,
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        Self {
            retention: Retention {
                history: Duration::from_secs(DEFAULT_HISTORY_TTL_DAYS * 86_400),
                ended_task: Duration::from_secs(DEFAULT_TASK_TTL_DAYS * 86_400),
            },
            time_budget: Duration::from_secs(45),
            page_size: 100,
            max_dlq_messages: 1_000,
            dlq_peek_hide: Duration::from_secs(60),
            public_api_url: None,
        }
    }
}

pub struct Watchdog {
    pub tasks: Arc<dyn TaskStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    /// The tenants' webhook endpoints (cached), for the events it applies.
    pub endpoints: Arc<EndpointCache>,
    pub index: Arc<dyn WatchIndex>,
    pub jobs: Arc<dyn JobQueue>,
    pub webhooks: Arc<dyn WebhookQueue>,
    pub dead_jobs: Arc<dyn DeadLetterPeek>,
    pub dead_webhooks: Arc<dyn DeadLetterPeek>,
    pub settings: WatchdogSettings,
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Due-index entries read (what the run cost, whatever the table's size).
    pub entries_read: u32,
    pub jobs_requeued: u32,
    pub tasks_stalled: u32,
    pub tasks_timed_out: u32,
    /// Tasks failed because their job was dead-lettered.
    pub tasks_dead_lettered: u32,
    /// Outbox deliveries enqueued, and lost ones enqueued in a new cycle.
    pub deliveries_sent: u32,
    pub deliveries_restarted: u32,
    /// Deliveries still `pending` whose message was in the webhook DLQ: now `dead`.
    pub deliveries_dead_lettered: u32,
    /// Deliveries written out from fan-out markers a writer left.
    pub deliveries_expanded: u32,
    /// Due, but another writer (or run) moved it on first.
    pub already_handled: u32,
    pub dead_jobs_read: u32,
    /// Webhook DLQ messages read.
    pub dead_deliveries_read: u32,
    /// DLQ messages that are not a job (parked as `invalid_job`) or whose
    /// task is gone.
    pub dead_jobs_without_task: u32,
    pub errors: u32,
    /// The time budget ran out before everything due was handled (the next
    /// run continues).
    pub out_of_time: bool,
}

impl Report {
    /// One CloudWatch Embedded Metric Format line.
    pub fn emf(&self) -> String {
        let names = [
            ("WatchdogEntriesRead", self.entries_read),
            ("WatchdogJobsRequeued", self.jobs_requeued),
            ("WatchdogTasksStalled", self.tasks_stalled),
            ("WatchdogTasksTimedOut", self.tasks_timed_out),
            ("WatchdogTasksDeadLettered", self.tasks_dead_lettered),
            ("WatchdogDeliveriesSent", self.deliveries_sent),
            ("WatchdogDeliveriesRestarted", self.deliveries_restarted),
            ("WatchdogDeliveriesDeadLettered", self.deliveries_dead_lettered),
            ("WatchdogDeliveriesExpanded", self.deliveries_expanded),
            ("WatchdogErrors", self.errors),
        ];
        morag_shared::telemetry::emf("watchdog", &names)
    }
}

/// What checking one entry did.
enum Done {
    Requeued,
    Stalled,
    TimedOut,
    Sent,
    Restarted,
    Expanded(u32),
    AlreadyHandled,
}

impl Watchdog {
    /// One run at `now` (the clock is a parameter: tests move it).
    pub async fn run(&self, now: DateTime<Utc>) -> Report {
        let started = Instant::now();
        let mut report = Report::default();
        'shards: for shard in 0..WATCH_SHARDS {
            let mut start = None;
            loop {
                if started.elapsed() >= self.settings.time_budget {
                    report.out_of_time = true;
                    break 'shards;
                }
                let page = match self.index.due(shard, now, self.settings.page_size, start).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, shard, "could not read the due index");
                        report.errors += 1;
                        break;
                    }
                };
                report.entries_read += page.items.len() as u32;
                for entry in page.items {
                    let span = match &entry {
                        Watched::Task(t) => tracing::info_span!("due", task_id = %t),
                        Watched::Delivery(t, d) => tracing::info_span!("due", task_id = %t, delivery_id = %d),
                        Watched::Fanout(t) => tracing::info_span!("due", task_id = %t, fanout = true),
                    };
                    match self.check(&entry, now).instrument(span.clone()).await {
                        Ok(done) => report.count(done),
                        Err(e) => {
                            span.in_scope(
                                || tracing::error!(error = %e, "could not handle a due entry; the next run retries"),
                            );
                            report.errors += 1;
                        }
                    }
                }
                match page.next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
        }
        if !report.out_of_time {
            self.dead_lettered_jobs(now, started, &mut report).await;
            self.dead_lettered_deliveries(started, &mut report).await;
        }
        tracing::info!(?report, "watchdog run");
        report
    }

    fn applier(&self) -> Applier<'_> {
        Applier {
            tasks: self.tasks.as_ref(),
            deliveries: self.deliveries.as_ref(),
            webhooks: self.webhooks.as_ref(),
            retention: &self.settings.retention,
            flush_on_duplicate: false,
            api_base: self.settings.public_api_url.as_deref(),
            endpoints: &self.endpoints,
        }
    }

    async fn check(&self, entry: &Watched, now: DateTime<Utc>) -> Result<Done, StoreError> {
        match entry {
            Watched::Task(task_id) => self.check_task(task_id, now).await,
            Watched::Delivery(task_id, delivery_id) => self.check_delivery(task_id, delivery_id, now).await,
            Watched::Fanout(task_id) => self.expand_fanout(task_id).await,
        }
    }

    /// An event's deliveries its writer left as fan-out markers: written
    /// out now, in the outbox and already due (the next run sends them).
    async fn expand_fanout(&self, task_id: &TaskId) -> Result<Done, StoreError> {
        match self.deliveries.expand_fanout(task_id).await? {
            0 => Ok(Done::AlreadyHandled),
            n => {
                tracing::warn!(deliveries = n, "fan-out a writer left as markers: written out");
                Ok(Done::Expanded(n))
            }
        }
    }

    async fn check_task(&self, task_id: &TaskId, now: DateTime<Utc>) -> Result<Done, StoreError> {
        let Some(task) = self.tasks.get_task(task_id).await? else {
            return Ok(Done::AlreadyHandled);
        };
        let (event, done) = match watch::due(&task, now) {
            Due::Nothing => return Ok(Done::AlreadyHandled),
            Due::Requeue => {
                if !self.tasks.claim_requeue(&task, now, now + REQUEUE_LEASE).await? {
                    return Ok(Done::AlreadyHandled);
                }
                let job = task.job();
                let message_id = self.jobs.enqueue(&job).await?;
                self.tasks.mark_job_enqueued(&task).await?;
                tracing::warn!(%message_id, job_id = %job.job_id, "job never confirmed on the queue: sent again");
                return Ok(Done::Requeued);
            }
            Due::Stall => (watch::stalled(&task, now), Done::Stalled),
            Due::TimeOut => (watch::timed_out(&task, now), Done::TimedOut),
        };
        Ok(match self.applier().apply(&event, &mut Some(task)).await? {
            Applied::Applied(status, webhooks) => {
                tracing::warn!(%status, webhooks, event_id = %event.event_id, "watchdog applied");
                done
            }
            Applied::Ignored(..) | Applied::UnknownTask => Done::AlreadyHandled,
        })
    }

    async fn check_delivery(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Done, StoreError> {
        let Some(mut delivery) = self.deliveries.get_delivery(task_id, delivery_id).await? else {
            return Ok(Done::AlreadyHandled);
        };
        if delivery.state != DeliveryState::Pending {
            return Ok(Done::AlreadyHandled);
        }
        let mut done = Done::Sent;
        if delivery.enqueued {
            // enqueued, no final state, no attempt when one was due: the
            // message is gone; a new cycle (fresh attempts, same webhook-id)
            match self.deliveries.restart_lost(task_id, delivery_id, now).await? {
                Some(restarted) => delivery = restarted,
                // claimed or attempted since this run read the index
                None => return Ok(Done::AlreadyHandled),
            }
            done = Done::Restarted;
        }
        if !self
            .deliveries
            .claim_unsent(task_id, delivery_id, delivery.cycle)
            .await?
        {
            return Ok(Done::AlreadyHandled);
        }
        if let Err(e) = self.webhooks.enqueue(&delivery.message()).await {
            // back to the outbox for the next run
            if let Err(undo) = self.deliveries.restart_delivery(task_id, delivery_id).await {
                tracing::error!(error = %undo, "claimed delivery not sent and not released; the next run after the attempt grace sends it");
            }
            return Err(e);
        }
        tracing::warn!(cycle = delivery.cycle, "delivery the outbox never sent: enqueued");
        Ok(done)
    }

    /// Reads up to `max` distinct messages of `dlq` without consuming them:
    /// each is hidden while the run walks on; the caller makes them all
    /// visible again with `release_all` (they stay for `morag dlq redrive`).
    async fn peek_all(
        &self,
        dlq: &dyn DeadLetterPeek,
        max: usize,
        started: Instant,
        report: &mut Report,
    ) -> (Vec<DeadJob>, Vec<String>) {
        let mut seen = HashSet::new();
        let (mut messages, mut receipts) = (Vec::new(), Vec::new());
        while messages.len() < max && started.elapsed() < self.settings.time_budget {
            let batch = match dlq
                .peek((max - messages.len()).min(10), self.settings.dlq_peek_hide)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "could not read a dead-letter queue");
                    report.errors += 1;
                    break;
                }
            };
            let before = messages.len();
            for message in batch {
                receipts.push(message.receipt_handle.clone());
                if seen.insert(message.message_id.clone()) {
                    messages.push(message);
                }
            }
            if messages.len() == before {
                break;
            }
        }
        (messages, receipts)
    }

    async fn release_all(&self, dlq: &dyn DeadLetterPeek, receipts: Vec<String>) {
        let hidden_s = self.settings.dlq_peek_hide.as_secs();
        match dlq.release(&receipts).await {
            Ok(0) => {}
            Ok(failed) => tracing::warn!(failed, hidden_s, "peeked DLQ messages stay hidden until their timeout"),
            Err(e) => tracing::warn!(error = %e, hidden_s, "peeked DLQ messages stay hidden until their timeout"),
        }
    }

    /// Fails the task of every job parked in the processing DLQ (at most
    /// `max_dlq_messages` per run).
    async fn dead_lettered_jobs(&self, now: DateTime<Utc>, started: Instant, report: &mut Report) {
        let (jobs, receipts) = self
            .peek_all(self.dead_jobs.as_ref(), self.settings.max_dlq_messages, started, report)
            .await;
        for job in jobs {
            report.dead_jobs_read += 1;
            let Ok(parsed) = serde_json::from_str::<JobMessage>(&job.body) else {
                report.dead_jobs_without_task += 1;
                continue;
            };
            let reason = job.reason.clone().unwrap_or_else(|| {
                "the job failed on every delivery and was moved to the processing dead-letter queue".to_owned()
            });
            let span = tracing::info_span!("dead_job", task_id = %parsed.task_id, message_id = %job.message_id);
            match self
                .fail_dead_lettered(&parsed, &reason, now)
                .instrument(span.clone())
                .await
            {
                Ok(Applied::Applied(..)) => report.tasks_dead_lettered += 1,
                Ok(Applied::UnknownTask) => report.dead_jobs_without_task += 1,
                Ok(Applied::Ignored(..)) => {}
                Err(e) => {
                    span.in_scope(|| tracing::error!(error = %e, "could not fail the task of a dead-lettered job"));
                    report.errors += 1;
                }
            }
        }
        self.release_all(self.dead_jobs.as_ref(), receipts).await;
    }

    /// Ends as `dead` every delivery whose message reached the webhook DLQ
    /// while the delivery still says `pending` (at most `max_dlq_messages`
    /// per run): SQS moves a message after its last allowed receive, and a
    /// receive spent by a crashed or timed-out sender records no attempt, so
    /// the sender never wrote the final state. The message stays for
    /// `morag dlq redrive`, which starts a new cycle.
    async fn dead_lettered_deliveries(&self, started: Instant, report: &mut Report) {
        let (messages, receipts) = self
            .peek_all(
                self.dead_webhooks.as_ref(),
                self.settings.max_dlq_messages,
                started,
                report,
            )
            .await;
        for message in messages {
            report.dead_deliveries_read += 1;
            let Ok(parked) = serde_json::from_str::<DeliveryMessage>(&message.body) else {
                continue; // not a delivery message: `morag dlq redrive` reports it
            };
            let span =
                tracing::info_span!("dead_delivery", task_id = %parked.task_id, delivery_id = %parked.delivery_id);
            let ended = self.give_up_parked(&parked).instrument(span.clone()).await;
            match ended {
                Ok(true) => {
                    span.in_scope(|| tracing::warn!("delivery dead-lettered without a final attempt: marked dead"));
                    report.deliveries_dead_lettered += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    span.in_scope(|| tracing::error!(error = %e, "could not mark a dead-lettered delivery dead"));
                    report.errors += 1;
                }
            }
        }
        self.release_all(self.dead_webhooks.as_ref(), receipts).await;
    }

    /// Ends the delivery of a parked message `dead` if it is still pending
    /// in the message's cycle. Read first: most parked messages belong to
    /// deliveries already `dead`, seen again every run, and a read costs a
    /// tenth of a refused conditional write.
    async fn give_up_parked(&self, parked: &DeliveryMessage) -> Result<bool, StoreError> {
        let Some(delivery) = self
            .deliveries
            .get_delivery(&parked.task_id, &parked.delivery_id)
            .await?
        else {
            return Ok(false);
        };
        if delivery.state != DeliveryState::Pending || delivery.cycle != parked.cycle {
            return Ok(false);
        }
        self.deliveries
            .give_up(&parked.task_id, &parked.delivery_id, parked.cycle)
            .await
    }

    async fn fail_dead_lettered(
        &self,
        job: &JobMessage,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let Some(task) = self.tasks.get_task(&job.task_id).await? else {
            return Ok(Applied::UnknownTask);
        };
        if task.status.is_terminal() {
            return Ok(Applied::Ignored(Ignored::Terminal, 0));
        }
        let event: StatusEvent = watch::dead_lettered(&task, reason, now);
        let applied = self.applier().apply(&event, &mut Some(task)).await?;
        if let Applied::Applied(..) = applied {
            tracing::warn!(reason, "job dead-lettered: task failed");
        }
        Ok(applied)
    }
}

impl Report {
    fn count(&mut self, done: Done) {
        match done {
            Done::Requeued => self.jobs_requeued += 1,
            Done::Stalled => self.tasks_stalled += 1,
            Done::TimedOut => self.tasks_timed_out += 1,
            Done::Sent => self.deliveries_sent += 1,
            Done::Restarted => self.deliveries_restarted += 1,
            Done::Expanded(n) => self.deliveries_expanded += n,
            Done::AlreadyHandled => self.already_handled += 1,
        }
    }
}
