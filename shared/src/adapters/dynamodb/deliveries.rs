//! Webhook deliveries, beside their task: written with the event that plans
//! them (`tasks::apply_event`), then updated by the sender and redelivery.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::watch::{due_pk, due_sk};
use super::{from_item, n, s, settle, task_pk, to_item, Condition, DynamoStore, Item};
use crate::domain::delivery::MAX_KEPT_ATTEMPTS;
use crate::domain::watch;
use crate::domain::{
    Attempt, AttemptEntry, AttemptRecord, Delivery, DeliveryId, DeliveryState, EndpointId, TaskId, TenantId,
    WebhookEvent,
};
use crate::error::StoreError;
use crate::ports::DeliveryStore;

/// The endpoint index's partition: one endpoint's deliveries.
pub(super) fn endpoint_deliveries_pk(endpoint_id: &EndpointId) -> String {
    format!("EPDELIVERIES#{endpoint_id}")
}

fn delivery_sk(delivery_id: &DeliveryId) -> String {
    format!("DELIVERY#{delivery_id}")
}

#[derive(Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    task_id: TaskId,
    tenant: TenantId,
    delivery_id: DeliveryId,
    event_type: WebhookEvent,
    url: String,
    payload: String,
    /// Absent on items written before sequences were kept.
    #[serde(default)]
    sequence: u64,
    /// The endpoint index (`GSI4`): an endpoint's deliveries, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<EndpointId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ep_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ep_sk: Option<String>,
    state: DeliveryState,
    created_at: DateTime<Utc>,
    enqueued: bool,
    cycle: u32,
    #[serde(default)]
    attempts: Vec<Attempt>,
    /// Absent on items written before attempts were trimmed.
    #[serde(default)]
    attempts_total: u32,
    expires_at: i64,
    /// The due index: a delivery still in the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_sk: Option<String>,
}

impl DeliveryItem {
    fn new(d: &Delivery, expires_at: i64) -> Self {
        let unsent = !d.enqueued && d.state == DeliveryState::Pending;
        Self {
            pk: task_pk(&d.task_id),
            sk: delivery_sk(&d.delivery_id),
            task_id: d.task_id,
            tenant: d.tenant.clone(),
            delivery_id: d.delivery_id.clone(),
            event_type: d.event_type,
            url: d.url.clone(),
            payload: d.payload.clone(),
            sequence: d.sequence,
            endpoint_id: d.endpoint_id.clone(),
            ep_pk: d.endpoint_id.as_ref().map(endpoint_deliveries_pk),
            ep_sk: d
                .endpoint_id
                .as_ref()
                .map(|_| format!("{}#{}", crate::time::sort_ts(d.created_at), d.delivery_id)),
            state: d.state,
            created_at: d.created_at,
            enqueued: d.enqueued,
            cycle: d.cycle,
            attempts: d.attempts.clone(),
            attempts_total: d.attempts_total,
            expires_at,
            // the outbox: a pending delivery not yet on the queue
            due_pk: unsent.then(|| due_pk(watch::shard(&d.task_id))),
            due_sk: unsent.then(|| due_sk(d.created_at + watch::OUTBOX_GRACE, &d.delivery_id)),
        }
    }

    fn into_delivery(self) -> Delivery {
        Delivery {
            task_id: self.task_id,
            tenant: self.tenant,
            delivery_id: self.delivery_id,
            event_type: self.event_type,
            url: self.url,
            payload: self.payload,
            sequence: self.sequence,
            endpoint_id: self.endpoint_id,
            state: self.state,
            created_at: self.created_at,
            enqueued: self.enqueued,
            cycle: self.cycle,
            attempts_total: self.attempts_total.max(self.attempts.len() as u32),
            attempts: self.attempts,
        }
    }
}

/// A delivery read from its item.
pub(super) fn delivery_from_item(item: Item) -> Result<Delivery, StoreError> {
    from_item::<DeliveryItem>(item, "delivery item").map(DeliveryItem::into_delivery)
}

/// A new delivery's item, for the event's transaction.
pub(super) fn delivery_item(d: &Delivery, expires_at: i64) -> Result<Item, StoreError> {
    to_item(&DeliveryItem::new(d, expires_at), "delivery item")
}

fn corrupt(what: &'static str) -> impl FnOnce(serde_dynamo::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

impl DynamoStore {
    async fn query_deliveries(&self, task_id: &TaskId, unsent_only: bool) -> Result<Vec<Delivery>, StoreError> {
        let filter = unsent_only.then(|| Condition::new("enqueued = :no").value(":no", AttributeValue::Bool(false)));
        self.task_items(task_id, "DELIVERY#", filter)
            .await?
            .into_iter()
            .map(|item| from_item::<DeliveryItem>(item, "delivery item").map(DeliveryItem::into_delivery))
            .collect()
    }

    /// An `UpdateItem` on a delivery, if it exists and `condition` holds;
    /// answers the attributes `returning` asks for (`None`: missing, the
    /// condition failed, or none asked for: the item carries the payload).
    async fn update_delivery(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        update: &str,
        condition: Condition,
        returning: ReturnValue,
    ) -> Result<Option<Item>, StoreError> {
        Ok(self
            .send_delivery_update(task_id, delivery_id, update, condition, returning)
            .await?
            .and_then(|out| out.attributes))
    }

    /// `update_delivery`, answering whether the condition held.
    async fn delivery_updated(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        update: &str,
        condition: Condition,
    ) -> Result<bool, StoreError> {
        Ok(self
            .send_delivery_update(task_id, delivery_id, update, condition, ReturnValue::None)
            .await?
            .is_some())
    }

    async fn send_delivery_update(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        update: &str,
        condition: Condition,
        returning: ReturnValue,
    ) -> Result<Option<aws_sdk_dynamodb::operation::update_item::UpdateItemOutput>, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_pk(task_id)))
            .key("sk", s(delivery_sk(delivery_id)))
            .update_expression(update)
            .set_condition_expression(condition.expression())
            .set_expression_attribute_names(condition.names())
            .set_expression_attribute_values(condition.values())
            .return_values(returning)
            .send()
            .await;
        settle("UpdateItem", sent)
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn expand_fanout(&self, task_id: &TaskId) -> Result<u32, StoreError> {
        self.expand_markers(task_id).await
    }

    async fn insert_delivery(&self, delivery: &Delivery, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(delivery_item(delivery, expires_at.timestamp())?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        Ok(settle("PutItem", sent)?.is_some())
    }

    async fn unsent_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        // a paused delivery (a disabled endpoint's) is not sent
        let mut unsent = self.query_deliveries(task_id, true).await?;
        unsent.retain(|d| d.state == DeliveryState::Pending);
        Ok(unsent)
    }

    /// A newer cycle started meanwhile (condition fails): nothing to mark.
    /// The first attempt should follow within seconds; the watchdog looks
    /// again if none is recorded within the attempt grace. A delivery the
    /// sender already finished is only marked (its index entry stays gone).
    async fn mark_enqueued(&self, task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<(), StoreError> {
        let look_again = crate::time::now() + watch::ATTEMPT_GRACE;
        let same_cycle = || {
            Condition::new("attribute_exists(pk) AND #cycle = :cycle")
                .name("#cycle", "cycle")
                .value(":cycle", n(cycle))
                .value(":yes", AttributeValue::Bool(true))
        };
        let still_pending = same_cycle()
            .and("#state = :pending")
            .name("#state", "state")
            .value(":pending", s("pending"))
            .value(":due_pk", s(due_pk(watch::shard(task_id))))
            .value(":due_sk", s(due_sk(look_again, delivery_id)));
        let marked = self
            .delivery_updated(
                task_id,
                delivery_id,
                "SET enqueued = :yes, due_pk = :due_pk, due_sk = :due_sk",
                still_pending,
            )
            .await?;
        if !marked {
            self.update_delivery(
                task_id,
                delivery_id,
                "SET enqueued = :yes",
                same_cycle(),
                ReturnValue::None,
            )
            .await?;
        }
        Ok(())
    }

    async fn claim_unsent(&self, task_id: &TaskId, delivery_id: &DeliveryId, cycle: u32) -> Result<bool, StoreError> {
        let look_again = crate::time::now() + watch::ATTEMPT_GRACE;
        let condition = Condition::new("#cycle = :cycle AND #state = :pending AND enqueued = :no")
            .name("#cycle", "cycle")
            .name("#state", "state")
            .value(":cycle", n(cycle))
            .value(":pending", s("pending"))
            .value(":no", AttributeValue::Bool(false))
            .value(":yes", AttributeValue::Bool(true))
            .value(":due_pk", s(due_pk(watch::shard(task_id))))
            .value(":due_sk", s(due_sk(look_again, delivery_id)));
        let claimed = self
            .update_delivery(
                task_id,
                delivery_id,
                "SET enqueued = :yes, due_pk = :due_pk, due_sk = :due_sk",
                condition,
                ReturnValue::UpdatedNew,
            )
            .await?;
        Ok(claimed.is_some())
    }

    async fn get_delivery(&self, task_id: &TaskId, delivery_id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        match self.get(task_pk(task_id), &delivery_sk(delivery_id)).await? {
            None => Ok(None),
            Some(item) => Ok(Some(from_item::<DeliveryItem>(item, "delivery item")?.into_delivery())),
        }
    }

    /// Redelivered meanwhile (condition fails): the attempt belongs to an old
    /// cycle. Appends while fewer than `MAX_KEPT_ATTEMPTS` are kept; past
    /// that, writes the trimmed list back, conditional on the list it read
    /// (a concurrent attempt makes it read again).
    async fn record_attempt(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        attempt: &Attempt,
        state: DeliveryState,
        next_attempt: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let one = serde_dynamo::to_attribute_value::<_, AttributeValue>(attempt).map_err(corrupt("attempt"))?;
        let state = serde_dynamo::to_attribute_value::<_, AttributeValue>(state).map_err(corrupt("delivery state"))?;
        let condition = |extra: &str| {
            let mut c = Condition::new(&format!("attribute_exists(pk) AND #cycle = :cycle AND {extra}"))
                .name("#cycle", "cycle")
                .name("#state", "state")
                .value(":cycle", n(cycle))
                .value(":state", state.clone())
                .value(":one", n(1));
            if let Some(when) = next_attempt {
                c = c
                    .value(":due_pk", s(due_pk(watch::shard(task_id))))
                    .value(":due_sk", s(due_sk(when + watch::ATTEMPT_GRACE, delivery_id)));
            }
            c
        };
        let due = match next_attempt {
            Some(_) => ", due_pk = :due_pk, due_sk = :due_sk",
            None => " REMOVE due_pk, due_sk",
        };
        let append = condition("(attribute_not_exists(attempts) OR size(attempts) < :kept)")
            .value(":kept", n(MAX_KEPT_ATTEMPTS))
            .value(":empty", AttributeValue::L(Vec::new()))
            .value(":attempt", AttributeValue::L(vec![one.clone()]));
        let update = format!(
            "SET attempts = list_append(if_not_exists(attempts, :empty), :attempt), #state = :state, \
             attempts_total = if_not_exists(attempts_total, :zero) + :one{due}"
        );
        let append = append.value(":zero", n(0));
        if self.delivery_updated(task_id, delivery_id, &update, append).await? {
            return Ok(true);
        }
        // the list is full, the cycle moved on, or the item is gone
        for _ in 0..3 {
            let Some(current) = self.get_delivery(task_id, delivery_id).await? else {
                return Ok(false);
            };
            if current.cycle != cycle {
                return Ok(false);
            }
            let mut kept = current.attempts.clone();
            let read = kept.len();
            kept.push(attempt.clone());
            kept.drain(..kept.len().saturating_sub(MAX_KEPT_ATTEMPTS));
            let list = serde_dynamo::to_attribute_value::<_, AttributeValue>(&kept).map_err(corrupt("attempts"))?;
            let replace = condition("size(attempts) = :read")
                .value(":read", n(read))
                .value(":list", list)
                .value(":total", n(current.attempts_total));
            let update = format!("SET attempts = :list, #state = :state, attempts_total = :total + :one{due}");
            if self.delivery_updated(task_id, delivery_id, &update, replace).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Conflict {
            op: "UpdateItem",
            detail: format!("attempts of {delivery_id} kept changing while trimmed"),
        })
    }

    async fn append_attempt_entry(
        &self,
        task_id: &TaskId,
        record: &AttemptRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.append_attempt(task_id, record, expires_at).await
    }

    async fn attempt_entries(
        &self,
        task_id: &TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AttemptEntry>, StoreError> {
        self.attempts_after(task_id, after, limit).await
    }

    async fn get_deliveries(&self, task_id: &TaskId, ids: &[DeliveryId]) -> Result<Vec<Delivery>, StoreError> {
        let keys: Vec<Item> = ids
            .iter()
            .map(|id| {
                HashMap::from([
                    ("pk".to_owned(), s(task_pk(task_id))),
                    ("sk".to_owned(), s(delivery_sk(id))),
                ])
            })
            .collect();
        self.get_many(&keys)
            .await?
            .into_iter()
            .map(delivery_from_item)
            .collect()
    }

    async fn list_deliveries(&self, task_id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        let mut all = self.query_deliveries(task_id, false).await?;
        all.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(all)
    }

    async fn restart_delivery(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        self.restart(task_id, delivery_id, Condition::new("attribute_exists(pk)"))
            .await
    }

    /// Only an enqueued `pending` delivery still due at `now`: a run that
    /// read the index before another run claimed the delivery finds it no
    /// longer due and leaves it.
    async fn restart_lost(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<Delivery>, StoreError> {
        let still_due = Condition::new("#state = :pending AND enqueued = :yes AND due_sk <= :now")
            .value(":yes", AttributeValue::Bool(true))
            .value(":now", s(format!("{}#~", crate::time::sort_ts(now))));
        self.restart(task_id, delivery_id, still_due).await
    }

    async fn end_unattempted(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        state: DeliveryState,
    ) -> Result<bool, StoreError> {
        self.end_pending(task_id, delivery_id, cycle, state.as_str()).await
    }

    async fn postpone(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let waiting = Condition::new("attribute_exists(due_pk) AND #cycle = :cycle AND #state = :pending")
            .name("#cycle", "cycle")
            .name("#state", "state")
            .value(":cycle", n(cycle))
            .value(":pending", s("pending"))
            .value(":due_sk", s(due_sk(until + watch::ATTEMPT_GRACE, delivery_id)));
        // no entry (never attempted: nothing watches it), or it moved on
        self.delivery_updated(task_id, delivery_id, "SET due_sk = :due_sk", waiting)
            .await?;
        Ok(())
    }
}

impl DynamoStore {
    /// A `pending` delivery of `cycle` to the final `state` without an
    /// attempt, out of the due index.
    async fn end_pending(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        cycle: u32,
        state: &'static str,
    ) -> Result<bool, StoreError> {
        let still_pending = Condition::new("#cycle = :cycle AND #state = :pending")
            .name("#cycle", "cycle")
            .name("#state", "state")
            .value(":cycle", n(cycle))
            .value(":pending", s("pending"))
            .value(":end", s(state));
        self.delivery_updated(
            task_id,
            delivery_id,
            "SET #state = :end REMOVE due_pk, due_sk",
            still_pending,
        )
        .await
    }

    /// A new cycle for a delivery if `condition` holds: `pending`, cycle + 1,
    /// back in the outbox (due after the outbox grace).
    async fn restart(
        &self,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        condition: Condition,
    ) -> Result<Option<Delivery>, StoreError> {
        let condition = condition
            .name("#cycle", "cycle")
            .name("#state", "state")
            .value(":one", n(1))
            .value(":pending", s("pending"))
            .value(":no", AttributeValue::Bool(false))
            .value(":due_pk", s(due_pk(watch::shard(task_id))))
            .value(
                ":due_sk",
                s(due_sk(crate::time::now() + watch::OUTBOX_GRACE, delivery_id)),
            );
        let written = self
            .update_delivery(
                task_id,
                delivery_id,
                "SET #cycle = #cycle + :one, #state = :pending, enqueued = :no, due_pk = :due_pk, due_sk = :due_sk",
                condition,
                ReturnValue::AllNew,
            )
            .await?;
        written
            .map(|item| from_item::<DeliveryItem>(item, "delivery item").map(DeliveryItem::into_delivery))
            .transpose()
    }
}
