//! Tenant webhook endpoints: URLs registered once for a tenant, each with
//! an event-type filter. Every event of every task of the tenant goes to
//! each enabled endpoint whose filter matches (next to the task's own
//! `webhook_url`), as one delivery per (event, endpoint).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::delivery::{RetrySchedule, WebhookEvent};
pub use super::ids::EndpointId;
use super::ids::TenantId;

/// Endpoints a tenant may have. One event plans at most two kinds of
/// webhook, so up to 2 × (100 + 1) deliveries: more than the event's one
/// transaction holds, so past that they are written in a second stage (the
/// DynamoDB adapter's fan-out markers), sized for this cap.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 100;
/// Longest endpoint description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// A tenant's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub tenant: TenantId,
    pub endpoint_id: EndpointId,
    /// Checked like a task's `webhook_url` when set, and again at every send.
    pub url: String,
    /// The event types it receives; never empty.
    pub event_types: Vec<WebhookEvent>,
    pub description: String,
    /// A disabled endpoint gets no new deliveries, and its queued ones are
    /// not sent.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When its current streak of failed attempts began (`None`: its last
    /// attempt succeeded, or none failed yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Why it is disabled, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<DisabledReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Most attempts started per second (`None`: no limit of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    /// While failing, the circuit breaker: failed probes of the streak so
    /// far (the place in the retry schedule of the next wait).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probes_failed: u32,
    /// While failing: when the next probe may go (queued deliveries wait
    /// until then), or until when the probe under way holds the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The highest `rate_limit_per_s` an endpoint may have.
pub const MAX_RATE_LIMIT_PER_S: u32 = 1000;

/// What the circuit breaker lets a delivery to the endpoint do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    /// Healthy: send.
    Closed,
    /// Failing and the next probe is not due: wait until then.
    Open { until: DateTime<Utc> },
    /// Failing and a probe is due: the delivery that claims it (the
    /// breaker's `probe_at` is still `expected`) is the probe; the others wait.
    ProbeDue { expected: Option<DateTime<Utc>> },
}

/// Why an endpoint is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// The tenant disabled it.
    Manual,
    /// Every attempt failed for the whole failure window.
    Failing,
}

/// How long an endpoint may fail every attempt before it is disabled (5
/// days, Svix's figure; `MORAG_ENDPOINT_FAILURE_WINDOW_SECONDS`).
pub const DEFAULT_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 86_400);

/// What an attempt's outcome does to its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    Unchanged,
    /// The first failure after a success (or ever): the streak starts, and
    /// the breaker opens until the first probe.
    StartFailing {
        at: DateTime<Utc>,
        probe_at: DateTime<Utc>,
    },
    /// A probe failed: the breaker stays open until the next one.
    ProbeFailed {
        probe_at: DateTime<Utc>,
    },
    /// A success ends the streak (and closes the breaker).
    Healthy,
    /// Failing since `since`, longer than the window: disable it.
    Disable {
        since: DateTime<Utc>,
    },
}

impl Endpoint {
    /// A new enabled, healthy endpoint of `tenant` at `url`, with a fresh
    /// id, no description and no rate limit.
    pub fn new(tenant: TenantId, url: String, event_types: Vec<WebhookEvent>, now: DateTime<Utc>) -> Self {
        Self {
            tenant,
            endpoint_id: EndpointId::generate(),
            url,
            event_types,
            description: String::new(),
            disabled: false,
            created_at: now,
            updated_at: now,
            failing_since: None,
            disabled_reason: None,
            disabled_at: None,
            rate_limit_per_s: None,
            probes_failed: 0,
            probe_at: None,
        }
    }

    /// Whether a webhook of `event_type` goes to this endpoint now.
    pub fn wants(&self, event_type: WebhookEvent) -> bool {
        !self.disabled && self.subscribes(event_type)
    }

    /// Whether its filter names `event_type` (enabled or not).
    pub fn subscribes(&self, event_type: WebhookEvent) -> bool {
        self.event_types.contains(&event_type)
    }

    /// The health change an attempt at `now` makes: only a success ends a
    /// streak of failures, a streak older than `window` disables it, and
    /// each failure opens the breaker for the schedule's next gap (the
    /// first gap after the streak starts, the `n + 1`-th after `n` failed
    /// probes, the last gap repeating).
    pub fn health_after(
        &self,
        succeeded: bool,
        now: DateTime<Utc>,
        window: std::time::Duration,
        schedule: &RetrySchedule,
    ) -> HealthChange {
        let after = |n: u32| now + crate::time::span(schedule.gap(n));
        match (succeeded, self.failing_since) {
            (true, Some(_)) => HealthChange::Healthy,
            (true, None) => HealthChange::Unchanged,
            (false, None) => HealthChange::StartFailing {
                at: now,
                probe_at: after(1),
            },
            (false, Some(since)) => {
                if self.disabled {
                    HealthChange::Unchanged
                } else if now - since >= crate::time::span(window) {
                    HealthChange::Disable { since }
                } else {
                    HealthChange::ProbeFailed {
                        probe_at: after(self.probes_failed + 2),
                    }
                }
            }
        }
    }

    /// The circuit breaker at `now`: closed while healthy; while failing,
    /// open until `probe_at` (the streak's start if none was set), then
    /// one delivery's turn to probe.
    pub fn breaker(&self, now: DateTime<Utc>) -> Breaker {
        let Some(since) = self.failing_since else {
            return Breaker::Closed;
        };
        match self.probe_at.unwrap_or(since) {
            until if now < until => Breaker::Open { until },
            _ => Breaker::ProbeDue {
                expected: self.probe_at,
            },
        }
    }

    /// The least time between the starts of two attempts to it: a second
    /// over its rate limit, and 3 % more, so that an attempt starting up to
    /// 25 ms after its slot (the sender's tolerance) and a few milliseconds
    /// of network jitter never put `rate_limit_per_s + 1` arrivals within
    /// one second at the receiver.
    pub fn send_interval(&self) -> Option<std::time::Duration> {
        self.rate_limit_per_s
            .filter(|r| *r > 0)
            .map(|r| std::time::Duration::from_nanos(1_030_000_000 / u64::from(r)))
    }

    /// Its failure streak and breaker forgotten (enabled again, recovered).
    pub fn reset_health(&mut self) {
        self.failing_since = None;
        self.probe_at = None;
        self.probes_failed = 0;
    }

    /// Enabled again (a PATCH, a recovery): a fresh start, its failure
    /// streak forgotten.
    pub fn enable(&mut self) {
        self.disabled = false;
        self.disabled_reason = None;
        self.disabled_at = None;
        self.reset_health();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_are_generated_and_parsed_strictly() {
        let id = EndpointId::generate();
        assert_eq!(id.as_str().len(), 27);
        assert_eq!(id.as_str().parse::<EndpointId>().unwrap(), id);
        assert_ne!(id, EndpointId::generate());
        for bad in [
            "",
            "ep_",
            "ep_0123456789abcdef0123456",
            "ep_0123456789abcdef012345678",
            "ep_0123456789ABCDEF01234567",
            "xx_0123456789abcdef01234567",
            "ep_0123456789abcdef0123456g",
        ] {
            assert!(bad.parse::<EndpointId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_disabled_endpoint_wants_nothing() {
        let mut e = Endpoint::new(
            "acme".parse().unwrap(),
            "https://hooks.example.com/h".to_owned(),
            vec![WebhookEvent::TaskCompleted],
            crate::time::now(),
        );
        assert!(e.wants(WebhookEvent::TaskCompleted));
        assert!(!e.wants(WebhookEvent::TaskProgress));
        e.disabled = true;
        assert!(!e.wants(WebhookEvent::TaskCompleted));
    }

    #[test]
    fn only_a_success_ends_a_streak_and_a_streak_past_the_window_disables() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let window = std::time::Duration::from_secs(3600);
        let mut e = Endpoint::new(
            "acme".parse().unwrap(),
            "https://hooks.example.com/h".to_owned(),
            WebhookEvent::ALL.to_vec(),
            t0,
        );
        let schedule: RetrySchedule = "5,300,1800".parse().unwrap();
        let later = |s: i64| t0 + chrono::Duration::seconds(s);
        assert_eq!(e.health_after(true, t0, window, &schedule), HealthChange::Unchanged);
        assert_eq!(
            e.health_after(false, t0, window, &schedule),
            HealthChange::StartFailing {
                at: t0,
                probe_at: later(5)
            }
        );
        e.failing_since = Some(t0);
        // each failed probe waits the schedule's next gap, the last repeating
        assert_eq!(
            e.health_after(false, later(10), window, &schedule),
            HealthChange::ProbeFailed { probe_at: later(310) }
        );
        e.probes_failed = 1;
        assert_eq!(
            e.health_after(false, later(400), window, &schedule),
            HealthChange::ProbeFailed { probe_at: later(2200) }
        );
        e.probes_failed = 7;
        assert_eq!(
            e.health_after(false, later(3599), window, &schedule),
            HealthChange::ProbeFailed {
                probe_at: later(3599 + 1800)
            }
        );
        assert_eq!(
            e.health_after(false, later(3600), window, &schedule),
            HealthChange::Disable { since: t0 }
        );
        assert_eq!(
            e.health_after(true, later(3600), window, &schedule),
            HealthChange::Healthy
        );
        e.disabled = true;
        assert_eq!(
            e.health_after(false, later(9999), window, &schedule),
            HealthChange::Unchanged,
            "once"
        );
    }

    #[test]
    fn the_breaker_is_open_until_the_probe_and_then_one_delivery_probes() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let later = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut e = Endpoint {
            rate_limit_per_s: Some(4),
            ..Endpoint::new(
                "acme".parse().unwrap(),
                "https://hooks.example.com/h".to_owned(),
                WebhookEvent::ALL.to_vec(),
                t0,
            )
        };
        assert_eq!(e.breaker(later(1)), Breaker::Closed);
        assert_eq!(e.send_interval(), Some(std::time::Duration::from_micros(257_500)));
        e.failing_since = Some(t0);
        e.probe_at = Some(later(5));
        assert_eq!(e.breaker(later(4)), Breaker::Open { until: later(5) });
        assert_eq!(
            e.breaker(later(5)),
            Breaker::ProbeDue {
                expected: Some(later(5))
            }
        );
        // a streak written before probes were kept: probe at once
        e.probe_at = None;
        assert_eq!(e.breaker(later(1)), Breaker::ProbeDue { expected: None });
        e.reset_health();
        assert_eq!((e.breaker(later(1)), e.probes_failed), (Breaker::Closed, 0));
        e.rate_limit_per_s = None;
        assert_eq!(e.send_interval(), None);
    }
}
