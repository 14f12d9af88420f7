//! Which webhooks an applied event sends (pure). Delivery ids are
//! deterministic, so the same event always plans the same deliveries: a
//! redelivered status event can never create a second delivery, and every
//! retry of a delivery carries the same `webhook-id`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::delivery::{Delivery, DeliveryId, DeliveryState, WebhookEvent};
use super::event::{EventStatus, StatusEvent};
use super::task::{Task, TaskStatus};

/// Progress milestones, in percent: each fires at most once per task.
pub const MILESTONES: [u8; 3] = [25, 50, 75];

/// A webhook to deliver, fixed when its event is applied: its body is sent
/// unchanged on every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDelivery {
    /// The `webhook-id`.
    pub delivery_id: DeliveryId,
    pub event_type: WebhookEvent,
    pub url: String,
    /// The JSON body.
    pub payload: String,
    /// The task's event sequence after the event (`data.sequence`).
    pub sequence: u64,
}

impl PlannedDelivery {
    /// The delivery to store for `task` (not yet enqueued: the outbox).
    pub fn into_delivery(self, task: &Task, now: DateTime<Utc>) -> Delivery {
        Delivery {
            task_id: task.task_id,
            tenant: task.tenant.clone(),
            delivery_id: self.delivery_id,
            event_type: self.event_type,
            url: self.url,
            payload: self.payload,
            sequence: self.sequence,
            state: DeliveryState::Pending,
            created_at: now,
            enqueued: false,
            cycle: 0,
            attempts: Vec::new(),
            attempts_total: 0,
        }
    }
}

/// The body of a webhook. `data.sequence` is the task's event sequence
/// after the event (its history entry's `seq`): it grows with every applied
/// event, so a receiver drops anything at or below the last it saw.
/// `data.milestone` (0.25, 0.5, 0.75) on `task_progress` is the milestone
/// crossed, next to the real `progress`. `data.status_url` when the
/// deployment's public API URL is known.
fn payload(
    after: &Task,
    event_type: WebhookEvent,
    milestone: Option<u8>,
    event: &StatusEvent,
    api_base: Option<&str>,
) -> String {
    let mut data = json!({
        "task_id": after.task_id.to_string(),
        "sequence": after.event_seq,
        "status": after.status.as_str(),
        "message": after.message,
        "metadata": Value::Object(after.metadata.clone()),
    });
    if let Some(base) = api_base {
        data["status_url"] = json!(format!("{base}/api/v1/status/{}", after.task_id));
    }
    match event_type {
        WebhookEvent::TaskProgress => {
            data["progress"] = json!(after.progress);
            if let Some(m) = milestone {
                data["milestone"] = json!(f64::from(m) / 100.0);
            }
        }
        WebhookEvent::TaskStarted | WebhookEvent::TaskStalled => data["progress"] = json!(after.progress),
        WebhookEvent::TaskCompleted => {
            data["progress"] = json!(after.progress);
            data["result"] = after.result.clone().unwrap_or(Value::Null);
        }
        WebhookEvent::TaskFailed => data["error"] = json!(after.error),
    }
    json!({
        "event_type": event_type.as_str(),
        "timestamp": crate::time::sort_ts(event.occurred_at),
        "data": data,
    })
    .to_string()
}

/// Plans the webhooks for an event that moved `before` to `after`, and
/// records fired milestones in `after.milestones_sent`.
///
/// - `task_started` when the task leaves `pending` other than by ending;
/// - `task_progress` when progress crosses 25, 50 or 75 %: one delivery for
///   the highest milestone crossed, every crossed milestone marked sent;
/// - `task_stalled` each time the watchdog marks it `stalled`;
/// - `task_completed`, `task_failed` when it ends;
/// - only event types the task subscribed to, and only with a `webhook_url`.
pub fn plan(before: &Task, after: &mut Task, event: &StatusEvent, api_base: Option<&str>) -> Vec<PlannedDelivery> {
    let mut planned: Vec<(WebhookEvent, String)> = Vec::new();
    let mut milestone = None;
    let ending = matches!(event.status, EventStatus::Completed | EventStatus::Failed);
    if before.status == TaskStatus::Pending && !ending {
        planned.push((WebhookEvent::TaskStarted, "once".to_owned()));
    }
    if event.status == EventStatus::Progress {
        let crossed: Vec<u8> = MILESTONES
            .into_iter()
            .filter(|m| after.progress * 100.0 >= f64::from(*m) && !after.milestones_sent.contains(m))
            .collect();
        if let Some(highest) = crossed.last() {
            milestone = Some(*highest);
            planned.push((WebhookEvent::TaskProgress, highest.to_string()));
            after.milestones_sent.extend(crossed.iter().copied());
        }
    }
    match event.status {
        // a task may stall, recover and stall again: one delivery per stall
        EventStatus::Stalled => planned.push((WebhookEvent::TaskStalled, format!("stall{}", after.event_seq))),
        EventStatus::Completed => planned.push((WebhookEvent::TaskCompleted, "once".to_owned())),
        EventStatus::Failed => planned.push((WebhookEvent::TaskFailed, "once".to_owned())),
        _ => {}
    }
    let Some(url) = after.webhook_url.clone() else {
        return Vec::new();
    };
    planned
        .into_iter()
        .filter(|(t, _)| after.webhook_events.contains(t))
        .map(|(event_type, disc)| PlannedDelivery {
            delivery_id: DeliveryId::derive(&after.task_id, event_type, &disc),
            event_type,
            url: url.clone(),
            payload: payload(after, event_type, milestone, event, api_base),
            sequence: after.event_seq,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{decide, Decision};
    use proptest::prelude::*;

    use crate::domain::test_support::{event as ev, task};

    fn run(t: &mut Task, events: &[StatusEvent]) -> Vec<PlannedDelivery> {
        let mut out = Vec::new();
        for e in events {
            if let Decision::Apply { task, webhooks, .. } = decide(t, e) {
                *t = *task;
                out.extend(webhooks);
            }
        }
        out
    }

    #[test]
    fn a_full_run_sends_started_milestones_and_completed() {
        let mut t = task(Some("https://hooks.example.com/h"));
        let events = [
            ev(&t, "s", EventStatus::Started, None, 1),
            ev(&t, "p1", EventStatus::Progress, Some(0.1), 2),
            ev(&t, "p2", EventStatus::Progress, Some(0.3), 3),
            ev(&t, "p3", EventStatus::Progress, Some(0.4), 4),
            ev(&t, "p4", EventStatus::Progress, Some(0.9), 5),
            ev(&t, "c", EventStatus::Completed, None, 6),
        ];
        let planned = run(&mut t, &events);
        let kinds: Vec<&str> = planned.iter().map(|p| p.event_type.as_str()).collect();
        assert_eq!(
            kinds,
            ["task_started", "task_progress", "task_progress", "task_completed"]
        );
        assert_eq!(t.milestones_sent, [25, 50, 75]);
        let body: Value = serde_json::from_str(&planned[2].payload).unwrap();
        assert_eq!(body["event_type"], "task_progress");
        assert_eq!(body["data"]["progress"], 0.9);
        assert_eq!(body["data"]["status"], "progress");
        let done: Value = serde_json::from_str(&planned[3].payload).unwrap();
        assert_eq!(done["data"]["result"], serde_json::json!({}));
        assert!(planned.iter().all(|p| p.delivery_id.as_str().len() == 28));
        // data.sequence is the applying event's seq (p1 applied but sent
        // nothing); data.milestone the highest crossed, on progress only
        let bodies: Vec<Value> = planned
            .iter()
            .map(|p| serde_json::from_str(&p.payload).unwrap())
            .collect();
        let seqs: Vec<u64> = bodies.iter().map(|b| b["data"]["sequence"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 3, 5, 6]);
        let milestones: Vec<Option<f64>> = bodies.iter().map(|b| b["data"]["milestone"].as_f64()).collect();
        assert_eq!(milestones, [None, Some(0.25), Some(0.75), None]);
        assert!(
            bodies.iter().all(|b| b["data"].get("status_url").is_none()),
            "no base URL given"
        );
    }

    #[test]
    fn status_url_comes_from_the_public_api_url() {
        let t = task(Some("https://hooks.example.com/h"));
        let e = ev(&t, "s", EventStatus::Started, None, 1);
        let Decision::Apply { webhooks, .. } =
            crate::domain::decide_linked(&t, &e, Some("https://api.example.com/prod"))
        else {
            panic!("applied")
        };
        let body: Value = serde_json::from_str(&webhooks[0].payload).unwrap();
        assert_eq!(
            body["data"]["status_url"],
            format!("https://api.example.com/prod/api/v1/status/{}", t.task_id)
        );
    }

    #[test]
    fn subscriptions_and_missing_urls_filter() {
        let mut t = task(None);
        let started = [ev(&t, "s", EventStatus::Started, None, 1)];
        assert!(run(&mut t, &started).is_empty());
        let mut t = task(Some("https://hooks.example.com/h"));
        t.webhook_events = vec![WebhookEvent::TaskFailed];
        let events = [
            ev(&t, "s", EventStatus::Progress, Some(0.6), 1),
            ev(&t, "f", EventStatus::Failed, None, 2),
        ];
        let kinds: Vec<WebhookEvent> = run(&mut t, &events).iter().map(|p| p.event_type).collect();
        assert_eq!(kinds, [WebhookEvent::TaskFailed]);
    }

    proptest! {
        /// Duplicated, shuffled and late progress never sends a milestone
        /// twice, nothing follows a terminal webhook, and ids never repeat.
        #[test]
        fn milestones_fire_once_and_nothing_follows_the_end(
            steps in proptest::collection::vec((0u8..10, 0u8..4, 0u32..=1000, 0i64..20), 1..60)
        ) {
            let mut t = task(Some("https://hooks.example.com/h"));
            let events: Vec<StatusEvent> = steps.iter().map(|&(id, st, permille, at)| {
                let status = [EventStatus::Started, EventStatus::Progress, EventStatus::Completed, EventStatus::Failed][st as usize];
                ev(&t, &format!("e{id}"), status, (status == EventStatus::Progress).then_some(f64::from(permille) / 1000.0), at)
            }).collect();
            let planned = run(&mut t, &events);
            let mut ids: Vec<&str> = planned.iter().map(|p| p.delivery_id.as_str()).collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), n, "a delivery id repeated");
            let progress = planned.iter().filter(|p| p.event_type == WebhookEvent::TaskProgress).count();
            prop_assert!(progress <= 3);
            let ends = planned.iter().filter(|p| matches!(p.event_type, WebhookEvent::TaskCompleted | WebhookEvent::TaskFailed)).count();
            prop_assert!(ends <= 1);
            if let Some(end) = planned.iter().position(|p| matches!(p.event_type, WebhookEvent::TaskCompleted | WebhookEvent::TaskFailed)) {
                prop_assert_eq!(end, planned.len() - 1, "nothing after the terminal webhook");
            }
            prop_assert!(planned.iter().filter(|p| p.event_type == WebhookEvent::TaskStarted).count() <= 1);
        }
    }
}
