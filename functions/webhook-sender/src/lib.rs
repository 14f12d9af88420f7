//! The webhook sender (SQS webhook queue, partial batch failures): signs and
//! POSTs each delivery, records every attempt, and backs off through the
//! queue itself.
//!
//! - 2xx: `succeeded`. 3xx (not followed), 410 and 4xx other than
//!   408/409/425/429: `failed`, never retried.
//! - 5xx, 408, 409, 425, 429, timeouts and connection errors: the message's
//!   visibility is set to the next gap of the retry schedule (±20 % jitter,
//!   `Retry-After` honoured up to 12 h) and the record is reported failed, so
//!   SQS delivers it again then. After the last attempt the delivery is `dead`,
//!   the visibility is set to 0 and the queue's `maxReceiveCount` (= attempts)
//!   moves the message to the webhook DLQ on its next receive.
//! - Targets are checked again at send time: the name is resolved, every
//!   address must be public, and the connection goes to the checked address.
//! - A receiver's failure never touches the task: only the delivery item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use morag_shared::batch::{self, Handled, Received};
use morag_shared::domain::delivery::{parse_retry_after, signature_header, RetrySchedule, SigningSecret, Verdict};
use morag_shared::domain::{AttemptError, AttemptOutcome, Delivery, DeliveryMessage, DeliveryState, TenantId};
use morag_shared::error::StoreError;
use morag_shared::outbound::{self, check_target_url, TargetPolicy};
use morag_shared::ports::{DeadLetters, DeliveryStore, SecretStore, Visibility};

pub mod wiring;

/// Response bytes read at most (the rest is dropped).
const BODY_CAP: usize = 4096;
/// Characters of the response kept on the attempt.
const EXCERPT_CHARS: usize = 256;
/// How long signing secrets are trusted in a warm function.
const SECRET_CACHE: Duration = Duration::from_secs(60);

/// What the sender talks to.
pub struct SenderPorts {
    pub deliveries: Arc<dyn DeliveryStore>,
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
}

pub struct Sender {
    ports: SenderPorts,
    /// One client for every delivery of a warm function (see `wiring`).
    http: reqwest::Client,
    settings: SenderSettings,
    secret_cache: Mutex<HashMap<TenantId, (Vec<SigningSecret>, Instant)>>,
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
        let message = record.message;
        let span = tracing::info_span!(
            "delivery",
            task_id = %message.task_id,
            delivery_id = %message.delivery_id,
            attempt = record.receive_count,
        );
        match self
            .deliver(&message, record.receive_count, &record.receipt_handle)
            .instrument(span.clone())
            .await
        {
            Ok(Outcome::Done) => Handled::Done,
            Ok(Outcome::Again) => Handled::Again,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "delivery bookkeeping failed; SQS will retry"));
                Handled::Again
            }
        }
    }

    async fn secrets_for(&self, tenant: &TenantId) -> Result<Option<Vec<SigningSecret>>, StoreError> {
        if let Some((secrets, at)) = self.secret_cache.lock().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            if at.elapsed() < SECRET_CACHE {
                return Ok(Some(secrets.clone()));
            }
        }
        let Some(texts) = self.ports.secrets.signing_secrets(tenant).await? else {
            return Ok(None);
        };
        let secrets: Vec<SigningSecret> = texts.iter().filter_map(|t| SigningSecret::parse(t).ok()).collect();
        if secrets.is_empty() {
            return Ok(None);
        }
        self.secret_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), (secrets.clone(), Instant::now()));
        Ok(Some(secrets))
    }

    /// One attempt for one delivery message.
    pub async fn deliver(
        &self,
        message: &DeliveryMessage,
        attempt_no: u32,
        receipt: &str,
    ) -> Result<Outcome, StoreError> {
        let Some(delivery) = self
            .ports
            .deliveries
            .get_delivery(&message.task_id, &message.delivery_id)
            .await?
        else {
            tracing::warn!("delivery no longer exists; dropping its message");
            return Ok(Outcome::Done);
        };
        if delivery.cycle != message.cycle || delivery.state != DeliveryState::Pending {
            tracing::info!(state = ?delivery.state, cycle = delivery.cycle, "message of a finished or older cycle; nothing to do");
            return Ok(Outcome::Done);
        }
        let started = Instant::now();
        let outcome = self.attempt(&delivery).await?;
        let verdict = outcome.verdict();
        // (the RNG must not live across an await)
        let next_delay = self
            .settings
            .schedule
            .delay_after(attempt_no, outcome.retry_after(), &mut rand::thread_rng());
        let record = outcome.into_attempt(morag_shared::time::now(), started.elapsed());
        let mut next_attempt = None;
        let (state, result) = match verdict {
            Verdict::Success => (DeliveryState::Succeeded, Outcome::Done),
            Verdict::Permanent => (DeliveryState::Failed, Outcome::Done),
            Verdict::Retry => match next_delay {
                Some(delay) => {
                    if let Err(e) = self.ports.visibility.delay(receipt, delay).await {
                        tracing::warn!(error = %e, "could not set the retry delay; the queue's visibility timeout applies");
                    }
                    tracing::info!(delay_s = delay.as_secs(), "will retry");
                    next_attempt = chrono::Duration::from_std(delay)
                        .ok()
                        .map(|d| morag_shared::time::now() + d);
                    (DeliveryState::Pending, Outcome::Again)
                }
                None => {
                    // budget spent: let SQS move it to the DLQ on its next receive
                    if let Err(e) = self.ports.visibility.delay(receipt, Duration::ZERO).await {
                        tracing::warn!(error = %e, "could not release the message; it reaches the DLQ after its visibility timeout");
                    }
                    (DeliveryState::Dead, Outcome::Again)
                }
            },
        };
        self.ports
            .deliveries
            .record_attempt(
                &delivery.task_id,
                &delivery.delivery_id,
                delivery.cycle,
                &record,
                state,
                next_attempt,
            )
            .await?;
        tracing::info!(
            ?state,
            status_code = record.status_code,
            error = record.error.map_or("", AttemptError::as_str),
            latency_ms = record.latency_ms,
            "attempt recorded"
        );
        Ok(result)
    }

    /// Signs and sends one delivery; what came of it.
    async fn attempt(&self, delivery: &Delivery) -> Result<AttemptOutcome, StoreError> {
        if check_target_url(&delivery.url, self.settings.policy, true).is_err() {
            return Ok(AttemptOutcome::Refused(AttemptError::BlockedAddress));
        }
        let Some(secrets) = self.secrets_for(&delivery.tenant).await? else {
            return Ok(AttemptOutcome::Refused(AttemptError::NoSigningSecret));
        };
        let id = delivery.delivery_id.as_str();
        let timestamp = morag_shared::time::now().timestamp();
        let signature = signature_header(&secrets, id, timestamp, delivery.payload.as_bytes());
        let sent = self
            .http
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) if outbound::blocked_by_policy(&e).is_some() => {
                return Ok(AttemptOutcome::Refused(AttemptError::BlockedAddress))
            }
            Err(e) if e.is_timeout() => return Ok(AttemptOutcome::NoAnswer(AttemptError::Timeout)),
            Err(e) if e.is_connect() => return Ok(AttemptOutcome::NoAnswer(AttemptError::Connect)),
            Err(_) => return Ok(AttemptOutcome::NoAnswer(AttemptError::Request)),
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
        Ok(AttemptOutcome::Answered {
            status,
            excerpt: (!excerpt.is_empty()).then_some(excerpt),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests;
