//! Webhook deliveries: one event to one URL, its attempts and where it
//! stands, the message that carries it through the webhook queue, the
//! delivery policy and retry schedule (`policy`) and signing (`signing`).

mod policy;
mod signing;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use policy::{classify, parse_retry_after, RetrySchedule, Verdict, MAX_GAPS, MAX_SQS_DELAY, WEBHOOK_MAX_RECEIVES};
pub use signing::{AsymmetricKey, Scheme, Schemes, Signed, Signer, SigningSecret, USER_AGENT};

use super::ids::{EndpointId, InvalidId, TaskId, TenantId};

/// What a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    TaskStarted,
    TaskProgress,
    TaskStalled,
    TaskCompleted,
    TaskFailed,
    /// Operational: one of the tenant's endpoints was disabled for failing
    /// through the whole failure window (sent to its other endpoints that
    /// subscribe to it).
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    /// Operational: a delivery spent its attempts without a success.
    #[serde(rename = "delivery.exhausted")]
    DeliveryExhausted,
    /// Operational: an endpoint was recovered (enabled, its missed
    /// deliveries replayed).
    #[serde(rename = "endpoint.recovered")]
    EndpointRecovered,
}

impl WebhookEvent {
    /// Every task event (what a task's `webhook_events` may name).
    pub const ALL: [WebhookEvent; 5] = [
        WebhookEvent::TaskStarted,
        WebhookEvent::TaskProgress,
        WebhookEvent::TaskStalled,
        WebhookEvent::TaskCompleted,
        WebhookEvent::TaskFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::TaskStarted => "task_started",
            WebhookEvent::TaskProgress => "task_progress",
            WebhookEvent::TaskStalled => "task_stalled",
            WebhookEvent::TaskCompleted => "task_completed",
            WebhookEvent::TaskFailed => "task_failed",
            WebhookEvent::EndpointDisabled => "endpoint.disabled",
            WebhookEvent::DeliveryExhausted => "delivery.exhausted",
            WebhookEvent::EndpointRecovered => "endpoint.recovered",
        }
    }

    /// Operational events: about the tenant's endpoints, not a task.
    pub const OPERATIONAL: [WebhookEvent; 3] = [
        WebhookEvent::EndpointDisabled,
        WebhookEvent::EndpointRecovered,
        WebhookEvent::DeliveryExhausted,
    ];

    /// A task event or an operational one (what an endpoint may subscribe to).
    pub fn parse_any(s: &str) -> Result<Self, String> {
        WebhookEvent::ALL
            .into_iter()
            .chain(WebhookEvent::OPERATIONAL)
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "event_types may contain task_started, task_progress, task_stalled, task_completed, task_failed, \
                     endpoint.disabled, endpoint.recovered, delivery.exhausted; not {s:?}"
                )
            })
    }
}

impl FromStr for WebhookEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            format!(
                "webhook_events may contain task_started, task_progress, task_stalled, task_completed, task_failed; \
                 not {s:?}"
            )
        })
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery's id and its `webhook-id` header: `msg_` and 24 lower-case hex
/// digits, derived from what it delivers, so the same event always gets the
/// same id (a redelivered status event cannot create a second delivery, and
/// every retry carries the same `webhook-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeliveryId(String);

impl DeliveryId {
    const HEX_DIGITS: usize = 24;

    /// The id of `event_type` for `task_id`; `discriminator` tells apart the
    /// deliveries of one type (a progress milestone, `once` otherwise).
    pub fn derive(task_id: &TaskId, event_type: WebhookEvent, discriminator: &str) -> Self {
        let digest = Sha256::digest(format!("{task_id}|{}|{discriminator}", event_type.as_str()).as_bytes());
        Self(format!("msg_{}", &hex::encode(digest)[..Self::HEX_DIGITS]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeliveryId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("msg_").unwrap_or("");
        if hex.len() == Self::HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId(
                "delivery_id must be msg_ and 24 lower-case hex digits".to_owned(),
            ))
        }
    }
}

impl TryFrom<String> for DeliveryId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeliveryId> for String {
    fn from(id: DeliveryId) -> Self {
        id.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for (another) attempt.
    Pending,
    Succeeded,
    /// Refused for good by the receiver (4xx other than 408/409/425/429, 410, 3xx).
    Failed,
    /// The attempt budget is spent; the message is in the webhook DLQ.
    Dead,
    /// A `task_progress` that a newer progress or a terminal delivery of the
    /// same task to the same target overtook before it was delivered: not
    /// sent (see [`overtaken_by`]).
    Superseded,
    /// Its endpoint was disabled when its turn came: not sent, its attempts
    /// not spent; a redelivery sends it again.
    Paused,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
            DeliveryState::Dead => "dead",
            DeliveryState::Superseded => "superseded",
            DeliveryState::Paused => "paused",
        }
    }
}

/// Why an attempt got no answer (stored, and shown in the API, as its
/// snake_case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptError {
    /// The target is (or resolves to) an address the policy refuses.
    BlockedAddress,
    /// The tenant has no usable signing secret (its stored one does not parse
    /// as `whsec_`; before secrets were provisioned at first use, also a
    /// tenant that had none).
    NoSigningSecret,
    /// The tenant endpoint it was for was deleted before it was sent.
    EndpointDeleted,
    Timeout,
    /// The connection could not be made.
    Connect,
    /// Any other failure of the request.
    Request,
    /// A kind written by a newer version.
    #[serde(other)]
    Unknown,
}

impl AttemptError {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptError::BlockedAddress => "blocked_address",
            AttemptError::NoSigningSecret => "no_signing_secret",
            AttemptError::EndpointDeleted => "endpoint_deleted",
            AttemptError::Timeout => "timeout",
            AttemptError::Connect => "connect",
            AttemptError::Request => "request",
            AttemptError::Unknown => "unknown",
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered.
    Answered {
        status: u16,
        /// The start of the response body.
        excerpt: Option<String>,
        /// The receiver's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Not sent, and never will be: sending again cannot help.
    Refused(AttemptError),
    /// Sent, but no answer came (timeout, connection failure): retried.
    NoAnswer(AttemptError),
}

impl AttemptOutcome {
    /// What the outcome means for the delivery.
    pub fn verdict(&self) -> Verdict {
        match self {
            AttemptOutcome::Answered { status, .. } => classify(*status),
            AttemptOutcome::Refused(_) => Verdict::Permanent,
            AttemptOutcome::NoAnswer(_) => Verdict::Retry,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptOutcome::Answered { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The attempt log entry for this outcome, an attempt of `cycle`.
    pub fn into_attempt(self, at: DateTime<Utc>, latency: Duration, cycle: u32) -> Attempt {
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let (status_code, error, excerpt) = match self {
            AttemptOutcome::Answered { status, excerpt, .. } => (Some(status), None, excerpt),
            AttemptOutcome::Refused(error) | AttemptOutcome::NoAnswer(error) => (None, Some(error), None),
        };
        Attempt {
            at,
            status_code,
            error,
            latency_ms,
            excerpt,
            cycle: Some(cycle),
        }
    }
}

/// One delivery attempt, as logged on the delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why there was no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    pub latency_ms: u64,
    /// The start of the response body (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// The attempt cycle it belongs to (absent on attempts stored before
    /// it was kept: taken as cycle 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<u32>,
}

/// A webhook delivery: one event to one URL, retried until it succeeds,
/// fails for good or runs out of attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub task_id: TaskId,
    pub tenant: TenantId,
    /// The `webhook-id`, the same on every attempt and redelivery.
    pub delivery_id: DeliveryId,
    pub event_type: WebhookEvent,
    pub url: String,
    /// The JSON body, fixed when the delivery is planned.
    pub payload: String,
    /// The task's event sequence when it was planned (its `data.sequence`;
    /// 0 on deliveries stored before it was kept).
    pub sequence: u64,
    /// The tenant endpoint it goes to; `None`: the task's own `webhook_url`.
    pub endpoint_id: Option<EndpointId>,
    pub state: DeliveryState,
    pub created_at: DateTime<Utc>,
    /// Whether its message is on the webhook queue (the outbox flag).
    pub enqueued: bool,
    /// Attempt cycle: 0, then one more per redelivery.
    pub cycle: u32,
    /// The latest attempts, oldest first: at most [`MAX_KEPT_ATTEMPTS`].
    pub attempts: Vec<Attempt>,
    /// Every attempt ever made, across cycles (older ones are counted here
    /// after they leave `attempts`).
    pub attempts_total: u32,
}

/// Attempts kept on a delivery item: a cycle has at most 21 (the longest
/// schedule), and every redelivery adds a cycle, so the list is trimmed to
/// the latest ones (an attempt is well under 2 KB; 30 keep the item far
/// below DynamoDB's 400 KB).
pub const MAX_KEPT_ATTEMPTS: usize = 30;

impl Delivery {
    /// Appends an attempt, keeping the latest [`MAX_KEPT_ATTEMPTS`].
    pub fn push_attempt(&mut self, attempt: Attempt) {
        self.attempts_total = self.attempts_total.max(self.attempts.len() as u32) + 1;
        self.attempts.push(attempt);
        let over = self.attempts.len().saturating_sub(MAX_KEPT_ATTEMPTS);
        self.attempts.drain(..over);
    }

    /// The webhook-queue message for the delivery's current cycle.
    pub fn message(&self) -> DeliveryMessage {
        DeliveryMessage {
            task_id: self.task_id,
            delivery_id: self.delivery_id.clone(),
            cycle: self.cycle,
            slot: None,
        }
    }

    /// Attempts made in the current cycle (the attempt budget is per
    /// cycle). Exact while the cycle's attempts are all kept: a cycle has
    /// at most 21, fewer than [`MAX_KEPT_ATTEMPTS`].
    pub fn attempts_in_cycle(&self) -> u32 {
        self.attempts
            .iter()
            .filter(|a| a.cycle.unwrap_or(0) == self.cycle)
            .count() as u32
    }
}

/// The delivery that overtook `d`, if `d` is a `task_progress` still worth
/// nothing to its receiver: another delivery of the same task to the same
/// target, planned by a later event, that is a `task_progress` (a newer
/// progress) or a `task_completed`/`task_failed` (the end). Only progress is
/// ever overtaken; a delivery without a sequence (stored before sequences
/// were kept) is never.
pub fn overtaken_by<'a>(d: &Delivery, same_task: &'a [Delivery]) -> Option<&'a Delivery> {
    if d.event_type != WebhookEvent::TaskProgress || d.sequence == 0 {
        return None;
    }
    same_task.iter().find(|o| {
        o.task_id == d.task_id
            && o.endpoint_id == d.endpoint_id
            && (o.endpoint_id.is_some() || o.url == d.url)
            && o.sequence > d.sequence
            && matches!(
                o.event_type,
                WebhookEvent::TaskProgress | WebhookEvent::TaskCompleted | WebhookEvent::TaskFailed
            )
    })
}

/// The message on the webhook queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub task_id: TaskId,
    pub delivery_id: DeliveryId,
    pub cycle: u32,
    /// The send slot its endpoint's rate limit gave it, when the sender put
    /// it back on the queue to wait for that slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<SendSlot>,
}

/// A reserved moment to send one attempt to a rate-limited endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendSlot {
    pub at: DateTime<Utc>,
    /// The attempt (of the delivery's cycle, 1-based) it was reserved for:
    /// a retry after it reserves anew.
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_attempt_keeps_the_latest_and_counts_all() {
        let task = TaskId::new();
        let mut d = Delivery {
            task_id: task,
            tenant: "acme".parse().unwrap(),
            delivery_id: DeliveryId::derive(&task, WebhookEvent::TaskStarted, "once"),
            event_type: WebhookEvent::TaskStarted,
            url: "https://example.com/h".to_owned(),
            payload: "{}".to_owned(),
            sequence: 1,
            endpoint_id: None,
            state: DeliveryState::Pending,
            created_at: crate::time::now(),
            enqueued: true,
            cycle: 0,
            attempts: Vec::new(),
            attempts_total: 0,
        };
        for i in 0..(MAX_KEPT_ATTEMPTS as u64 + 5) {
            d.push_attempt(Attempt {
                at: crate::time::now(),
                status_code: Some(500),
                error: None,
                latency_ms: i,
                excerpt: None,
                cycle: Some(0),
            });
        }
        assert_eq!(
            (d.attempts.len(), d.attempts_total),
            (MAX_KEPT_ATTEMPTS, MAX_KEPT_ATTEMPTS as u32 + 5)
        );
        assert_eq!(d.attempts[0].latency_ms, 5);
    }

    #[test]
    fn only_progress_is_overtaken_and_only_by_newer_progress_or_an_end() {
        let task = TaskId::new();
        let d = |event_type: WebhookEvent, sequence: u64, url: &str| Delivery {
            task_id: task,
            tenant: "acme".parse().unwrap(),
            delivery_id: DeliveryId::derive(&task, event_type, &sequence.to_string()),
            event_type,
            url: url.to_owned(),
            payload: "{}".to_owned(),
            sequence,
            endpoint_id: None,
            state: DeliveryState::Pending,
            created_at: crate::time::now(),
            enqueued: true,
            cycle: 0,
            attempts: Vec::new(),
            attempts_total: 0,
        };
        let (a, b) = ("https://a.example.com/h", "https://b.example.com/h");
        let progress = d(WebhookEvent::TaskProgress, 3, a);
        let by = |others: Vec<Delivery>| overtaken_by(&progress, &others).map(|o| o.sequence);
        assert_eq!(by(vec![d(WebhookEvent::TaskProgress, 5, a)]), Some(5));
        assert_eq!(by(vec![d(WebhookEvent::TaskCompleted, 6, a)]), Some(6));
        assert_eq!(by(vec![d(WebhookEvent::TaskFailed, 4, a)]), Some(4));
        // not by older ones, itself, another target, a start or a stall
        assert_eq!(by(vec![d(WebhookEvent::TaskProgress, 2, a), progress.clone()]), None);
        assert_eq!(by(vec![d(WebhookEvent::TaskCompleted, 9, b)]), None);
        assert_eq!(by(vec![d(WebhookEvent::TaskStalled, 9, a)]), None);
        assert_eq!(by(vec![d(WebhookEvent::TaskStarted, 9, a)]), None);
        // what is never overtaken
        let newer = [
            d(WebhookEvent::TaskCompleted, 99, a),
            d(WebhookEvent::TaskProgress, 98, a),
        ];
        for kind in [
            WebhookEvent::TaskStarted,
            WebhookEvent::TaskStalled,
            WebhookEvent::TaskCompleted,
            WebhookEvent::TaskFailed,
        ] {
            assert!(overtaken_by(&d(kind, 1, a), &newer).is_none(), "{kind:?}");
        }
        assert!(
            overtaken_by(&d(WebhookEvent::TaskProgress, 0, a), &newer).is_none(),
            "no sequence"
        );
    }

    #[test]
    fn delivery_ids_are_derived_and_parsed_strictly() {
        let task = TaskId::new();
        let id = DeliveryId::derive(&task, WebhookEvent::TaskStarted, "once");
        assert_eq!(id, DeliveryId::derive(&task, WebhookEvent::TaskStarted, "once"));
        assert_ne!(id, DeliveryId::derive(&task, WebhookEvent::TaskProgress, "once"));
        assert_eq!(id.as_str().parse::<DeliveryId>().unwrap(), id);
        assert_eq!(id.as_str().len(), 28);
        for bad in [
            "",
            "msg_",
            "msg_xyz",
            "MSG_0123456789abcdef01234567",
            "msg_0123456789ABCDEF01234567",
            "msg_0123456789abcdef012345678",
        ] {
            assert!(bad.parse::<DeliveryId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<DeliveryId>("\"msg_../../x\"").is_err());
    }

    #[test]
    fn outcomes_map_to_verdicts_and_attempts() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let answered = AttemptOutcome::Answered {
            status: 503,
            excerpt: Some("busy".into()),
            retry_after: Some(Duration::from_secs(9)),
        };
        assert_eq!(answered.verdict(), Verdict::Retry);
        assert_eq!(answered.retry_after(), Some(Duration::from_secs(9)));
        let a = answered.into_attempt(at, Duration::from_millis(12), 0);
        assert_eq!((a.status_code, a.error, a.latency_ms), (Some(503), None, 12));
        assert_eq!(
            AttemptOutcome::Refused(AttemptError::BlockedAddress).verdict(),
            Verdict::Permanent
        );
        assert_eq!(
            AttemptOutcome::NoAnswer(AttemptError::Timeout).verdict(),
            Verdict::Retry
        );
        let a = AttemptOutcome::NoAnswer(AttemptError::Timeout).into_attempt(at, Duration::ZERO, 2);
        // stored and shown as the same strings as before the enum existed
        assert_eq!(serde_json::to_value(&a).unwrap()["error"], "timeout");
        assert_eq!(a.cycle, Some(2));
        let old: Attempt =
            serde_json::from_str(r#"{"at":"2023-11-14T22:13:20Z","error":"no_signing_secret","latency_ms":0}"#)
                .unwrap();
        assert_eq!(old.error, Some(AttemptError::NoSigningSecret));
        let newer: Attempt =
            serde_json::from_str(r#"{"at":"2023-11-14T22:13:20Z","error":"from_the_future","latency_ms":0}"#).unwrap();
        assert_eq!(newer.error, Some(AttemptError::Unknown));
    }
}
