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

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use tracing::Instrument;

use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::adapters::sqs::{SqsDeadLetters, SqsVisibility};
use morag_shared::aws::SdkConfig;
use morag_shared::config::SenderConfig;
use morag_shared::domain::TenantId;
use morag_shared::error::StoreError;
use morag_shared::net::{check_target_url, TargetPolicy};
use morag_shared::outbound;
use morag_shared::ports::{
    Attempt, DeadLetters, Delivery, DeliveryMessage, DeliveryState, DeliveryStore, SecretStore, Visibility,
};
use morag_shared::webhook::{
    classify, parse_retry_after, signature_header, RetrySchedule, SigningSecret, Verdict, USER_AGENT,
};

/// Response bytes read at most (the rest is dropped).
const BODY_CAP: usize = 4096;
/// Characters of the response kept on the attempt.
const EXCERPT_CHARS: usize = 256;
/// How long signing secrets are trusted in a warm function.
const SECRET_CACHE: Duration = Duration::from_secs(60);

pub struct Sender {
    pub deliveries: Arc<dyn DeliveryStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub visibility: Arc<dyn Visibility>,
    pub dead_letters: Arc<dyn DeadLetters>,
    /// One client for every delivery of a warm function.
    pub http: reqwest::Client,
    pub schedule: RetrySchedule,
    pub policy: TargetPolicy,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        deliveries: Arc<dyn DeliveryStore>,
        secrets: Arc<dyn SecretStore>,
        visibility: Arc<dyn Visibility>,
        dead_letters: Arc<dyn DeadLetters>,
        http: reqwest::Client,
        schedule: RetrySchedule,
        policy: TargetPolicy,
    ) -> Self {
        Self {
            deliveries,
            secrets,
            visibility,
            dead_letters,
            http,
            schedule,
            policy,
            secret_cache: Mutex::default(),
        }
    }

    pub fn from_sdk(sdk: &SdkConfig, cfg: &SenderConfig) -> Self {
        Self::from_sdk_with_lookup(sdk, cfg, outbound::system_lookup())
    }

    /// With a chosen name lookup (tests map names to addresses).
    pub fn from_sdk_with_lookup(sdk: &SdkConfig, cfg: &SenderConfig, lookup: outbound::Lookup) -> Self {
        let store = Arc::new(DynamoStore::new(morag_shared::aws::dynamodb(sdk), &cfg.table));
        let sqs = morag_shared::aws::sqs(sdk);
        Self::new(
            store.clone(),
            store,
            Arc::new(SqsVisibility::new(sqs.clone(), &cfg.webhook_queue_url)),
            Arc::new(SqsDeadLetters::new(sqs, &cfg.webhook_dlq_url)),
            outbound::client_with_agent(cfg.target_policy, lookup, cfg.connect_timeout, cfg.timeout, USER_AGENT),
            cfg.schedule.clone(),
            cfg.target_policy,
        )
    }

    /// Handles one SQS batch; deliveries run concurrently.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = join_all(event.records.into_iter().map(|r| self.handle_record(r))).await;
        morag_shared::batch::failures(outcomes.into_iter().flatten())
    }

    /// `Some(message id)` when the record must be reported failed.
    async fn handle_record(&self, record: SqsMessage) -> Option<String> {
        let Some(message_id) = record.message_id else {
            tracing::error!("SQS record without a messageId; cannot report it");
            return None;
        };
        let body = record.body.unwrap_or_default();
        let message: DeliveryMessage = match serde_json::from_str(&body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%message_id, error = %e, "malformed webhook message; parking it in the DLQ");
                return match self
                    .dead_letters
                    .park(&body, "invalid_message", &e.to_string(), &message_id)
                    .await
                {
                    Ok(()) => None,
                    Err(_) => Some(message_id),
                };
            }
        };
        let receive_count: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let receipt = record.receipt_handle.unwrap_or_default();
        let span = tracing::info_span!(
            "delivery",
            %message_id,
            task_id = %message.task_id,
            delivery_id = %message.delivery_id,
            attempt = receive_count,
        );
        match self
            .deliver(&message, receive_count, &receipt)
            .instrument(span.clone())
            .await
        {
            Ok(Outcome::Done) => None,
            Ok(Outcome::Again) => Some(message_id),
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "delivery bookkeeping failed; SQS will retry"));
                Some(message_id)
            }
        }
    }

    async fn secrets_for(&self, tenant: &TenantId) -> Result<Option<Vec<SigningSecret>>, StoreError> {
        if let Some((secrets, at)) = self.secret_cache.lock().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            if at.elapsed() < SECRET_CACHE {
                return Ok(Some(secrets.clone()));
            }
        }
        let Some(texts) = self.secrets.signing_secrets(tenant).await? else {
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
        let (verdict, status_code, error, excerpt, retry_after) = self.attempt(&delivery).await?;
        let record = Attempt {
            at: morag_shared::time::now(),
            status_code,
            error: error.clone(),
            latency_ms: started.elapsed().as_millis() as u64,
            excerpt,
        };
        // (the RNG must not live across an await)
        let next_delay = self
            .schedule
            .delay_after(attempt_no, retry_after, &mut rand::thread_rng());
        let (state, outcome) = match verdict {
            Verdict::Success => (DeliveryState::Succeeded, Outcome::Done),
            Verdict::Permanent => (DeliveryState::Failed, Outcome::Done),
            Verdict::Retry => match next_delay {
                Some(delay) => {
                    if let Err(e) = self.visibility.delay(receipt, delay).await {
                        tracing::warn!(error = %e, "could not set the retry delay; the queue's visibility timeout applies");
                    }
                    tracing::info!(delay_s = delay.as_secs(), "will retry");
                    (DeliveryState::Pending, Outcome::Again)
                }
                None => {
                    // budget spent: let SQS move it to the DLQ on its next receive
                    let _ = self.visibility.delay(receipt, Duration::ZERO).await;
                    (DeliveryState::Dead, Outcome::Again)
                }
            },
        };
        self.deliveries
            .record_attempt(&delivery.task_id, &delivery.delivery_id, delivery.cycle, &record, state)
            .await?;
        tracing::info!(
            ?state,
            status_code,
            error = error.as_deref().unwrap_or(""),
            latency_ms = record.latency_ms,
            "attempt recorded"
        );
        Ok(outcome)
    }

    #[allow(clippy::type_complexity)]
    async fn attempt(
        &self,
        delivery: &Delivery,
    ) -> Result<(Verdict, Option<u16>, Option<String>, Option<String>, Option<Duration>), StoreError> {
        if check_target_url(&delivery.url, self.policy, true).is_err() {
            return Ok((Verdict::Permanent, None, Some("blocked_address".to_owned()), None, None));
        }
        let Some(secrets) = self.secrets_for(&delivery.tenant).await? else {
            return Ok((
                Verdict::Permanent,
                None,
                Some("no_signing_secret".to_owned()),
                None,
                None,
            ));
        };
        let timestamp = morag_shared::time::now().timestamp();
        let signature = signature_header(&secrets, &delivery.delivery_id, timestamp, delivery.payload.as_bytes());
        let sent = self
            .http
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.delivery_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if outbound::blocked_by_policy(&e).is_some() {
                    return Ok((Verdict::Permanent, None, Some("blocked_address".to_owned()), None, None));
                } else if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                return Ok((Verdict::Retry, None, Some(kind.to_owned()), None, None));
            }
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
        let excerpt = (!excerpt.is_empty()).then_some(excerpt);
        Ok((classify(status), Some(status), None, excerpt, retry_after))
    }
}

#[cfg(test)]
mod tests;
