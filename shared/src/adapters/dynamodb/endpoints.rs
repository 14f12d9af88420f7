//! Tenants' webhook endpoints (`WHEP#{tenant}` / `EP#{endpoint_id}`, one
//! partition per tenant) and each endpoint's deliveries through `GSI4`
//! (`ep_pk` = `EPDELIVERIES#{endpoint_id}`, `ep_sk` = created-at and
//! delivery id; keys only, the page's deliveries read by key).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deliveries::{delivery_from_item, endpoint_deliveries_pk};
use super::{from_item, n, s, settle, to_item, unavailable, Condition, DynamoStore};
use crate::domain::endpoint::HealthChange;
use crate::domain::{Delivery, Endpoint, EndpointId, Page, PageKey, TenantId};
use crate::error::StoreError;
use crate::ports::EndpointStore;
use crate::time::sort_ts;

/// A time as the endpoint item stores it (serde's format, which a PATCH's
/// whole-item put writes too): the health conditions compare with it.
fn stored(t: DateTime<Utc>) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(t).map_err(|e| StoreError::Corrupt {
        what: "endpoint time",
        detail: e.to_string(),
    })
}

fn endpoints_pk(tenant: &TenantId) -> String {
    format!("WHEP#{tenant}")
}

fn endpoint_sk(id: &EndpointId) -> String {
    format!("EP#{id}")
}

/// The endpoint's rate-limit item (`tat`: the end of its last reserved
/// slot, epoch milliseconds), beside the endpoint in the tenant's partition.
fn rate_sk(id: &EndpointId) -> String {
    format!("RATE#{id}")
}

#[derive(Serialize, Deserialize)]
struct EndpointItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    endpoint: Endpoint,
}

impl EndpointItem {
    fn new(e: &Endpoint) -> Self {
        Self {
            pk: endpoints_pk(&e.tenant),
            sk: endpoint_sk(&e.endpoint_id),
            endpoint: e.clone(),
        }
    }
}

impl DynamoStore {
    /// A query of the endpoint's delivery log (`GSI4`, its partition as `:pk`).
    fn endpoint_log(&self, id: &EndpointId) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name("GSI4")
            .expression_attribute_values(":pk", s(endpoint_deliveries_pk(id)))
    }

    /// The deliveries of a page of index keys, in the page's order.
    async fn deliveries_by_key(&self, keys: Page<super::Item>) -> Result<Page<Delivery>, StoreError> {
        let mut deliveries = Vec::with_capacity(keys.items.len());
        for item in self.get_many(&keys.items).await? {
            deliveries.push(delivery_from_item(item)?);
        }
        Ok(Page {
            items: deliveries,
            next: keys.next,
        })
    }

    /// A conditional update of an item in the tenant's endpoint partition
    /// (`sk`); `false` when the condition did not hold.
    async fn endpoint_updated(
        &self,
        tenant: &TenantId,
        sk: &str,
        update: &str,
        condition: Condition,
    ) -> Result<bool, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(endpoints_pk(tenant)))
            .key("sk", s(sk))
            .update_expression(update)
            .set_condition_expression(condition.expression())
            .set_expression_attribute_values(condition.values())
            .send()
            .await;
        Ok(settle("UpdateItem", sent)?.is_some())
    }

    async fn put_endpoint(&self, e: &Endpoint, condition: &str) -> Result<bool, StoreError> {
        let c = Condition::new(condition);
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&EndpointItem::new(e), "endpoint item")?))
            .set_condition_expression(c.expression())
            .send()
            .await;
        Ok(settle("PutItem", sent)?.is_some())
    }
}

#[async_trait]
impl EndpointStore for DynamoStore {
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :ep)")
            .expression_attribute_values(":pk", s(endpoints_pk(tenant)))
            .expression_attribute_values(":ep", s("EP#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut endpoints = Vec::new();
        while let Some(item) = pages.try_next().await.map_err(unavailable("Query"))? {
            endpoints.push(from_item::<EndpointItem>(item, "endpoint item")?.endpoint);
        }
        endpoints.sort_by(|a, b| (a.created_at, &a.endpoint_id).cmp(&(b.created_at, &b.endpoint_id)));
        Ok(endpoints)
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        match self.get(endpoints_pk(tenant), &endpoint_sk(id)).await? {
            None => Ok(None),
            Some(item) => Ok(Some(from_item::<EndpointItem>(item, "endpoint item")?.endpoint)),
        }
    }

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        if self.put_endpoint(endpoint, "attribute_not_exists(pk)").await? {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                op: "create_endpoint",
                detail: format!("endpoint {} exists", endpoint.endpoint_id),
            })
        }
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        self.put_endpoint(endpoint, "attribute_exists(pk)").await
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(endpoints_pk(tenant)))
            .key("sk", s(endpoint_sk(id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable("DeleteItem"))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn update_health(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        change: HealthChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (update, condition) = match change {
            HealthChange::Unchanged => return Ok(false),
            HealthChange::StartFailing { at, probe_at } => (
                "SET failing_since = :at, probe_at = :probe_at REMOVE probes_failed",
                Condition::new("attribute_exists(pk) AND attribute_not_exists(failing_since)")
                    .value(":at", stored(at)?)
                    .value(":probe_at", stored(probe_at)?),
            ),
            HealthChange::ProbeFailed { probe_at } => (
                "SET probe_at = :probe_at, probes_failed = if_not_exists(probes_failed, :zero) + :one",
                Condition::new("attribute_exists(failing_since) AND disabled = :no")
                    .value(":probe_at", stored(probe_at)?)
                    .value(":zero", n(0))
                    .value(":one", n(1))
                    .value(":no", AttributeValue::Bool(false)),
            ),
            HealthChange::Healthy => (
                "REMOVE failing_since, probe_at, probes_failed",
                Condition::new("attribute_exists(failing_since)"),
            ),
            HealthChange::Disable { since } => (
                "SET disabled = :yes, disabled_reason = :failing, disabled_at = :now, updated_at = :now",
                Condition::new("disabled = :no AND failing_since = :since")
                    .value(":yes", AttributeValue::Bool(true))
                    .value(":no", AttributeValue::Bool(false))
                    .value(":failing", s("failing"))
                    .value(":now", stored(now)?)
                    .value(":since", stored(since)?),
            ),
        };
        self.endpoint_updated(tenant, &endpoint_sk(id), update, condition).await
    }

    async fn claim_probe(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        expected: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let condition = Condition::new("attribute_exists(failing_since) AND disabled = :no")
            .value(":no", AttributeValue::Bool(false))
            .value(":until", stored(until)?);
        let condition = match expected {
            Some(at) => condition.and("probe_at = :expected").value(":expected", stored(at)?),
            None => condition.and("attribute_not_exists(probe_at)"),
        };
        self.endpoint_updated(tenant, &endpoint_sk(id), "SET probe_at = :until", condition)
            .await
    }

    async fn reserve_send(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        interval: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let now_ms = now.timestamp_millis();
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX).max(1);
        // the item outlives its last slot by a day, then TTL removes it
        let expires_at = now.timestamp() + 86_400;
        // idle (its last slot is an interval old): the slot is now
        let idle = Condition::new("attribute_not_exists(tat) OR tat <= :now")
            .value(":now", n(now_ms))
            .value(":next", n(now_ms + interval_ms))
            .value(":exp", n(expires_at));
        if self
            .endpoint_updated(tenant, &rate_sk(id), "SET tat = :next, expires_at = :exp", idle)
            .await?
        {
            return Ok(now);
        }
        // busy: the slot after the last one reserved (an atomic add, so
        // concurrent senders get distinct slots)
        let busy = Condition::new("")
            .value(":interval", n(interval_ms))
            .value(":exp", n(expires_at));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(endpoints_pk(tenant)))
            .key("sk", s(rate_sk(id)))
            .update_expression("SET tat = tat + :interval, expires_at = :exp")
            .set_expression_attribute_values(busy.values())
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable("UpdateItem"))?;
        let tat = out
            .attributes
            .as_ref()
            .and_then(|a| a.get("tat"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| StoreError::Corrupt {
                what: "endpoint rate item",
                detail: "no tat in the update's answer".to_owned(),
            })?;
        let slot = DateTime::from_timestamp_millis(tat - interval_ms).unwrap_or(now);
        Ok(slot.max(now))
    }

    async fn endpoint_deliveries(
        &self,
        id: &EndpointId,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Delivery>, StoreError> {
        let query = self.endpoint_log(id).key_condition_expression("ep_pk = :pk");
        let keys = self.newest_first(query, limit, start, Ok).await?;
        self.deliveries_by_key(keys).await
    }

    async fn endpoint_deliveries_since(
        &self,
        id: &EndpointId,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Delivery>, StoreError> {
        let query = self
            .endpoint_log(id)
            .key_condition_expression("ep_pk = :pk AND ep_sk >= :since")
            .expression_attribute_values(":since", s(sort_ts(since)));
        let keys = self.query_page(query, limit, start, Ok).await?;
        self.deliveries_by_key(keys).await
    }
}
