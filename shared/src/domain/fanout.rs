//! Which webhooks an applied event sends (pure). Delivery ids are
//! deterministic, so the same event always plans the same deliveries: a
//! redelivered status event can never create a second delivery, and every
//! retry of a delivery carries the same `webhook-id`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::delivery::{Delivery, DeliveryId, DeliveryState, WebhookEvent};
use super::endpoint::{Endpoint, EndpointId};
use super::event::{EventStatus, StatusEvent};
use super::ids::{TaskId, TenantId};
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
    /// The tenant endpoint it goes to; `None`: the task's own `webhook_url`.
    pub endpoint_id: Option<EndpointId>,
    /// For a disabled endpoint: stored `paused`, not sent, kept for its
    /// recovery's replay.
    pub paused: bool,
}

/// Where an event's webhooks go besides the task's own `webhook_url`, and
/// what they link to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Links<'a> {
    /// The deployment's public API URL, for `data.status_url`.
    pub api_base: Option<&'a str>,
    /// The tenant's endpoints (disabled ones and other tenants' are skipped).
    pub endpoints: &'a [Endpoint],
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
            endpoint_id: self.endpoint_id,
            state: if self.paused {
                DeliveryState::Paused
            } else {
                DeliveryState::Pending
            },
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
        // never planned for a task (see `operational`)
        WebhookEvent::EndpointDisabled | WebhookEvent::EndpointRecovered | WebhookEvent::DeliveryExhausted => {}
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
/// - to the task's `webhook_url` (if any) the event types the task
///   subscribed to; to each endpoint of the task's tenant the event types
///   its filter names, each with its own delivery id (a disabled
///   endpoint's stored `paused`: not sent, replayed by its recovery).
pub fn plan(before: &Task, after: &mut Task, event: &StatusEvent, links: Links<'_>) -> Vec<PlannedDelivery> {
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
    let mut out = Vec::new();
    for (event_type, disc) in planned {
        let body = payload(after, event_type, milestone, event, links.api_base);
        let mut to = |url: &str, endpoint_id: Option<&EndpointId>, paused: bool| {
            let disc = match endpoint_id {
                None => disc.clone(),
                Some(id) => format!("{disc}@{id}"),
            };
            out.push(PlannedDelivery {
                delivery_id: DeliveryId::derive(&after.task_id, event_type, &disc),
                event_type,
                url: url.to_owned(),
                payload: body.clone(),
                sequence: after.event_seq,
                endpoint_id: endpoint_id.cloned(),
                paused,
            });
        };
        if let Some(url) = &after.webhook_url {
            if after.webhook_events.contains(&event_type) {
                to(url, None, false);
            }
        }
        // a disabled endpoint's are kept, paused, for its recovery
        for e in links.endpoints {
            if e.tenant == after.tenant && e.subscribes(event_type) {
                to(&e.url, Some(&e.endpoint_id), e.disabled);
            }
        }
    }
    out
}

/// The deliveries that could overtake `d` (see `delivery::overtaken_by`):
/// the same target's other progress milestones and its `task_completed` and
/// `task_failed`, by their deterministic ids; none unless `d` is progress.
/// Coalescing reads these few items, not all of the task's deliveries
/// (which grow with the tenant's endpoints).
pub fn could_overtake(d: &Delivery) -> Vec<DeliveryId> {
    if d.event_type != WebhookEvent::TaskProgress {
        return Vec::new();
    }
    let to_target = |disc: String| match &d.endpoint_id {
        None => disc,
        Some(id) => format!("{disc}@{id}"),
    };
    let milestones = MILESTONES.iter().map(|m| (WebhookEvent::TaskProgress, m.to_string()));
    let ends = [WebhookEvent::TaskCompleted, WebhookEvent::TaskFailed].map(|e| (e, "once".to_owned()));
    milestones
        .chain(ends)
        .map(|(event_type, disc)| DeliveryId::derive(&d.task_id, event_type, &to_target(disc)))
        .filter(|id| id != &d.delivery_id)
        .collect()
}

/// An operational webhook (about the tenant's endpoints, not a task): one
/// delivery to each of the tenant's enabled endpoints that subscribe to
/// `event_type`, but `about` (the endpoint it is about). Its deliveries
/// belong to no task: their partition is a task id derived from
/// `occurrence`, so planning the same occurrence again gives the same
/// deliveries.
fn operational(
    tenant: &TenantId,
    event_type: WebhookEvent,
    occurrence: &str,
    data: Value,
    at: DateTime<Utc>,
    about: Option<&EndpointId>,
    endpoints: &[Endpoint],
) -> Vec<Delivery> {
    let partition = TaskId::derived(&format!("{}|{occurrence}", event_type.as_str()));
    let payload = json!({
        "event_type": event_type.as_str(),
        "timestamp": crate::time::sort_ts(at),
        "data": data,
    })
    .to_string();
    endpoints
        .iter()
        .filter(|e| &e.tenant == tenant && Some(&e.endpoint_id) != about && e.wants(event_type))
        .map(|e| Delivery {
            task_id: partition,
            tenant: e.tenant.clone(),
            delivery_id: DeliveryId::derive(&partition, event_type, &format!("once@{}", e.endpoint_id)),
            event_type,
            url: e.url.clone(),
            payload: payload.clone(),
            sequence: 0,
            endpoint_id: Some(e.endpoint_id.clone()),
            state: DeliveryState::Pending,
            created_at: at,
            enqueued: false,
            cycle: 0,
            attempts: Vec::new(),
            attempts_total: 0,
        })
        .collect()
}

/// `endpoint.disabled`: `disabled` failed every attempt since `since` and
/// was disabled at `at` (one occurrence per failure streak).
pub fn endpoint_disabled(
    disabled: &Endpoint,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
    endpoints: &[Endpoint],
) -> Vec<Delivery> {
    let data = json!({
        "endpoint_id": disabled.endpoint_id,
        "url": disabled.url,
        "description": disabled.description,
        "reason": "failing",
        "failing_since": crate::time::sort_ts(since),
        "disabled_at": crate::time::sort_ts(at),
    });
    let occurrence = format!("{}|{}", disabled.endpoint_id, crate::time::sort_ts(since));
    operational(
        &disabled.tenant,
        WebhookEvent::EndpointDisabled,
        &occurrence,
        data,
        at,
        Some(&disabled.endpoint_id),
        endpoints,
    )
}

/// `endpoint.recovered`: `recovered`, disabled, was enabled at `at` by a
/// recovery whose first call replayed `replayed` deliveries since `since`.
pub fn endpoint_recovered(
    recovered: &Endpoint,
    since: DateTime<Utc>,
    replayed: usize,
    at: DateTime<Utc>,
    endpoints: &[Endpoint],
) -> Vec<Delivery> {
    let data = json!({
        "endpoint_id": recovered.endpoint_id,
        "url": recovered.url,
        "description": recovered.description,
        "since": crate::time::sort_ts(since),
        "replayed": replayed,
        "recovered_at": crate::time::sort_ts(at),
    });
    let occurrence = format!("{}|{}", recovered.endpoint_id, crate::time::sort_ts(at));
    operational(
        &recovered.tenant,
        WebhookEvent::EndpointRecovered,
        &occurrence,
        data,
        at,
        Some(&recovered.endpoint_id),
        endpoints,
    )
}

/// `delivery.exhausted`: `dead` spent its attempts (the attempt budget of
/// its cycle) without a success; the tenant's other subscribed endpoints
/// hear of it (one occurrence per delivery and cycle). Never planned for
/// an operational delivery: no webhooks about webhooks about webhooks.
pub fn delivery_exhausted(dead: &Delivery, at: DateTime<Utc>, endpoints: &[Endpoint]) -> Vec<Delivery> {
    if WebhookEvent::OPERATIONAL.contains(&dead.event_type) {
        return Vec::new();
    }
    let mut data = json!({
        "delivery_id": dead.delivery_id,
        "task_id": dead.task_id.to_string(),
        "event_type": dead.event_type.as_str(),
        "url": dead.url,
        "attempts": dead.attempts_total,
        "cycle": dead.cycle,
    });
    if let Some(id) = &dead.endpoint_id {
        data["endpoint_id"] = json!(id);
    }
    let occurrence = format!("{}|{}", dead.delivery_id, dead.cycle);
    operational(
        &dead.tenant,
        WebhookEvent::DeliveryExhausted,
        &occurrence,
        data,
        at,
        dead.endpoint_id.as_ref(),
        endpoints,
    )
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
        let Decision::Apply { webhooks, .. } = crate::domain::decide_linked(
            &t,
            &e,
            Links {
                api_base: Some("https://api.example.com/prod"),
                endpoints: &[],
            },
        ) else {
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

    proptest! {
        /// Whatever overtakes a progress delivery (among all of the task's
        /// deliveries, to its own URL and two endpoints) is one of the few
        /// ids `could_overtake` names: coalescing reads only those.
        #[test]
        fn could_overtake_names_every_delivery_that_overtakes(
            steps in proptest::collection::vec((0u8..=100, 0u8..4), 1..12),
            end in 0u8..3,
        ) {
            let endpoints = [
                crate::domain::Endpoint::new("acme".parse().unwrap(), "https://a.example.com/h".into(), WebhookEvent::ALL.to_vec(), crate::time::now()),
                crate::domain::Endpoint::new("acme".parse().unwrap(), "https://b.example.com/h".into(), vec![WebhookEvent::TaskProgress, WebhookEvent::TaskFailed], crate::time::now()),
            ];
            let mut t = task(Some("https://hooks.example.com/h"));
            let mut events = Vec::new();
            for (i, (pct, kind)) in steps.iter().enumerate() {
                let at = i as i64 + 1;
                events.push(match kind {
                    0 => ev(&t, &format!("s{i}"), EventStatus::Started, None, at),
                    _ => ev(&t, &format!("p{i}"), EventStatus::Progress, Some(f64::from(*pct) / 100.0), at),
                });
            }
            match end {
                0 => events.push(ev(&t, "c", EventStatus::Completed, None, 100)),
                1 => events.push(ev(&t, "f", EventStatus::Failed, None, 100)),
                _ => {}
            }
            let mut all = Vec::new();
            for e in &events {
                let links = Links { api_base: None, endpoints: &endpoints };
                if let Decision::Apply { task, webhooks, .. } = crate::domain::decide_linked(&t, e, links) {
                    t = *task;
                    all.extend(webhooks.into_iter().map(|p| p.into_delivery(&t, crate::time::now())));
                }
            }
            for d in all.iter().filter(|d| d.event_type == WebhookEvent::TaskProgress) {
                let candidates = could_overtake(d);
                prop_assert!(!candidates.contains(&d.delivery_id));
                if let Some(newer) = crate::domain::delivery::overtaken_by(d, &all) {
                    prop_assert!(candidates.contains(&newer.delivery_id), "{:?} overtaken by {:?}", d.delivery_id, newer.delivery_id);
                }
                // and reading only the candidates decides the same
                let read: Vec<Delivery> = all.iter().filter(|o| candidates.contains(&o.delivery_id)).cloned().collect();
                prop_assert_eq!(
                    crate::domain::delivery::overtaken_by(d, &read).is_some(),
                    crate::domain::delivery::overtaken_by(d, &all).is_some()
                );
            }
        }
    }

    #[test]
    fn every_enabled_endpoint_of_the_tenant_gets_what_its_filter_names_with_its_own_ids() {
        use crate::domain::endpoint::{Endpoint, EndpointId};
        let endpoint = |tenant: &str, events: &[WebhookEvent], disabled: bool| Endpoint {
            disabled,
            ..Endpoint::new(
                tenant.parse().unwrap(),
                format!("https://{}.example.com/h", tenant),
                events.to_vec(),
                crate::time::now(),
            )
        };
        let all = endpoint("acme", &WebhookEvent::ALL, false);
        let ends = endpoint("acme", &[WebhookEvent::TaskCompleted, WebhookEvent::TaskFailed], false);
        let off = endpoint("acme", &WebhookEvent::ALL, true);
        let other = endpoint("globex", &WebhookEvent::ALL, false);
        let endpoints = [all.clone(), ends.clone(), off.clone(), other];
        // no webhook_url of its own: the endpoints still get the events
        let mut t = task(None);
        let mut planned = Vec::new();
        for e in [
            ev(&t, "s", EventStatus::Started, None, 1),
            ev(&t, "c", EventStatus::Completed, None, 2),
        ] {
            let links = Links {
                api_base: None,
                endpoints: &endpoints,
            };
            if let Decision::Apply { task, webhooks, .. } = crate::domain::decide_linked(&t, &e, links) {
                t = *task;
                planned.extend(webhooks);
            }
        }
        let got: Vec<(&str, Option<&EndpointId>, bool)> = planned
            .iter()
            .map(|p| (p.event_type.as_str(), p.endpoint_id.as_ref(), p.paused))
            .collect();
        assert_eq!(
            got,
            [
                ("task_started", Some(&all.endpoint_id), false),
                ("task_started", Some(&off.endpoint_id), true),
                ("task_completed", Some(&all.endpoint_id), false),
                ("task_completed", Some(&ends.endpoint_id), false),
                ("task_completed", Some(&off.endpoint_id), true),
            ]
        );
        let mut ids: Vec<&DeliveryId> = planned.iter().map(|p| &p.delivery_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5, "one webhook-id per (event, endpoint)");
        assert_eq!(planned[2].payload, planned[3].payload, "one body per event");
        assert_eq!(planned[3].url, ends.url);
    }
}
