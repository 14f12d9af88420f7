//! The soak's verdict, from the stores, the queues and the receivers' own
//! logs (never from the functions' logs): every task where its worker left
//! it, every history entry once, every planned webhook delivered or dead
//! with its message parked, nothing pending.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;

use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::domain::{
    decide, Decision, DeliveryMessage, DeliveryState, EventStatus, HistoryEntry, StatusEvent, Task, TaskId, TaskStatus,
};
use morag_shared::ports::{DeliveryStore, TaskStore};

use super::receivers::Answer;
use super::workers::{Fate, TaskRun};

/// What the checks counted; `problems` lists every loss or inconsistency.
#[derive(Debug, Default)]
pub struct Verdict {
    pub final_status: BTreeMap<String, usize>,
    pub events_sent: usize,
    pub copies_sent: usize,
    pub applied: usize,
    /// Sent, not applied, and a later event of the task was applied first
    /// (`stale` or after the end): the contract's answer to a late message.
    pub ignored_late: usize,
    pub stalls: usize,
    pub deliveries: usize,
    pub delivery_states: BTreeMap<String, usize>,
    pub attempts: usize,
    pub arrivals: usize,
    /// Deliveries the receiver took (200, or 200 after the timeout) more than once.
    pub duplicated_deliveries: usize,
    pub duplicate_arrivals: usize,
    pub webhook_dlq: usize,
    /// DLQ messages of deliveries that nonetheless succeeded (a success
    /// recorded, then the process killed before the message was deleted).
    pub webhook_dlq_after_success: usize,
    /// DLQ messages of a delivery that has another one there too.
    pub webhook_dlq_repeated: usize,
    pub problems: Vec<String>,
}

fn event_status(status: TaskStatus) -> Option<EventStatus> {
    Some(match status {
        TaskStatus::Started => EventStatus::Started,
        TaskStatus::Progress => EventStatus::Progress,
        TaskStatus::Completed => EventStatus::Completed,
        TaskStatus::Failed => EventStatus::Failed,
        TaskStatus::Stalled => EventStatus::Stalled,
        TaskStatus::Pending => return None,
    })
}

/// The task as ingest created it, from its final state.
fn as_created(task: &Task) -> Task {
    let mut t = task.clone();
    t.status = TaskStatus::Pending;
    t.progress = 0.0;
    t.started_at = None;
    t.completed_at = None;
    t.result = None;
    t.error = None;
    t.event_seq = 0;
    t.last_event_at = None;
    t.recent_event_ids.clear();
    t.milestones_sent.clear();
    t.updated_at = t.created_at;
    t
}

/// The deliveries the history plans, replayed through the lifecycle from
/// the created task (the recorder's own rules), or why it does not replay.
fn planned_deliveries(task: &Task, history: &[HistoryEntry]) -> Result<HashSet<String>, String> {
    let mut t = as_created(task);
    let mut planned = HashSet::new();
    for entry in history {
        let status = event_status(entry.status).ok_or_else(|| format!("history entry {} is pending", entry.seq))?;
        let mut event = StatusEvent::new(entry.event_id.clone(), task.task_id, status, entry.timestamp);
        if status == EventStatus::Progress {
            event.progress = Some(entry.progress);
        }
        match decide(&t, &event) {
            Decision::Apply { task, webhooks, .. } => {
                t = *task;
                planned.extend(webhooks.into_iter().map(|w| w.delivery_id.as_str().to_owned()));
            }
            Decision::Ignore(why) => {
                return Err(format!(
                    "history entry {} does not replay ({})",
                    entry.seq,
                    why.as_str()
                ));
            }
        }
    }
    Ok(planned)
}

async fn full_history(store: &DynamoStore, task_id: &TaskId) -> Result<Vec<HistoryEntry>> {
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let page = store.history(task_id, 100, start).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    all.sort_by_key(|e| e.seq);
    Ok(all)
}

/// Checks every task the workers ran.
pub async fn check(
    store: &DynamoStore,
    runs: &HashMap<TaskId, TaskRun>,
    created: usize,
    handed: &HashMap<String, (Instant, Option<Instant>)>,
    arrivals: &HashMap<String, Vec<Answer>>,
    webhook_dlq: &[String],
    status_dlq: &[(String, String)],
) -> Result<Verdict> {
    let mut v = Verdict::default();
    if runs.len() != created {
        v.problems.push(format!(
            "{} tasks created, {} jobs reached a worker",
            created,
            runs.len()
        ));
    }
    let mut parked: HashSet<String> = HashSet::new();
    for body in webhook_dlq {
        match serde_json::from_str::<DeliveryMessage>(body) {
            // a delivery parked twice: two cycles, or the watchdog's and the
            // recorder's send of the same outbox entry
            Ok(m) => {
                if !parked.insert(m.delivery_id.as_str().to_owned()) {
                    v.webhook_dlq_repeated += 1;
                }
            }
            Err(e) => v.problems.push(format!(
                "a webhook DLQ message is not a delivery message ({e}): {}",
                body.chars().take(160).collect::<String>()
            )),
        }
    }
    v.webhook_dlq = webhook_dlq.len();
    for (body, reason) in status_dlq {
        v.problems.push(format!(
            "status event parked ({reason}): {}",
            body.chars().take(120).collect::<String>()
        ));
    }
    let mut stored_ids = HashSet::new();
    for (task_id, run) in runs {
        let Some(task) = store.get_task(task_id).await? else {
            v.problems.push(format!("task {task_id} is gone"));
            continue;
        };
        *v.final_status.entry(task.status.as_str().to_owned()).or_default() += 1;
        let expected = match run.fate {
            Fate::Complete => TaskStatus::Completed,
            Fate::Fail => TaskStatus::Failed,
            Fate::Die { .. } => TaskStatus::Stalled,
        };
        if task.status != expected {
            v.problems.push(format!(
                "task {task_id} is {} ({:?} expected {})",
                task.status.as_str(),
                run.fate,
                expected.as_str()
            ));
        }

        // history: each applied event once, in sequence, and nothing lost
        let history = full_history(store, task_id).await?;
        let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
        if seqs != (1..=task.event_seq).collect::<Vec<_>>() {
            v.problems.push(format!(
                "task {task_id}: history seqs {seqs:?}, event_seq {}",
                task.event_seq
            ));
        }
        let mut seen = HashSet::new();
        for e in &history {
            if !seen.insert(e.event_id.as_str()) {
                v.problems
                    .push(format!("task {task_id}: event {} recorded twice", e.event_id));
            }
        }
        let sent: HashMap<&str, _> = run.sent.iter().map(|s| (s.event_id.as_str(), s)).collect();
        v.events_sent += run.sent.len();
        v.copies_sent += run.sent.iter().map(|s| s.copies).sum::<usize>();
        let mut applied = Vec::new();
        for e in &history {
            if e.status == TaskStatus::Stalled {
                v.stalls += 1;
                if !e.event_id.starts_with("watchdog:") {
                    v.problems
                        .push(format!("task {task_id}: a stall not from the watchdog: {}", e.event_id));
                }
                continue;
            }
            match sent.get(e.event_id.as_str()) {
                None => v
                    .problems
                    .push(format!("task {task_id}: history entry {} was never sent", e.event_id)),
                Some(s) => {
                    v.applied += 1;
                    if s.at != e.timestamp || (s.progress.is_some() && s.progress != Some(e.progress)) {
                        v.problems.push(format!(
                            "task {task_id}: entry {} differs from what was sent",
                            e.event_id
                        ));
                    }
                    applied.push(e);
                }
            }
        }
        for s in &run.sent {
            if seen.contains(s.event_id.as_str()) {
                continue;
            }
            // not applied: fine only if an event the worker sent later was
            // applied first, i.e. handed to a recorder before this one was
            // last acknowledged (it then arrived stale, or after the end)
            let acked = handed.get(&s.event_id).and_then(|(_, acked)| *acked);
            let overtaken = acked.is_some_and(|acked| {
                applied
                    .iter()
                    .any(|h| h.timestamp > s.at && handed.get(&h.event_id).is_some_and(|(first, _)| *first < acked))
            });
            if overtaken {
                v.ignored_late += 1;
            } else {
                v.problems.push(format!(
                    "task {task_id}: event {} ({}) lost{}",
                    s.event_id,
                    s.status,
                    if acked.is_some() {
                        " (acknowledged, never applied)"
                    } else {
                        " (never acknowledged)"
                    }
                ));
            }
        }

        // webhooks: exactly the planned deliveries, each settled
        let planned = match planned_deliveries(&task, &history) {
            Ok(p) => p,
            Err(why) => {
                v.problems.push(format!("task {task_id}: {why}"));
                HashSet::new()
            }
        };
        let deliveries = store.list_deliveries(task_id).await?;
        let stored: HashSet<String> = deliveries.iter().map(|d| d.delivery_id.as_str().to_owned()).collect();
        for missing in planned.difference(&stored) {
            v.problems
                .push(format!("task {task_id}: planned webhook {missing} never stored"));
        }
        for extra in stored.difference(&planned) {
            v.problems
                .push(format!("task {task_id}: webhook {extra} stored but not planned"));
        }
        for d in &deliveries {
            let id = d.delivery_id.as_str();
            v.deliveries += 1;
            v.attempts += d.attempts.len();
            *v.delivery_states
                .entry(format!("{:?}", d.state).to_lowercase())
                .or_default() += 1;
            let answers = arrivals.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let taken = answers
                .iter()
                .filter(|a| matches!(a, Answer::Ok | Answer::Late))
                .count();
            if taken > 1 {
                v.duplicated_deliveries += 1;
                v.duplicate_arrivals += taken - 1;
            }
            match d.state {
                DeliveryState::Succeeded => {
                    if !answers.contains(&Answer::Ok) {
                        v.problems.push(format!(
                            "delivery {id} succeeded but its receiver never answered 200 in time"
                        ));
                    }
                    if parked.contains(id) {
                        v.webhook_dlq_after_success += 1;
                    }
                }
                DeliveryState::Dead => {
                    // (a delivery whose every receive died with its sender has no attempts)
                    if !parked.contains(id) {
                        v.problems.push(format!(
                            "delivery {id} is dead with {} attempts, its message {} the DLQ",
                            d.attempts.len(),
                            if parked.contains(id) { "in" } else { "not in" }
                        ));
                    }
                }
                DeliveryState::Superseded => {
                    if morag_shared::domain::delivery::overtaken_by(d, &deliveries).is_none() {
                        v.problems
                            .push(format!("delivery {id} superseded, but nothing newer overtook it"));
                    }
                }
                DeliveryState::Paused => v
                    .problems
                    .push(format!("delivery {id} paused; the soak disables no endpoint")),
                DeliveryState::Failed => v
                    .problems
                    .push(format!("delivery {id} failed for good; no receiver refuses for good")),
                DeliveryState::Pending => v.problems.push(format!(
                    "delivery {id} still pending after {} attempts (message {})",
                    d.attempts.len(),
                    if parked.contains(id) {
                        "in the DLQ"
                    } else {
                        "not in the DLQ"
                    }
                )),
            }
        }
        stored_ids.extend(stored);
    }
    v.arrivals = arrivals.values().map(Vec::len).sum();
    for id in arrivals.keys() {
        if !stored_ids.contains(id) {
            v.problems
                .push(format!("a webhook {id:?} arrived that no delivery describes"));
        }
    }
    Ok(v)
}
