use super::*;
use proptest::prelude::*;

fn task() -> Task {
    crate::domain::test_support::task(None)
}

use crate::domain::test_support::event;

fn apply(t: &Task, e: &StatusEvent) -> Task {
    match decide(t, e) {
        Decision::Apply { task, .. } => *task,
        Decision::Ignore(why) => panic!("ignored: {why:?}"),
    }
}

#[test]
fn the_happy_path() {
    let t0 = task();
    let t1 = apply(&t0, &event(&t0, "e1", EventStatus::Started, None, 1));
    assert_eq!(t1.status, TaskStatus::Started);
    assert!(t1.started_at.is_some());
    let t2 = apply(&t1, &event(&t1, "e2", EventStatus::Progress, Some(0.4), 2));
    assert_eq!((t2.status, t2.progress), (TaskStatus::Progress, 0.4));
    let t3 = apply(&t2, &event(&t2, "e3", EventStatus::Completed, None, 3));
    assert_eq!((t3.status, t3.progress, t3.event_seq), (TaskStatus::Completed, 1.0, 3));
    assert_eq!(t3.result, Some(Value::Object(Map::new())));
    assert!(t3.completed_at.is_some());
}

#[test]
fn rules_that_keep_events_out() {
    let t0 = task();
    let t1 = apply(&t0, &event(&t0, "e1", EventStatus::Started, None, 10));
    assert_eq!(
        decide(&t1, &event(&t1, "e1", EventStatus::Started, None, 10)),
        Decision::Ignore(Ignored::Duplicate)
    );
    assert_eq!(
        decide(&t1, &event(&t1, "e0", EventStatus::Progress, Some(0.1), 5)),
        Decision::Ignore(Ignored::Stale)
    );
    assert_eq!(
        decide(&t1, &event(&t1, "e9", EventStatus::Started, None, 11)),
        Decision::Ignore(Ignored::AlreadyStarted)
    );
    let done = apply(&t1, &event(&t1, "e2", EventStatus::Failed, None, 12));
    assert_eq!(
        decide(&done, &event(&done, "e3", EventStatus::Completed, None, 13)),
        Decision::Ignore(Ignored::Terminal)
    );
}

#[test]
fn progress_before_started_implies_started_and_never_goes_down() {
    let t0 = task();
    let t1 = apply(&t0, &event(&t0, "e1", EventStatus::Progress, Some(0.6), 1));
    assert_eq!(t1.status, TaskStatus::Progress);
    assert!(t1.started_at.is_some());
    let t2 = apply(&t1, &event(&t1, "e2", EventStatus::Progress, Some(0.2), 2));
    assert_eq!(t2.progress, 0.6);
}

#[test]
fn validation_names_the_problem() {
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let id = TaskId::new();
    let cases = [
        ("{", "invalid_json"),
        (
            r#"{"event_id":"e","task_id":"x","status":"started","occurred_at":"2023-11-14T22:13:20Z"}"#,
            "invalid_json",
        ),
        (
            &*format!(r#"{{"event_id":"e","task_id":"{id}","status":"done","occurred_at":"2023-11-14T22:13:20Z"}}"#),
            "invalid_json",
        ),
        (
            &*format!(
                r#"{{"event_id":"e","task_id":"{id}","status":"progress","occurred_at":"2023-11-14T22:13:20Z"}}"#
            ),
            "missing_progress",
        ),
        (
            &*format!(
                r#"{{"event_id":"e","task_id":"{id}","status":"progress","progress":1.5,"occurred_at":"2023-11-14T22:13:20Z"}}"#
            ),
            "invalid_progress",
        ),
        (
            &*format!(r#"{{"event_id":"e","task_id":"{id}","status":"failed","occurred_at":"2023-11-14T22:13:20Z"}}"#),
            "missing_error",
        ),
        (
            &*format!(r#"{{"event_id":"","task_id":"{id}","status":"started","occurred_at":"2023-11-14T22:13:20Z"}}"#),
            "invalid_event_id",
        ),
        (
            &*format!(r#"{{"event_id":"e","task_id":"{id}","status":"started","occurred_at":"2030-01-01T00:00:00Z"}}"#),
            "occurred_in_future",
        ),
        (
            &*format!(
                r#"{{"event_id":"e","task_id":"{id}","status":"started","result":{{}},"occurred_at":"2023-11-14T22:13:20Z"}}"#
            ),
            "unexpected_result",
        ),
        (
            &*format!(
                r#"{{"event_id":"e","task_id":"{id}","status":"started","extra":1,"occurred_at":"2023-11-14T22:13:20Z"}}"#
            ),
            "invalid_json",
        ),
    ];
    for (body, code) in cases {
        assert_eq!(StatusEvent::parse(body, now).unwrap_err().code, code, "{body}");
    }
    let ok = format!(
        r#"{{"event_id":"e","task_id":"{id}","status":"progress","progress":0.5,"message":"half","occurred_at":"2023-11-14T22:13:20Z"}}"#
    );
    assert!(StatusEvent::parse(&ok, now).is_ok());
}

fn rank(s: TaskStatus) -> u8 {
    match s {
        TaskStatus::Pending => 0,
        TaskStatus::Started => 1,
        TaskStatus::Progress | TaskStatus::Stalled => 2,
        TaskStatus::Completed | TaskStatus::Failed => 3,
    }
}

fn arb_event() -> impl Strategy<Value = (u8, u8, u32, i64)> {
    // (event id number, status, progress in per-mille, time offset)
    (0u8..12, 0u8..5, 0u32..=1000, 0i64..20)
}

proptest! {
    /// Shuffled, duplicated and late sequences, with the watchdog's stalls
    /// mixed in, never regress the state and never duplicate history;
    /// `stalled` only ever follows `started` or `progress`; terminal is final.
    #[test]
    fn state_never_regresses_and_history_never_duplicates(events in proptest::collection::vec(arb_event(), 1..60)) {
        let mut t = task();
        let mut history: Vec<HistoryEntry> = Vec::new();
        for (id, status, permille, offset) in events {
            let status = [EventStatus::Started, EventStatus::Progress, EventStatus::Completed, EventStatus::Failed, EventStatus::Stalled][status as usize];
            let e = event(&t, &format!("e{id}"), status, (status == EventStatus::Progress).then_some(f64::from(permille) / 1000.0), offset);
            let before = t.clone();
            match decide(&t, &e) {
                Decision::Apply { task, entry, .. } => {
                    prop_assert!(rank(task.status) >= rank(before.status));
                    prop_assert!(task.progress >= before.progress);
                    prop_assert!(!before.status.is_terminal());
                    prop_assert_eq!(task.event_seq, before.event_seq + 1);
                    prop_assert!(task.last_event_at >= before.last_event_at);
                    if task.status == TaskStatus::Stalled {
                        prop_assert!(before.status.is_running() || before.status == TaskStatus::Stalled && e.status != EventStatus::Stalled);
                    }
                    if e.status == EventStatus::Stalled {
                        prop_assert!(before.status.is_running());
                        prop_assert_eq!(task.last_event_at, before.last_event_at);
                    }
                    history.push(entry);
                    t = *task;
                }
                Decision::Ignore(_) => {}
            }
        }
        let mut ids: Vec<&str> = history.iter().map(|h| h.event_id.as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), n, "duplicate event in history");
        prop_assert_eq!(t.event_seq as usize, history.len());
        // the worker's events are in time order (a stall is the watchdog's
        // observation: a delayed worker event may carry an earlier time)
        let worker: Vec<&HistoryEntry> = history.iter().filter(|h| h.status != TaskStatus::Stalled).collect();
        prop_assert!(worker.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        prop_assert!(history.windows(2).all(|w| w[0].progress <= w[1].progress));
    }

    /// Applying the same sequence twice (full redelivery) changes nothing the second time.
    #[test]
    fn redelivery_is_a_no_op(events in proptest::collection::vec(arb_event(), 1..30)) {
        let mut t = task();
        let evs: Vec<StatusEvent> = events.iter().map(|&(id, status, permille, offset)| {
            let status = [EventStatus::Started, EventStatus::Progress, EventStatus::Completed, EventStatus::Failed, EventStatus::Stalled][status as usize];
            event(&t, &format!("e{id}"), status, (status == EventStatus::Progress).then_some(f64::from(permille) / 1000.0), offset)
        }).collect();
        for e in &evs {
            if let Decision::Apply { task, .. } = decide(&t, e) { t = *task; }
        }
        // every event applied once is a duplicate now: redelivery applies nothing twice
        for e in &evs {
            if t.recent_event_ids.contains(&e.event_id) {
                prop_assert_eq!(decide(&t, e), Decision::Ignore(Ignored::Duplicate));
            }
        }
    }
}
