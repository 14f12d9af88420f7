//! The webhook sender (SQS webhook queue, partial batch failures): signs and
//! POSTs each delivery, records every attempt, and backs off through the
//! queue itself.
//!
//! - 2xx: `succeeded`. 3xx (not followed), 410 and 4xx other than
//!   408/409/425/429: `failed`, never retried.
//! - 5xx, 408, 409, 425, 429, timeouts and connection errors: the message's
//!   visibility is set to the next gap of the retry schedule (±20 % jitter,
//!   `Retry-After` honoured, within SQS's 12 h from the receive) and the
//!   record is reported failed, so SQS delivers it again then.
//! - The budget is the schedule's attempts per cycle: an attempt's place in
//!   the schedule is the cycle's recorded attempts plus one, or the
//!   message's receive count if that is more (a receive that recorded no
//!   attempt still counts). After the last attempt, or on a receive past the
//!   budget, the delivery is `dead` and the sender parks the message in the
//!   webhook DLQ itself (`attempts_exhausted`). The queue's
//!   `maxReceiveCount` (25, above any schedule's 21 attempts) only parks
//!   messages whose sender dies on every receive.
//! - A tenant endpoint's circuit breaker: while the endpoint is failing,
//!   one delivery at a time probes it, at the schedule's pace (the first gap
//!   after the streak began, the next after each failed probe); the others
//!   wait, unattempted and unspent, and a success closes it. Its rate limit:
//!   each attempt takes a send slot (`interval` apart, no burst). A delivery
//!   that waits (for the breaker or a slot more than 3 s away) goes
//!   back on the queue as a new message delayed up to 15 minutes (with its
//!   slot, if it has one), so waiting spends neither attempts nor receives.
//! - Targets are checked again at send time: the name is resolved, every
//!   address must be public, and the connection goes to the checked address.
//! - A receiver's failure never touches the task: only the delivery item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use morag_shared::batch::{self, Handled, Received};
use morag_shared::domain::delivery::{overtaken_by, parse_retry_after, RetrySchedule, Signer, Verdict, MAX_SQS_DELAY};
use morag_shared::domain::endpoint::{Breaker, HealthChange};
use morag_shared::domain::{fanout, Endpoint};
use morag_shared::domain::{
    Attempt, AttemptError, AttemptOutcome, AttemptRecord, Delivery, DeliveryMessage, DeliveryState, SendSlot, TenantId,
    WebhookEvent,
};
use morag_shared::error::StoreError;
use morag_shared::outbound::{self, check_target_url, TargetPolicy};
use morag_shared::outbox;
use morag_shared::ports::{DeadLetters, DeliveryStore, EndpointStore, SecretStore, Visibility, WebhookQueue};

pub mod wiring;

/// How long before the function got a record SQS may have received it: the
/// event source's batching window (1 s in the template) and its hand-over.
const RECEIVE_SLACK: Duration = Duration::from_secs(60);

/// How long after a breaker's probe time its waiting deliveries come back:
/// a tenth of their wait, at most a minute (at random, so a backlog does not
/// return at once), and at least a second (the probe's answer first).
fn settle(wait: chrono::Duration) -> chrono::Duration {
    let most = (wait.num_milliseconds() / 10).clamp(1000, 60_000);
    chrono::Duration::milliseconds(rand::Rng::gen_range(&mut rand::thread_rng(), 1000..=most))
}

/// The longest visibility SQS accepts for a message received at about
/// `received_at`: 12 h from its receive, not from now.
fn visibility_left(received_at: Instant) -> Duration {
    MAX_SQS_DELAY.saturating_sub(received_at.elapsed() + RECEIVE_SLACK)
}

/// Response bytes read at most (the rest is dropped).
const BODY_CAP: usize = 4096;
/// Characters of the response kept on the attempt.
const EXCERPT_CHARS: usize = 256;
/// How long signing secrets are trusted in a warm function.
const SECRET_CACHE: Duration = Duration::from_secs(60);
/// A send slot at most this far ahead is waited for in the function; a
/// later one sends the message back to the queue until [`SLOT_LEAD`]
/// before it.
const MAX_SLOT_SLEEP: Duration = Duration::from_secs(3);
/// How early a message waiting for its slot comes back (the queue hands a
/// delayed message over a little after its delay, never before): the rest
/// is waited in the function, so the attempt goes at the slot.
const SLOT_LEAD: Duration = Duration::from_secs(2);
/// The longest a waiting delivery's message is delayed at once (SQS's
/// `DelaySeconds` limit): a longer wait is several such hops.
const MAX_WAIT_HOP: Duration = Duration::from_secs(900);
/// A new slot starts at least this far ahead (the reservation's write and
/// the request's preparation take place before it).
const RESERVE_LEAD: chrono::Duration = chrono::Duration::milliseconds(100);
/// A message's reserved slot is used only this long after its time: a
/// message that came back later (a slow hand-over, a redrive from the DLQ)
/// would send closer to the next slot than the interval, so it reserves
/// anew (its slot goes unused: the endpoint gets less than its limit,
/// never more).
const SLOT_LATE: chrono::Duration = chrono::Duration::milliseconds(25);

/// What the sender talks to.
pub struct SenderPorts {
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Tenant endpoints, read at every send of an endpoint's delivery.
    pub endpoints: Arc<dyn EndpointStore>,
    /// The webhook queue, for operational webhooks (`endpoint.disabled`).
    pub webhooks: Arc<dyn WebhookQueue>,
    pub secrets: Arc<dyn SecretStore>,
    /// The webhook queue's `ChangeMessageVisibility` (the backoff).
    pub visibility: Arc<dyn Visibility>,
    /// The webhook DLQ, for malformed messages.
    pub dead_letters: Arc<dyn DeadLetters>,
}

/// The delivery policy of one deployment.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub schedule: RetrySchedule,
    pub policy: TargetPolicy,
    /// How long an endpoint may fail every attempt before it is disabled.
    pub endpoint_failure_window: Duration,
    /// How long a probe holds a failing endpoint's breaker (longer than an
    /// attempt takes): a sender that dies mid-probe releases it by then.
    pub probe_lease: Duration,
    /// How long an attempt's timeline entry is kept (as a history entry).
    pub history_ttl: Duration,
}

pub struct Sender {
    ports: SenderPorts,
    /// One client for every delivery of a warm function (see `wiring`).
    http: reqwest::Client,
    settings: SenderSettings,
    secret_cache: Mutex<HashMap<TenantId, (Signer, Instant)>>,
}

/// Whether an endpoint's delivery goes now (its send slot reached, if its
/// endpoint has a rate limit) or waits until a time (with its slot).
enum Hold {
    Go,
    Wait(chrono::DateTime<chrono::Utc>, Option<SendSlot>),
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delete it: delivered, refused for good, or nothing left to do.
    Done,
    /// Leave it to SQS: retried after its visibility timeout, or moved to the DLQ.
    Again,
}

impl Sender {
    pub fn new(ports: SenderPorts, http: reqwest::Client, settings: SenderSettings) -> Self {
        Self {
            ports,
            http,
            settings,
            secret_cache: Mutex::default(),
        }
    }

    /// Handles one SQS batch; deliveries run concurrently.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        batch::for_each(
            event,
            self.ports.dead_letters.as_ref(),
            batch::json::<DeliveryMessage>("invalid_message"),
            |record| self.handle_record(record),
        )
        .await
    }

    async fn handle_record(&self, record: Received<DeliveryMessage>) -> Handled {
        let message = &record.message;
        let span = tracing::info_span!(
            "delivery",
            task_id = %message.task_id,
            delivery_id = %message.delivery_id,
            attempt = record.receive_count,
        );
        match self.deliver(&record).instrument(span.clone()).await {
            Ok(Outcome::Done) => Handled::Done,
            Ok(Outcome::Again) => Handled::Again,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "delivery bookkeeping failed; SQS will retry"));
                Handled::Again
            }
        }
    }

    /// What signs the tenant's webhooks (its schemes' secrets and keys); a
    /// tenant without signing gets its first here (it reads it at `GET
    /// /api/v1/webhooks/secret`), so no delivery fails for lack of a secret.
    /// `None`: its stored signing cannot sign (logged).
    async fn signer_for(&self, tenant: &TenantId) -> Result<Option<Signer>, StoreError> {
        if let Some((signer, at)) = self.secret_cache.lock().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            if at.elapsed() < SECRET_CACHE {
                return Ok(Some(signer.clone()));
            }
        }
        let (stored, created) = self.ports.secrets.secrets_or_provision(tenant).await?;
        if created {
            tracing::info!(%tenant, "tenant had no signing secret: provisioned its first");
        }
        let signer = match stored.signer(morag_shared::time::now()) {
            Ok(signer) if !signer.is_empty() => signer,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::error!(%tenant, error = %e, "the tenant's stored signing cannot sign");
                return Ok(None);
            }
        };
        self.secret_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), (signer.clone(), Instant::now()));
        Ok(Some(signer))
    }

    /// One receive of one delivery message: an attempt, unless the
    /// attempt budget (the schedule's, counted in receives) is spent.
    pub async fn deliver(&self, record: &Received<DeliveryMessage>) -> Result<Outcome, StoreError> {
        let message = &record.message;
        let Some(delivery) = self
            .ports
            .deliveries
            .get_delivery(&message.task_id, &message.delivery_id)
            .await?
        else {
            tracing::warn!("delivery no longer exists; dropping its message");
            return Ok(Outcome::Done);
        };
        let budget = self.settings.schedule.attempts();
        // this attempt's place in the cycle's schedule
        let attempt_no = (delivery.attempts_in_cycle() + 1).max(record.receive_count);
        let spent = attempt_no > budget;
        match delivery.state {
            _ if delivery.cycle != message.cycle => {
                tracing::info!(cycle = delivery.cycle, "message of an older cycle; nothing to do");
                return Ok(Outcome::Done);
            }
            DeliveryState::Pending if spent => {
                // receives that recorded no attempt (a sender that died, a
                // write that failed) spent the budget: end it here rather
                // than let the queue park it while the delivery says pending
                let ended = self
                    .ports
                    .deliveries
                    .give_up(&message.task_id, &message.delivery_id, message.cycle)
                    .await?;
                if !ended {
                    tracing::info!("the delivery moved on meanwhile; nothing to do");
                    return Ok(Outcome::Done);
                }
                tracing::warn!(
                    receives = record.receive_count,
                    budget,
                    "attempt budget spent without a final attempt: dead"
                );
                self.announce_exhausted(&delivery).await;
                return self.park(record, delivery.attempts.len()).await;
            }
            // dead, and its message came back: the parking after the last
            // attempt did not happen (a crash in between); park it now
            DeliveryState::Dead if spent => return self.park(record, delivery.attempts.len()).await,
            DeliveryState::Pending => {}
            state => {
                tracing::info!(?state, "message of a finished delivery; nothing to do");
                return Ok(Outcome::Done);
            }
        }
        if self.superseded(&delivery).await? {
            return Ok(Outcome::Done);
        }
        // a tenant endpoint's delivery goes where the endpoint points now
        // (`None`: the endpoint was deleted)
        let (url, endpoint) = match &delivery.endpoint_id {
            None => (Some(delivery.url.clone()), None),
            Some(id) => match self.ports.endpoints.get_endpoint(&delivery.tenant, id).await? {
                Some(e) if e.disabled => {
                    let ended = self.end_unattempted(&delivery, DeliveryState::Paused).await?;
                    tracing::info!(endpoint_id = %id, ended, "endpoint disabled: delivery paused, not spent");
                    return Ok(Outcome::Done);
                }
                Some(e) => match self.hold(record, &delivery, &e, attempt_no).await? {
                    Hold::Wait(until, slot) => {
                        self.wait(record, &delivery, until, slot).await?;
                        return Ok(Outcome::Done);
                    }
                    Hold::Go => (Some(e.url.clone()), Some(e)),
                },
                None => (None, None),
            },
        };
        let (outcome, latency) = match &url {
            // deleted: failed for good
            None => (AttemptOutcome::Refused(AttemptError::EndpointDeleted), Duration::ZERO),
            Some(url) => self.attempt(&delivery, url).await?,
        };
        let verdict = outcome.verdict();
        // (the RNG must not live across an await)
        let next_delay = self
            .settings
            .schedule
            .delay_after(attempt_no, outcome.retry_after(), &mut rand::thread_rng())
            .map(|d| d.min(visibility_left(record.received_at)));
        let attempt = outcome.into_attempt(morag_shared::time::now(), latency, delivery.cycle);
        let (state, next_attempt) = match (verdict, next_delay) {
            (Verdict::Success, _) => (DeliveryState::Succeeded, None),
            (Verdict::Permanent, _) => (DeliveryState::Failed, None),
            (Verdict::Retry, Some(delay)) => (
                DeliveryState::Pending,
                chrono::Duration::from_std(delay)
                    .ok()
                    .map(|d| morag_shared::time::now() + d),
            ),
            (Verdict::Retry, None) => (DeliveryState::Dead, None),
        };
        let recorded = self
            .ports
            .deliveries
            .record_attempt(
                &delivery.task_id,
                &delivery.delivery_id,
                delivery.cycle,
                &attempt,
                state,
                next_attempt,
            )
            .await?;
        if recorded {
            self.add_to_timeline(&delivery, &attempt, state, attempt_no).await;
        }
        tracing::info!(
            ?state,
            status_code = attempt.status_code,
            error = attempt.error.map_or("", AttemptError::as_str),
            latency_ms = attempt.latency_ms,
            "attempt recorded"
        );
        if let Some(endpoint) = &endpoint {
            self.track_health(endpoint, verdict == Verdict::Success).await;
        }
        match (state, next_delay) {
            (DeliveryState::Pending, Some(delay)) => {
                // a rejected change would bring the message back after the
                // queue's own timeout, spending the budget in minutes
                self.ports.visibility.delay(&record.receipt_handle, delay).await?;
                tracing::info!(delay_s = delay.as_secs(), "will retry");
                Ok(Outcome::Again)
            }
            (DeliveryState::Dead, _) => {
                let dead = Delivery {
                    state: DeliveryState::Dead,
                    attempts_total: delivery.attempts_total + 1,
                    ..delivery.clone()
                };
                self.announce_exhausted(&dead).await;
                self.park(record, delivery.attempts.len() + 1).await
            }
            _ => Ok(Outcome::Done),
        }
    }

    /// The attempt's entry on its task's timeline. Not fatal when it
    /// fails: the delivery's own attempt log (recorded just before) has it;
    /// the timeline's readers step over a number taken but never written.
    async fn add_to_timeline(&self, delivery: &Delivery, attempt: &Attempt, state: DeliveryState, attempt_no: u32) {
        let record = AttemptRecord {
            delivery_id: delivery.delivery_id.clone(),
            event_type: delivery.event_type,
            sequence: delivery.sequence,
            endpoint_id: delivery.endpoint_id.clone(),
            state,
            attempt_no,
            attempt: attempt.clone(),
        };
        let expires_at = attempt.at + morag_shared::time::span(self.settings.history_ttl);
        let appended = self
            .ports
            .deliveries
            .append_attempt_entry(&delivery.task_id, &record, expires_at)
            .await;
        if let Err(e) = appended {
            tracing::warn!(error = %e, "attempt recorded, but not on the task's timeline");
        }
    }

    /// Whether an endpoint's delivery may be attempted now (a probe the
    /// breaker let through, a send slot at most 3 s ahead) or must wait.
    async fn hold(
        &self,
        record: &Received<DeliveryMessage>,
        delivery: &Delivery,
        endpoint: &Endpoint,
        attempt_no: u32,
    ) -> Result<Hold, StoreError> {
        let now = morag_shared::time::now();
        let ep = &endpoint.endpoint_id;
        match endpoint.breaker(now) {
            Breaker::Closed => {}
            Breaker::Open { until } => {
                tracing::info!(endpoint_id = %ep, probe_at = %until, "endpoint failing: waits for the breaker's next probe");
                return Ok(Hold::Wait(until + settle(until - now), None));
            }
            Breaker::ProbeDue { expected } => {
                let lease = now + morag_shared::time::span(self.settings.probe_lease);
                let claimed = self
                    .ports
                    .endpoints
                    .claim_probe(&delivery.tenant, ep, expected, lease)
                    .await?;
                if !claimed {
                    // back shortly to see the probe's answer (or its lease)
                    tracing::info!(endpoint_id = %ep, "another delivery probes the failing endpoint: waits");
                    return Ok(Hold::Wait(now + settle(lease - now), None));
                }
                tracing::info!(endpoint_id = %ep, "probing the failing endpoint with this delivery");
            }
        }
        let Some(interval) = endpoint.send_interval() else {
            return Ok(Hold::Go);
        };
        // what the attempt needs, fetched before its slot (cached), so that
        // it leaves at its slot
        self.signer_for(&delivery.tenant).await?;
        // reserved for this attempt when the message was sent back
        let mut kept = record.message.slot.filter(|s| s.attempt == attempt_no).map(|s| s.at);
        for _ in 0..3 {
            let slot = match kept.take() {
                Some(at) => at,
                None => {
                    let ready = morag_shared::time::now() + RESERVE_LEAD;
                    self.ports
                        .endpoints
                        .reserve_send(&delivery.tenant, ep, interval, ready)
                        .await?
                }
            };
            let ahead = (slot - morag_shared::time::now()).to_std().unwrap_or_default();
            if ahead > MAX_SLOT_SLEEP {
                tracing::info!(endpoint_id = %ep, wait_ms = ahead.as_millis() as u64, "rate limit: waits for its send slot");
                let slot = SendSlot {
                    at: slot,
                    attempt: attempt_no,
                };
                return Ok(Hold::Wait(slot.at, Some(slot)));
            }
            tokio::time::sleep(ahead).await;
            if morag_shared::time::now() > slot + SLOT_LATE {
                // too late for it (a slow hand-over or write, a busy host):
                // sending now would crowd the next slot, so it goes unused
                continue;
            }
            return Ok(Hold::Go);
        }
        tracing::warn!(endpoint_id = %ep, "no send slot in time in three tries: waits a second");
        Ok(Hold::Wait(
            morag_shared::time::now() + chrono::Duration::seconds(1),
            None,
        ))
    }

    /// Puts a waiting delivery back on the queue until `until` (a new
    /// message, at most [`MAX_WAIT_HOP`] ahead, carrying its send slot),
    /// and moves its due-index entry past the wait; the received message
    /// is then deleted.
    async fn wait(
        &self,
        record: &Received<DeliveryMessage>,
        delivery: &Delivery,
        until: chrono::DateTime<chrono::Utc>,
        slot: Option<SendSlot>,
    ) -> Result<(), StoreError> {
        let now = morag_shared::time::now();
        let wait = (until - now).to_std().unwrap_or_default();
        // SQS delays in whole seconds: for a slot, early by the lead (the
        // function waits out the rest); for the breaker, never early
        let secs = match slot {
            Some(_) => wait.saturating_sub(SLOT_LEAD).as_secs(),
            None => wait.as_millis().div_ceil(1000) as u64,
        };
        let hop = Duration::from_secs(secs).clamp(Duration::from_secs(1), MAX_WAIT_HOP);
        self.ports
            .deliveries
            .postpone(&delivery.task_id, &delivery.delivery_id, delivery.cycle, until)
            .await?;
        let message = DeliveryMessage {
            slot,
            ..record.message.clone()
        };
        self.ports.webhooks.enqueue_after(&message, hop).await?;
        tracing::info!(
            hop_s = hop.as_secs(),
            "back on the queue until its turn (not attempted, not spent)"
        );
        Ok(())
    }

    /// Ends the delivery's current cycle in `state` without an attempt;
    /// `false` if it moved on meanwhile.
    async fn end_unattempted(&self, delivery: &Delivery, state: DeliveryState) -> Result<bool, StoreError> {
        self.ports
            .deliveries
            .end_unattempted(&delivery.task_id, &delivery.delivery_id, delivery.cycle, state)
            .await
    }

    /// Ends a `task_progress` delivery that a newer progress or the task's
    /// end to the same target overtook (`superseded`, no attempt): on its
    /// first receive or any retry, its receiver would only get a stale state
    /// after a newer one. One read of the few deliveries that could overtake
    /// it (`fanout::could_overtake`), for progress deliveries only.
    async fn superseded(&self, delivery: &Delivery) -> Result<bool, StoreError> {
        if delivery.event_type != WebhookEvent::TaskProgress || delivery.sequence == 0 {
            return Ok(false);
        }
        let candidates = morag_shared::domain::fanout::could_overtake(delivery);
        let same_task = self
            .ports
            .deliveries
            .get_deliveries(&delivery.task_id, &candidates)
            .await?;
        let Some(newer) = overtaken_by(delivery, &same_task) else {
            return Ok(false);
        };
        let ended = self.end_unattempted(delivery, DeliveryState::Superseded).await?;
        if ended {
            tracing::info!(
                by = %newer.delivery_id,
                by_event_type = %newer.event_type,
                sequence = delivery.sequence,
                by_sequence = newer.sequence,
                "progress overtaken before it was delivered: superseded, not sent"
            );
        } else {
            tracing::info!("the delivery moved on meanwhile; nothing to do");
        }
        Ok(true)
    }

    /// An attempt's outcome in its endpoint's health: a failure starts (or
    /// continues) a streak, a success ends it, and a streak longer than the
    /// failure window disables the endpoint and tells the tenant's other
    /// endpoints (`endpoint.disabled`). Health is bookkeeping: a failure
    /// here is logged, and the next attempt looks again.
    async fn track_health(&self, endpoint: &Endpoint, succeeded: bool) {
        let now = morag_shared::time::now();
        let change = endpoint.health_after(
            succeeded,
            now,
            self.settings.endpoint_failure_window,
            &self.settings.schedule,
        );
        if change == HealthChange::Unchanged {
            return;
        }
        let ports = &self.ports;
        let written = match ports
            .endpoints
            .update_health(&endpoint.tenant, &endpoint.endpoint_id, change, now)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, endpoint_id = %endpoint.endpoint_id, "could not record the endpoint's health");
                return;
            }
        };
        let HealthChange::Disable { since } = change else {
            tracing::info!(?change, written, endpoint_id = %endpoint.endpoint_id, "endpoint health");
            return;
        };
        if !written {
            // another attempt disabled it first (and told the tenant), or it recovered
            return;
        }
        tracing::warn!(
            endpoint_id = %endpoint.endpoint_id,
            failing_since = %since,
            "endpoint failed every attempt through the failure window: disabled; its queued deliveries pause"
        );
        if let Err(e) = self.announce_disabled(endpoint, since, now).await {
            tracing::error!(error = %e, endpoint_id = %endpoint.endpoint_id, "could not send endpoint.disabled");
        }
    }

    /// `endpoint.disabled` to the tenant's other endpoints that subscribe.
    async fn announce_disabled(
        &self,
        endpoint: &Endpoint,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.announce(&endpoint.tenant, WebhookEvent::EndpointDisabled, |others| {
            fanout::endpoint_disabled(endpoint, since, now, others)
        })
        .await
    }

    /// `delivery.exhausted` about a delivery that just went `dead`, to the
    /// tenant's other subscribed endpoints; logged, never failing the record.
    async fn announce_exhausted(&self, dead: &Delivery) {
        let now = morag_shared::time::now();
        let told = self
            .announce(&dead.tenant, WebhookEvent::DeliveryExhausted, |others| {
                fanout::delivery_exhausted(dead, now, others)
            })
            .await;
        if let Err(e) = told {
            tracing::error!(error = %e, "could not send delivery.exhausted");
        }
    }

    /// Sends an operational webhook through the shared outbox.
    async fn announce(
        &self,
        tenant: &TenantId,
        event_type: WebhookEvent,
        plan: impl FnOnce(&[Endpoint]) -> Vec<Delivery>,
    ) -> Result<(), StoreError> {
        let p = &self.ports;
        let told = outbox::announce(
            p.endpoints.as_ref(),
            p.deliveries.as_ref(),
            p.webhooks.as_ref(),
            tenant,
            plan,
        )
        .await?;
        if told > 0 {
            tracing::info!(%event_type, told, "operational webhook sent to the tenant's subscribed endpoints");
        }
        Ok(())
    }

    /// Parks a spent delivery's message in the webhook DLQ (for `morag dlq
    /// redrive`) and lets the queue delete it.
    async fn park(&self, record: &Received<DeliveryMessage>, attempts: usize) -> Result<Outcome, StoreError> {
        let body = serde_json::to_string(&record.message).map_err(|e| StoreError::Corrupt {
            what: "delivery message",
            detail: e.to_string(),
        })?;
        let detail = format!("{attempts} attempts recorded in {} receives", record.receive_count);
        self.ports
            .dead_letters
            .park(&body, "attempts_exhausted", &detail, &record.message_id)
            .await?;
        tracing::warn!(
            attempts,
            receives = record.receive_count,
            "delivery dead; message parked in the webhook DLQ"
        );
        Ok(Outcome::Done)
    }

    /// Signs and sends one delivery; what came of it, and how long the
    /// request took.
    async fn attempt(&self, delivery: &Delivery, url: &str) -> Result<(AttemptOutcome, Duration), StoreError> {
        if check_target_url(url, self.settings.policy, true).is_err() {
            return Ok((AttemptOutcome::Refused(AttemptError::BlockedAddress), Duration::ZERO));
        }
        let Some(signer) = self.signer_for(&delivery.tenant).await? else {
            return Ok((AttemptOutcome::Refused(AttemptError::NoSigningSecret), Duration::ZERO));
        };
        let started = Instant::now();
        let outcome = self.send_signed(delivery, url, &signer).await;
        Ok((outcome, started.elapsed()))
    }

    /// The request itself.
    async fn send_signed(&self, delivery: &Delivery, url: &str, signer: &Signer) -> AttemptOutcome {
        let id = delivery.delivery_id.as_str();
        let timestamp = morag_shared::time::now().timestamp();
        let signed = signer.sign(id, timestamp, delivery.payload.as_bytes());
        let mut request = self.http.post(url);
        if let Some(key_ids) = signed.key_ids {
            // which key made each v1a signature, in their order
            request = request.header("webhook-key-ids", key_ids);
        }
        let sent = request
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed.signature)
            // 1 on the first attempt, counting every attempt of every cycle
            .header("webhook-attempt", (delivery.attempts_total + 1).to_string())
            .body(delivery.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) if outbound::blocked_by_policy(&e).is_some() => {
                return AttemptOutcome::Refused(AttemptError::BlockedAddress)
            }
            Err(e) if e.is_timeout() => return AttemptOutcome::NoAnswer(AttemptError::Timeout),
            Err(e) if e.is_connect() => return AttemptOutcome::NoAnswer(AttemptError::Connect),
            Err(_) => return AttemptOutcome::NoAnswer(AttemptError::Request),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        while body.len() < BODY_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(BODY_CAP - body.len())]),
                _ => break,
            }
        }
        let excerpt: String = String::from_utf8_lossy(&body)
            .chars()
            .filter(|c| !c.is_control() || *c == ' ')
            .take(EXCERPT_CHARS)
            .collect();
        AttemptOutcome::Answered {
            status,
            excerpt: (!excerpt.is_empty()).then_some(excerpt),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests;
