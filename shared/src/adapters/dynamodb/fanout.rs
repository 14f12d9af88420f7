//! The second fan-out stage. An event's deliveries are written in the
//! event's one transaction when they fit (DynamoDB: 100 items and 4 MB a
//! transaction). When they do not (a tenant with up to 100 endpoints, an
//! event of two webhook types, a 64 KB result in each payload), the
//! transaction holds fan-out markers instead, `TASK#{id}` /
//! `FANOUT#{seq:010}#{chunk:03}`: each names up to 99 deliveries (one copy of
//! each distinct payload), small enough to be one item and to be expanded in
//! one transaction of its own: the marker deleted (if it is still there) and
//! its deliveries put. Expanding is thus atomic per marker and idempotent.
//!
//! `apply_event` expands right after the event's transaction. A writer that
//! dies in between leaves the markers: the status event's redelivery (a
//! duplicate) expands them before it flushes the outbox, and each marker
//! carries a due-index entry (`OUTBOX_GRACE` after the event) so the
//! watchdog expands it should the event never come back.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deliveries::delivery_item;
use super::watch::{due_pk, due_sk};
use super::{from_item, s, task_pk, to_item, Condition, DynamoStore, Item, FANOUT_PREFIX};
use crate::domain::delivery::WebhookEvent;
use crate::domain::watch;
use crate::domain::{Delivery, DeliveryId, DeliveryState, EndpointId, TaskId, TenantId};
use crate::error::StoreError;

/// Items in one `TransactWriteItems` (DynamoDB's limit).
pub(super) const TX_MAX_ITEMS: usize = 100;
/// Bytes in one transaction: DynamoDB's 4 MB, less a margin for what the
/// size estimate leaves out.
pub(super) const TX_MAX_BYTES: usize = 3_800_000;
/// Bytes of one marker: DynamoDB's 400 KB item limit, less a margin.
const MARKER_MAX_BYTES: usize = 360_000;

/// What an event's transaction writes for its deliveries.
pub(super) enum DeliveryWrites {
    /// The delivery items themselves.
    Inline(Vec<Item>),
    /// Markers, to be expanded after the event's transaction.
    Deferred(Vec<Item>),
}

impl DeliveryWrites {
    pub(super) fn items(&self) -> &[Item] {
        match self {
            Self::Inline(items) | Self::Deferred(items) => items,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FanoutItem {
    pk: String,
    sk: String,
    task_id: TaskId,
    tenant: TenantId,
    created_at: DateTime<Utc>,
    /// The table's TTL, and the deliveries' (epoch seconds).
    expires_at: i64,
    /// Each distinct payload once.
    payloads: Vec<String>,
    deliveries: Vec<FanoutEntry>,
    due_pk: String,
    due_sk: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct FanoutEntry {
    delivery_id: DeliveryId,
    event_type: WebhookEvent,
    url: String,
    sequence: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<EndpointId>,
    paused: bool,
    /// Its place in the marker's `payloads`.
    payload: usize,
}

impl FanoutItem {
    fn deliveries(self) -> Vec<Delivery> {
        let Self {
            task_id,
            tenant,
            created_at,
            payloads,
            deliveries,
            ..
        } = self;
        deliveries
            .into_iter()
            .map(|e| Delivery {
                task_id,
                tenant: tenant.clone(),
                delivery_id: e.delivery_id,
                event_type: e.event_type,
                url: e.url,
                payload: payloads.get(e.payload).cloned().unwrap_or_default(),
                sequence: e.sequence,
                endpoint_id: e.endpoint_id,
                state: if e.paused {
                    DeliveryState::Paused
                } else {
                    DeliveryState::Pending
                },
                created_at,
                enqueued: false,
                cycle: 0,
                attempts: Vec::new(),
                attempts_total: 0,
            })
            .collect()
    }
}

/// DynamoDB's size of an item (attribute names and values, UTF-8; a number
/// counted as its digits, which is never less than DynamoDB counts).
pub(super) fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        AttributeValue::Ss(l) | AttributeValue::Ns(l) => l.iter().map(String::len).sum(),
        AttributeValue::Bs(l) => l.iter().map(|b| b.as_ref().len()).sum(),
        _ => 1,
    }
}

/// The writes for `deliveries` next to the event's own items (`fixed` of
/// them, `fixed_bytes` in all): inline if everything fits one transaction,
/// else markers (which then must fit it).
pub(super) fn delivery_writes(
    fixed: usize,
    fixed_bytes: usize,
    deliveries: &[Delivery],
    expires_at: i64,
) -> Result<DeliveryWrites, StoreError> {
    let items = deliveries
        .iter()
        .map(|d| delivery_item(d, expires_at))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes: Vec<usize> = items.iter().map(item_size).collect();
    if fixed + items.len() <= TX_MAX_ITEMS && fixed_bytes + sizes.iter().sum::<usize>() <= TX_MAX_BYTES {
        return Ok(DeliveryWrites::Inline(items));
    }
    let markers = markers(deliveries, &sizes, expires_at)?;
    let bytes: usize = markers.iter().map(item_size).sum();
    if fixed + markers.len() > TX_MAX_ITEMS || fixed_bytes + bytes > TX_MAX_BYTES {
        return Err(StoreError::Conflict {
            op: "TransactWriteItems",
            detail: format!(
                "{} deliveries need {} fan-out markers of {bytes} bytes: more than one transaction holds",
                deliveries.len(),
                markers.len()
            ),
        });
    }
    Ok(DeliveryWrites::Deferred(markers))
}

/// Cuts `deliveries` (whose items weigh `sizes`) into markers, each
/// expandable in one transaction (the marker's delete and a put per
/// delivery) and each one item.
fn markers(deliveries: &[Delivery], sizes: &[usize], expires_at: i64) -> Result<Vec<Item>, StoreError> {
    let Some(first) = deliveries.first() else {
        return Ok(Vec::new());
    };
    let seq = first.sequence;
    let mut chunks: Vec<FanoutItem> = Vec::new();
    let (mut tx_bytes, mut marker_bytes) = (0, 0);
    for (d, &size) in deliveries.iter().zip(sizes) {
        let entry_bytes = 160
            + d.delivery_id.as_str().len()
            + d.url.len()
            + d.endpoint_id.as_ref().map_or(0, |e| e.to_string().len());
        let fits = chunks.last().is_some_and(|c| {
            let payload_bytes = if c.payloads.contains(&d.payload) {
                0
            } else {
                d.payload.len() + 1
            };
            c.deliveries.len() + 1 < TX_MAX_ITEMS
                && tx_bytes + size <= TX_MAX_BYTES
                && marker_bytes + entry_bytes + payload_bytes <= MARKER_MAX_BYTES
        });
        if !fits {
            let sk = format!("{FANOUT_PREFIX}{seq:010}#{:03}", chunks.len());
            chunks.push(FanoutItem {
                pk: task_pk(&d.task_id),
                due_pk: due_pk(watch::shard(&d.task_id)),
                due_sk: due_sk(d.created_at + watch::OUTBOX_GRACE, &format!("{}#{sk}", d.task_id)),
                sk,
                task_id: d.task_id,
                tenant: d.tenant.clone(),
                created_at: d.created_at,
                expires_at,
                payloads: Vec::new(),
                deliveries: Vec::new(),
            });
            (tx_bytes, marker_bytes) = (0, 400);
        }
        let chunk = chunks.last_mut().expect("a chunk was just pushed if none was open");
        let payload = match chunk.payloads.iter().position(|p| p == &d.payload) {
            Some(i) => i,
            None => {
                marker_bytes += d.payload.len() + 1;
                chunk.payloads.push(d.payload.clone());
                chunk.payloads.len() - 1
            }
        };
        chunk.deliveries.push(FanoutEntry {
            delivery_id: d.delivery_id.clone(),
            event_type: d.event_type,
            url: d.url.clone(),
            sequence: d.sequence,
            endpoint_id: d.endpoint_id.clone(),
            paused: d.state == DeliveryState::Paused,
            payload,
        });
        tx_bytes += size;
        marker_bytes += entry_bytes;
    }
    chunks.iter().map(|c| to_item(c, "fan-out marker")).collect()
}

impl DynamoStore {
    /// Expands the task's fan-out markers into their deliveries; answers how
    /// many deliveries were written (0: none left, or another writer
    /// expanded them first).
    pub(super) async fn expand_markers(&self, task_id: &TaskId) -> Result<u32, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(task_pk(task_id)))
            .expression_attribute_values(":prefix", s(FANOUT_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut markers = Vec::new();
        while let Some(item) = pages.try_next().await.map_err(super::unavailable("Query"))? {
            markers.push(item);
        }
        self.expand_items(markers).await
    }

    /// Expands markers (read back, or written by this process's own
    /// transaction).
    pub(super) async fn expand_items(&self, markers: Vec<Item>) -> Result<u32, StoreError> {
        let mut written = 0;
        for marker in markers {
            written += self.expand(from_item::<FanoutItem>(marker, "fan-out marker")?).await?;
        }
        Ok(written)
    }

    /// One marker: deleted if still there, with its deliveries put, in one
    /// transaction (the deliveries need no condition: only this write ever
    /// creates them, and it happens once).
    async fn expand(&self, marker: FanoutItem) -> Result<u32, StoreError> {
        let (pk, sk, expires_at) = (marker.pk.clone(), marker.sk.clone(), marker.expires_at);
        let deliveries = marker.deliveries();
        let mut items = vec![self.tx_delete(pk, &sk, Some(Condition::new("attribute_exists(pk)")))?];
        for d in &deliveries {
            items.push(self.tx_put(delivery_item(d, expires_at)?, None)?);
        }
        if self.transact(items).await? {
            tracing::info!(marker = %sk, deliveries = deliveries.len(), "fan-out marker expanded");
            Ok(deliveries.len() as u32)
        } else {
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::WebhookEvent;

    fn delivery(i: usize, kind: WebhookEvent, payload: &str, url_len: usize) -> Delivery {
        let task_id: TaskId = "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b".parse().unwrap();
        let endpoint = EndpointId::generate();
        Delivery {
            task_id,
            tenant: "acme".parse().unwrap(),
            delivery_id: DeliveryId::derive(&task_id, kind, &format!("once@{i}")),
            event_type: kind,
            url: format!("https://hooks.example.com/{}", "u".repeat(url_len)),
            payload: payload.to_owned(),
            sequence: 7,
            endpoint_id: (i > 0).then_some(endpoint),
            state: if i % 7 == 3 {
                DeliveryState::Paused
            } else {
                DeliveryState::Pending
            },
            created_at: "2026-11-30T10:00:00Z".parse().unwrap(),
            enqueued: false,
            cycle: 0,
            attempts: Vec::new(),
            attempts_total: 0,
        }
    }

    /// The largest event: two webhook types to the task's own URL and 100
    /// endpoints, URLs of the longest allowed, payloads of a full result.
    fn largest(payload_bytes: usize, url_len: usize) -> Vec<Delivery> {
        let started = format!(
            "{{\"event_type\":\"task_started\",\"x\":\"{}\"}}",
            "s".repeat(payload_bytes)
        );
        let progress = format!(
            "{{\"event_type\":\"task_progress\",\"x\":\"{}\"}}",
            "p".repeat(payload_bytes)
        );
        (0..=crate::domain::endpoint::MAX_ENDPOINTS_PER_TENANT)
            .flat_map(|i| {
                [
                    delivery(i, WebhookEvent::TaskStarted, &started, url_len),
                    delivery(i, WebhookEvent::TaskProgress, &progress, url_len),
                ]
            })
            .collect()
    }

    #[test]
    fn a_small_fan_out_stays_in_the_events_transaction() {
        let few: Vec<Delivery> = largest(200, 20).into_iter().take(90).collect();
        assert!(matches!(
            delivery_writes(3, 2_000, &few, 0).unwrap(),
            DeliveryWrites::Inline(items) if items.len() == 90
        ));
    }

    #[test]
    fn the_largest_fan_out_fits_as_markers_and_expands_to_every_delivery() {
        let url_max = crate::outbound::target::MAX_URL_LEN - "https://hooks.example.com/".len();
        // the task and its history entry with a 64 KB result and 16 KB of metadata
        let fixed_bytes = 2 * 90_000;
        for (payload, url) in [(200, 20), (90_000, 20), (200, url_max), (90_000, url_max)] {
            let all = largest(payload, url);
            let DeliveryWrites::Deferred(markers) = delivery_writes(3, fixed_bytes, &all, 0).unwrap() else {
                panic!("{} deliveries inline", all.len());
            };
            let sizes: Vec<usize> = markers.iter().map(item_size).collect();
            assert!(3 + markers.len() <= TX_MAX_ITEMS);
            assert!(fixed_bytes + sizes.iter().sum::<usize>() <= TX_MAX_BYTES, "{sizes:?}");
            let mut back = Vec::new();
            for m in markers {
                assert!(item_size(&m) <= 400_000, "a marker of {} bytes", item_size(&m));
                let deliveries = from_item::<FanoutItem>(m, "marker").unwrap().deliveries();
                assert!(
                    deliveries.len() < TX_MAX_ITEMS,
                    "a marker and its deliveries in one transaction"
                );
                let expansion: usize = deliveries
                    .iter()
                    .map(|d| item_size(&delivery_item(d, 0).unwrap()))
                    .sum();
                assert!(expansion <= TX_MAX_BYTES, "an expansion of {expansion} bytes");
                back.extend(deliveries);
            }
            assert_eq!(back, all, "payload {payload}, url {url}");
        }
    }
}
