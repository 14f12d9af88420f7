//! The watchdog's rules (pure): when a live task must next be looked at,
//! what is due then, and the events the watchdog applies. Nothing is left
//! waiting forever: a job that never reached its queue is sent again, a
//! silent worker's task becomes `stalled`, a task past its deadline fails
//! as `timed_out`, a dead-lettered job fails its task as `processing_failed`.

use chrono::{DateTime, Duration, Utc};

use super::delivery::DeliveryId;
use super::event::{EventStatus, StatusEvent};
use super::ids::TaskId;
use super::task::{Task, TaskStatus};

/// Partitions of the due index (`DUE#0` … `DUE#3`): spread writes, and each
/// run reads every one.
pub const WATCH_SHARDS: u8 = 4;

/// How long a `pending` task's job may stay unconfirmed before the watchdog
/// sends it again: well past the ingest function's timeout, so a request
/// still between its two writes is never raced.
pub const ORPHAN_GRACE: Duration = Duration::minutes(5);

/// The due index's time granularity, in seconds: an entry's time is
/// rounded up to it, so a task reporting many events within it keeps one
/// index entry (each move of an entry is a delete and a put in the index:
/// two write units). The watchdog then sees a check at most this much after
/// it is due, and decides from the item itself, not from the entry.
pub const DUE_GRANULARITY_S: i64 = 10;

/// How long a delivery may wait in the outbox (written, not known to be
/// on the webhook queue) before the watchdog enqueues it.
pub const OUTBOX_GRACE: Duration = Duration::minutes(2);
/// How long past its expected next attempt an enqueued delivery may go
/// without an attempt recorded before its message counts as gone.
pub const ATTEMPT_GRACE: Duration = Duration::hours(1);

/// An entry of the due index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Watched {
    Task(TaskId),
    Delivery(TaskId, DeliveryId),
    /// An event's deliveries left as fan-out markers by a writer that died
    /// before writing them out.
    Fanout(TaskId),
}

/// The error of a task failed by its deadline.
pub const TIMED_OUT: &str = "timed_out";
/// The error of a task whose job was dead-lettered.
pub const PROCESSING_FAILED: &str = "processing_failed";

/// The due-index partition of a task (stable).
pub fn shard(task_id: &TaskId) -> u8 {
    let bytes = task_id.to_string();
    let sum: u32 = bytes.bytes().map(u32::from).sum();
    (sum % u32::from(WATCH_SHARDS)) as u8
}

/// When the task must next be looked at; `None` once it has ended (the
/// index entry is then removed).
pub fn next_check(task: &Task) -> Option<DateTime<Utc>> {
    let deadline = task.deadline_at;
    match task.status {
        TaskStatus::Completed | TaskStatus::Failed => None,
        TaskStatus::Pending if !task.job_enqueued => Some((task.created_at + ORPHAN_GRACE).min(deadline)),
        TaskStatus::Pending | TaskStatus::Stalled => Some(deadline),
        TaskStatus::Started | TaskStatus::Progress => Some(heartbeat_due(task).min(deadline)),
    }
}

fn heartbeat_due(task: &Task) -> DateTime<Utc> {
    let last = task.last_event_at.or(task.started_at).unwrap_or(task.created_at);
    last + Duration::seconds(i64::from(task.heartbeat_timeout_s))
}

/// What the watchdog does with a task at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send the job again (same `job_id`).
    Requeue,
    /// Mark it `stalled`.
    Stall,
    /// Fail it as `timed_out`.
    TimeOut,
    /// Nothing (yet): ended, or something moved it on since it was indexed.
    Nothing,
}

pub fn due(task: &Task, now: DateTime<Utc>) -> Due {
    if task.status.is_terminal() {
        return Due::Nothing;
    }
    if now >= task.deadline_at {
        return Due::TimeOut;
    }
    match task.status {
        TaskStatus::Pending if !task.job_enqueued && now >= task.created_at + ORPHAN_GRACE => Due::Requeue,
        TaskStatus::Started | TaskStatus::Progress if now >= heartbeat_due(task) => Due::Stall,
        _ => Due::Nothing,
    }
}

fn watchdog_event(task: &Task, id: String, status: EventStatus, now: DateTime<Utc>) -> StatusEvent {
    // never before the worker's last event, so it is not stale
    let at = task.last_event_at.map_or(now, |last| last.max(now));
    StatusEvent::new(id, task.task_id, status, at)
}

/// The task's worker missed its heartbeat. One id per stall (the task's
/// sequence when it was seen), so two runs at once stall it once.
pub fn stalled(task: &Task, now: DateTime<Utc>) -> StatusEvent {
    let mut e = watchdog_event(
        task,
        format!("watchdog:stalled:{}", task.event_seq),
        EventStatus::Stalled,
        now,
    );
    e.message = Some(format!(
        "No status event for {} s (the heartbeat timeout): the worker may have stopped",
        task.heartbeat_timeout_s
    ));
    e
}

/// The task's deadline passed.
pub fn timed_out(task: &Task, now: DateTime<Utc>) -> StatusEvent {
    let mut e = watchdog_event(task, "watchdog:timed_out".to_owned(), EventStatus::Failed, now);
    let allowed = (task.deadline_at - task.created_at).num_seconds();
    e.error = Some(TIMED_OUT.to_owned());
    e.message = Some(format!("The task did not finish within its timeout of {allowed} s"));
    e
}

/// The task's job was dead-lettered; `reason` says how.
pub fn dead_lettered(task: &Task, reason: &str, now: DateTime<Utc>) -> StatusEvent {
    let mut e = watchdog_event(task, "watchdog:processing_failed".to_owned(), EventStatus::Failed, now);
    e.error = Some(PROCESSING_FAILED.to_owned());
    e.message = Some(format!("Processing failed: {reason}"));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_support::{event, task};
    use crate::domain::{decide, Decision, Timeouts};
    use proptest::prelude::*;

    fn apply(t: &Task, e: &StatusEvent) -> Task {
        match decide(t, e) {
            Decision::Apply { task, .. } => *task,
            Decision::Ignore(why) => panic!("ignored: {why:?}"),
        }
    }

    fn at(t: &Task, seconds: i64) -> DateTime<Utc> {
        t.created_at + Duration::seconds(seconds)
    }

    #[test]
    fn each_state_is_checked_when_it_can_next_go_wrong() {
        let t0 = task(None).with_timeouts(Timeouts::parse(Some(120), Some(3600)).unwrap());
        // a pending task whose job is not confirmed: after the grace period
        assert_eq!(next_check(&t0), Some(t0.created_at + ORPHAN_GRACE));
        assert_eq!(due(&t0, at(&t0, 299)), Due::Nothing);
        assert_eq!(due(&t0, at(&t0, 300)), Due::Requeue);
        // confirmed: only the deadline
        let queued = Task {
            job_enqueued: true,
            ..t0.clone()
        };
        assert_eq!(next_check(&queued), Some(at(&t0, 3600)));
        assert_eq!(due(&queued, at(&t0, 3599)), Due::Nothing);
        assert_eq!(due(&queued, at(&t0, 3600)), Due::TimeOut);
        // running: the heartbeat from the worker's last event
        let running = apply(&queued, &event(&queued, "e1", EventStatus::Progress, Some(0.1), 10));
        assert_eq!(next_check(&running), Some(at(&t0, 130)));
        assert_eq!(due(&running, at(&t0, 129)), Due::Nothing);
        assert_eq!(due(&running, at(&t0, 130)), Due::Stall);
        // stalled: the watchdog's event is not a heartbeat
        let stalled_task = apply(&running, &stalled(&running, at(&t0, 130)));
        assert_eq!(stalled_task.status, TaskStatus::Stalled);
        assert_eq!(stalled_task.last_event_at, running.last_event_at);
        assert_eq!(next_check(&stalled_task), Some(at(&t0, 3600)));
        assert_eq!(due(&stalled_task, at(&t0, 1000)), Due::Nothing);
        // the worker comes back: progress, heartbeat again
        let back = apply(
            &stalled_task,
            &event(&stalled_task, "e2", EventStatus::Progress, Some(0.3), 200),
        );
        assert_eq!(back.status, TaskStatus::Progress);
        assert_eq!(next_check(&back), Some(at(&t0, 320)));
        // a heartbeat beyond the deadline: the deadline first
        let late = apply(&back, &event(&back, "e3", EventStatus::Progress, Some(0.4), 3550));
        assert_eq!(next_check(&late), Some(at(&t0, 3600)));
        // ended: never again
        let done = apply(&late, &event(&late, "e4", EventStatus::Completed, None, 3560));
        assert_eq!(next_check(&done), None);
        assert_eq!(due(&done, at(&t0, 999_999)), Due::Nothing);
    }

    #[test]
    fn watchdog_events_fail_or_stall_once() {
        let t0 = task(Some("https://example.com/hook"));
        let running = apply(&t0, &event(&t0, "e1", EventStatus::Started, None, 1));
        let now = at(&t0, 2000);
        let Decision::Apply { task: s, webhooks, .. } = decide(&running, &stalled(&running, now)) else {
            panic!("not applied")
        };
        assert_eq!(webhooks.len(), 1);
        assert_eq!(webhooks[0].event_type.as_str(), "task_stalled");
        // the same observation twice (two runs at once) is a duplicate
        assert!(matches!(decide(&s, &stalled(&running, now)), Decision::Ignore(_)));
        // stalled only from started or progress
        assert!(matches!(decide(&t0, &stalled(&t0, now)), Decision::Ignore(_)));
        let failed = apply(&s, &timed_out(&s, now));
        assert_eq!(
            (failed.status, failed.error.as_deref()),
            (TaskStatus::Failed, Some(TIMED_OUT))
        );
        assert!(matches!(
            decide(&failed, &dead_lettered(&failed, "x", now)),
            Decision::Ignore(_)
        ));
        // a stall, a recovery and a second stall: two distinct deliveries
        let back = apply(&s, &event(&s, "e2", EventStatus::Progress, Some(0.2), 2100));
        let Decision::Apply { webhooks: again, .. } = decide(&back, &stalled(&back, at(&t0, 5000))) else {
            panic!("not applied")
        };
        assert_ne!(again[0].delivery_id, webhooks[0].delivery_id);
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(Timeouts::parse(None, None).unwrap(), Timeouts::default());
        assert!(Timeouts::parse(Some(59), None)
            .unwrap_err()
            .contains("heartbeat_timeout_s"));
        assert!(Timeouts::parse(Some(86_401), None).is_err());
        assert!(Timeouts::parse(None, Some(7 * 86_400 + 1))
            .unwrap_err()
            .contains("timeout_s"));
        assert_eq!(Timeouts::parse(Some(60), Some(60)).unwrap().timeout_s, 60);
        let widest = Timeouts::parse(Some(86_400), Some(7 * 86_400)).unwrap();
        assert_eq!((widest.heartbeat_s, widest.timeout_s), (86_400, 7 * 86_400));
    }

    proptest! {
        /// Whatever the events, a live task always has a next check, never
        /// later than its deadline; an ended one never has one; and
        /// anything due is due at or after the indexed time.
        #[test]
        fn live_tasks_are_always_watched(steps in proptest::collection::vec((0u8..5, 0u32..=1000, 0i64..400), 0..30)) {
            let mut t = task(None).with_timeouts(Timeouts::parse(Some(60), Some(3600)).unwrap());
            for (i, (status, permille, offset)) in steps.into_iter().enumerate() {
                let e = if status == 4 {
                    stalled(&t, at(&t, offset))
                } else {
                    let status = [EventStatus::Started, EventStatus::Progress, EventStatus::Completed, EventStatus::Failed][status as usize];
                    event(&t, &format!("e{i}"), status, (status == EventStatus::Progress).then_some(f64::from(permille) / 1000.0), offset)
                };
                if let Decision::Apply { task, .. } = decide(&t, &e) {
                    t = *task;
                }
                match next_check(&t) {
                    None => prop_assert!(t.status.is_terminal()),
                    Some(when) => {
                        prop_assert!(!t.status.is_terminal());
                        prop_assert!(when <= t.deadline_at);
                        prop_assert_eq!(due(&t, when - Duration::seconds(1)), Due::Nothing);
                        // and at that time something is due: no entry is read for nothing
                        prop_assert_ne!(due(&t, when), Due::Nothing);
                    }
                }
            }
        }
    }
}
