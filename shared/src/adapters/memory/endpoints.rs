//! Tenant endpoints, in memory (on the task store, which holds the
//! deliveries an endpoint's log lists).

use async_trait::async_trait;

use super::faults::{down, lock};
use super::MemoryTaskStore;
use chrono::{DateTime, Utc};

use crate::domain::endpoint::{DisabledReason, HealthChange};
use crate::domain::{Delivery, Endpoint, EndpointId, Page, PageKey, TenantId};
use crate::error::StoreError;
use crate::ports::EndpointStore;

#[async_trait]
impl EndpointStore for MemoryTaskStore {
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        down(&self.fail, "memory", "list_endpoints")?;
        Ok(lock(&self.endpoints)
            .iter()
            .filter(|e| &e.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        down(&self.fail, "memory", "get_endpoint")?;
        Ok(lock(&self.endpoints)
            .iter()
            .find(|e| &e.tenant == tenant && &e.endpoint_id == id)
            .cloned())
    }

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        down(&self.fail, "memory", "create_endpoint")?;
        lock(&self.endpoints).push(endpoint.clone());
        Ok(())
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "update_endpoint")?;
        let mut all = lock(&self.endpoints);
        match all
            .iter_mut()
            .find(|e| e.tenant == endpoint.tenant && e.endpoint_id == endpoint.endpoint_id)
        {
            Some(e) => {
                *e = endpoint.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "delete_endpoint")?;
        let mut all = lock(&self.endpoints);
        let before = all.len();
        all.retain(|e| !(&e.tenant == tenant && &e.endpoint_id == id));
        Ok(all.len() != before)
    }

    async fn update_health(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        change: HealthChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "update_health")?;
        let mut all = lock(&self.endpoints);
        let Some(e) = all.iter_mut().find(|e| &e.tenant == tenant && &e.endpoint_id == id) else {
            return Ok(false);
        };
        Ok(match change {
            HealthChange::Unchanged => false,
            HealthChange::StartFailing { at, probe_at } if e.failing_since.is_none() => {
                e.failing_since = Some(at);
                e.probe_at = Some(probe_at);
                e.probes_failed = 0;
                true
            }
            HealthChange::ProbeFailed { probe_at } if e.failing_since.is_some() && !e.disabled => {
                e.probe_at = Some(probe_at);
                e.probes_failed += 1;
                true
            }
            HealthChange::Healthy if e.failing_since.is_some() => {
                e.reset_health();
                true
            }
            HealthChange::Disable { since } if !e.disabled && e.failing_since == Some(since) => {
                e.disabled = true;
                e.disabled_reason = Some(DisabledReason::Failing);
                e.disabled_at = Some(now);
                true
            }
            _ => false,
        })
    }

    async fn claim_probe(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        expected: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        down(&self.fail, "memory", "claim_probe")?;
        let mut all = lock(&self.endpoints);
        let Some(e) = all.iter_mut().find(|e| &e.tenant == tenant && &e.endpoint_id == id) else {
            return Ok(false);
        };
        if e.failing_since.is_none() || e.disabled || e.probe_at != expected {
            return Ok(false);
        }
        e.probe_at = Some(until);
        Ok(true)
    }

    async fn reserve_send(
        &self,
        _tenant: &TenantId,
        id: &EndpointId,
        interval: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        down(&self.fail, "memory", "reserve_send")?;
        let interval = crate::time::span(interval);
        let mut slots = lock(&self.send_slots);
        let end = slots.entry(id.clone()).or_insert(now);
        let slot = (*end).max(now);
        *end = slot + interval;
        Ok(slot)
    }

    async fn endpoint_deliveries_since(
        &self,
        id: &EndpointId,
        since: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Delivery>, StoreError> {
        down(&self.fail, "memory", "endpoint_deliveries_since")?;
        let mut all: Vec<Delivery> = lock(&self.deliveries)
            .values()
            .filter(|d| d.endpoint_id.as_ref() == Some(id) && d.created_at >= since)
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.delivery_id).cmp(&(b.created_at, &b.delivery_id)));
        Ok(super::paginate(all, limit, start))
    }

    async fn endpoint_deliveries(
        &self,
        id: &EndpointId,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Delivery>, StoreError> {
        down(&self.fail, "memory", "endpoint_deliveries")?;
        let mut all: Vec<Delivery> = lock(&self.deliveries)
            .values()
            .filter(|d| d.endpoint_id.as_ref() == Some(id))
            .cloned()
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.delivery_id).cmp(&(a.created_at, &a.delivery_id)));
        Ok(super::paginate(all, limit, start))
    }
}
