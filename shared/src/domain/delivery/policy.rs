//! The delivery policy (which answers are retried) and the retry schedule.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rand::Rng;

/// SQS's longest visibility timeout: no retry gap may exceed it.
pub const MAX_SQS_DELAY: Duration = Duration::from_secs(12 * 3600);

/// Most gaps a schedule may have.
pub const MAX_GAPS: usize = 20;

/// The webhook queue's `maxReceiveCount` in the template: not the attempt
/// budget (the sender ends a delivery and parks its message itself once the
/// schedule's attempts are spent: the cycle's recorded attempts, or the
/// message's receives if more, so a receive that recorded nothing counts)
/// but a ceiling above any schedule's attempts, reached only by a message
/// whose sender dies on every receive. A delivery that waits (an open
/// circuit breaker, a rate limit) goes back on the queue as a new message,
/// so waiting never spends receives.
pub const WEBHOOK_MAX_RECEIVES: u32 = 25;

/// What an answer means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Never retried: 3xx (redirects are not followed), 410, and 4xx other
    /// than 408/409/425/429.
    Permanent,
    /// 5xx, 408, 409, 425, 429.
    Retry,
}

pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        408 | 409 | 425 | 429 => Verdict::Retry,
        500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Gaps between attempts. Attempts = gaps + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about
    /// 28 hours.
    fn default() -> Self {
        Self(
            [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .map(Duration::from_secs)
                .to_vec(),
        )
    }
}

impl FromStr for RetrySchedule {
    type Err = String;
    /// Comma-separated seconds, e.g. `1,2,4` (`MORAG_WEBHOOK_RETRY_SCHEDULE`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let gaps = s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("{p:?} is not a number of seconds"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if gaps.is_empty() || gaps.len() > MAX_GAPS {
            return Err(format!("a retry schedule has 1 to {MAX_GAPS} gaps"));
        }
        if let Some(g) = gaps.iter().find(|g| **g > MAX_SQS_DELAY) {
            return Err(format!("{}s is longer than SQS's 12 h visibility limit", g.as_secs()));
        }
        Ok(Self(gaps))
    }
}

/// Comma-separated seconds, as `FromStr` reads them (the template's
/// `WebhookRetrySchedule` parameter).
impl std::fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gaps: Vec<String> = self.0.iter().map(|g| g.as_secs().to_string()).collect();
        f.write_str(&gaps.join(","))
    }
}

impl RetrySchedule {
    /// Total attempts of a cycle (always below [`WEBHOOK_MAX_RECEIVES`]).
    pub fn attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }

    pub fn gaps(&self) -> &[Duration] {
        &self.0
    }

    /// The `n`-th gap (1-based) without jitter, the last one repeating: an
    /// open circuit breaker's wait before its `n`-th probe.
    pub fn gap(&self, n: u32) -> Duration {
        let last = self.0.len().saturating_sub(1);
        let i = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX).min(last);
        self.0.get(i).copied().unwrap_or(Duration::from_secs(5))
    }

    /// The wait after failed attempt `attempt` (1-based), with ±20 % jitter,
    /// raised to a `Retry-After` (capped at 12 h); `None` when the budget is spent.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Option<Duration> {
        let base = *self.0.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        let jitter = rng.gen_range(0.8..=1.2);
        let mut delay = base.mul_f64(jitter);
        if let Some(asked) = retry_after {
            delay = delay.max(asked);
        }
        Some(delay.min(MAX_SQS_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_policy() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify(s), Verdict::Success);
        }
        for s in [408, 409, 425, 429, 500, 502, 503, 599] {
            assert_eq!(classify(s), Verdict::Retry, "{s}");
        }
        for s in [301, 302, 307, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(s), Verdict::Permanent, "{s}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 13 Nov 2023 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn schedule_jitter_bounds_and_budget() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts(), 8);
        let mut rng = rand::thread_rng();
        for (i, gap) in s.gaps().iter().enumerate() {
            for _ in 0..50 {
                let d = s.delay_after(i as u32 + 1, None, &mut rng).unwrap();
                assert!(
                    d >= gap.mul_f64(0.8) && d <= gap.mul_f64(1.2).min(MAX_SQS_DELAY),
                    "{d:?} for {gap:?}"
                );
            }
        }
        assert_eq!(s.delay_after(8, None, &mut rng), None, "budget spent");
        assert_eq!(s.delay_after(0, None, &mut rng), None);
        let d = s.delay_after(1, Some(Duration::from_secs(60)), &mut rng).unwrap();
        assert_eq!(d, Duration::from_secs(60), "Retry-After raises the wait");
        let d = s.delay_after(1, Some(Duration::from_secs(100_000)), &mut rng).unwrap();
        assert_eq!(d, MAX_SQS_DELAY, "but never past 12 h");
        assert_eq!("1, 2,4".parse::<RetrySchedule>().unwrap().attempts(), 4);
        assert_eq!(
            s.to_string().parse::<RetrySchedule>().unwrap(),
            s,
            "Display round-trips"
        );
        assert!("1,x".parse::<RetrySchedule>().is_err());
        assert!("50000".parse::<RetrySchedule>().is_err());
    }

    /// The queue's receive ceiling stays above every schedule's attempts,
    /// so the sender, not the queue, ends a delivery whose budget is spent.
    #[test]
    fn the_longest_schedule_stays_below_the_queues_receive_ceiling() {
        let longest = vec!["1"; MAX_GAPS].join(",").parse::<RetrySchedule>().unwrap();
        assert!(longest.attempts() < WEBHOOK_MAX_RECEIVES, "{}", longest.attempts());
        assert!(vec!["1"; MAX_GAPS + 1].join(",").parse::<RetrySchedule>().is_err());
    }
}
