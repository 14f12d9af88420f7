//! A task's timeline: its status events and its webhooks' attempts, in one
//! list a reader can follow with a cursor without missing anything.
//!
//! Status events carry the task's event sequence (`seq`, the webhooks'
//! `data.sequence`), gapless: each is written in the event's transaction.
//! Attempts are made by concurrent senders after their event was recorded,
//! so they get their own per-task number `n`: a sender takes the next one
//! (an atomic counter) and then writes its entry. A reader therefore may
//! see `n + 1` before `n`; it returns entries only up to the first gap
//! ([`contiguous`]), so a cursor past `n + 1` never skips `n`. A gap whose
//! writer died never fills: once the entry after it is older than
//! [`GAP_GIVE_UP`] (far beyond the SDK's retries of one write), the reader
//! steps over it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Attempt, DeliveryId, DeliveryState, EndpointId, WebhookEvent};

/// How long a reader waits for a missing attempt number before it steps
/// over it: a sender writes its entry right after taking the number; the
/// SDK's timeouts and retries end well within this.
pub const GAP_GIVE_UP: Duration = Duration::seconds(60);

/// One webhook attempt on the timeline: what its sender recorded, under the
/// number the store gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEntry {
    /// Its number among the task's attempts (1, 2, ...), taken by the sender.
    pub n: u64,
    /// When the number was taken (every lower number was taken before it).
    pub recorded_at: DateTime<Utc>,
    pub record: AttemptRecord,
}

/// What a sender adds to its task's timeline after an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub event_type: WebhookEvent,
    /// The delivered webhook's `data.sequence`.
    pub sequence: u64,
    /// The tenant endpoint it went to; `None`: the task's own `webhook_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<EndpointId>,
    /// The delivery's state after the attempt (`pending`: it will retry).
    pub state: DeliveryState,
    /// Which attempt of the delivery's cycle it was (1-based).
    pub attempt_no: u32,
    pub attempt: Attempt,
}

#[cfg(any(test, feature = "test-support"))]
impl AttemptRecord {
    /// For tests: the first attempt of a `task.started` webhook (sequence
    /// 1), answered 200 at `at`.
    pub fn answered_200(delivery_id: DeliveryId, at: DateTime<Utc>) -> Self {
        Self {
            delivery_id,
            event_type: WebhookEvent::TaskStarted,
            sequence: 1,
            endpoint_id: None,
            state: DeliveryState::Succeeded,
            attempt_no: 1,
            attempt: Attempt {
                at,
                status_code: Some(200),
                error: None,
                latency_ms: 1,
                excerpt: None,
                cycle: Some(0),
            },
        }
    }
}

/// The entries of `fetched` (ascending by `n`, all after `after`) a reader
/// may return now: up to the first gap in the numbering, stepping over a
/// gap only when the entry after it was recorded more than
/// [`GAP_GIVE_UP`] before `now`. Also returns the cursor's new position
/// (the last number returned or stepped over).
pub fn contiguous(after: u64, fetched: Vec<AttemptEntry>, now: DateTime<Utc>) -> (Vec<AttemptEntry>, u64) {
    let mut last = after;
    let mut out = Vec::with_capacity(fetched.len());
    for entry in fetched {
        if entry.n <= last {
            continue;
        }
        if entry.n != last + 1 && now - entry.recorded_at <= GAP_GIVE_UP {
            break;
        }
        last = entry.n;
        out.push(entry);
    }
    (out, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskId;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    fn entry(n: u64, recorded_at: DateTime<Utc>) -> AttemptEntry {
        AttemptEntry {
            n,
            recorded_at,
            record: AttemptRecord::answered_200(
                DeliveryId::derive(&TaskId::new(), WebhookEvent::TaskStarted, "once"),
                recorded_at,
            ),
        }
    }

    fn numbers(entries: &[AttemptEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.n).collect()
    }

    #[test]
    fn stops_at_a_fresh_gap_and_steps_over_an_old_one() {
        let now = at(1_000);
        let fresh = now - Duration::seconds(1);
        let old = now - GAP_GIVE_UP - Duration::seconds(1);
        // 3 is missing, 4 was just recorded: 3's sender may still write it
        let (got, cursor) = contiguous(0, vec![entry(1, fresh), entry(2, fresh), entry(4, fresh)], now);
        assert_eq!((numbers(&got), cursor), (vec![1, 2], 2));
        // 4 is a minute old: 3's sender died
        let (got, cursor) = contiguous(2, vec![entry(4, old), entry(5, fresh)], now);
        assert_eq!((numbers(&got), cursor), (vec![4, 5], 5));
        // a gap right after the cursor holds everything back
        let (got, cursor) = contiguous(7, vec![entry(9, fresh), entry(10, fresh)], now);
        assert_eq!((numbers(&got), cursor), (vec![], 7));
        // nothing new
        assert_eq!(contiguous(7, vec![], now).1, 7);
        // an entry at or before the cursor is never returned again
        let (got, cursor) = contiguous(5, vec![entry(5, fresh), entry(6, fresh)], now);
        assert_eq!((numbers(&got), cursor), (vec![6], 6));
    }
}
