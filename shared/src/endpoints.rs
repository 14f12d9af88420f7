//! The tenants' endpoints as the functions that plan webhooks see them: read
//! once per tenant per `ttl` in a warm function (a Query of the tenant's
//! endpoint partition), so an event costs no read of its own. A new,
//! changed or disabled endpoint takes effect within `ttl`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::endpoint::MAX_ENDPOINTS_PER_TENANT;
use crate::domain::{Endpoint, TenantId};
use crate::error::StoreError;
use crate::ports::EndpointStore;

/// How long a tenant's endpoints are trusted in a warm function.
pub const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(30);

type Entry = (Arc<Vec<Endpoint>>, Instant);

pub struct EndpointCache {
    store: Arc<dyn EndpointStore>,
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, Entry>>,
}

impl EndpointCache {
    pub fn new(store: Arc<dyn EndpointStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The tenant's endpoints (disabled ones too: their deliveries are kept,
    /// paused, for a recovery), oldest first, at most
    /// [`MAX_ENDPOINTS_PER_TENANT`] (should two concurrent creations have
    /// stored more, the newest get nothing until one is deleted: the
    /// fan-out's writes are sized for the cap).
    pub async fn of_tenant(&self, tenant: &TenantId) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        if let Some((endpoints, at)) = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            if at.elapsed() < self.ttl {
                return Ok(endpoints.clone());
            }
        }
        let mut endpoints = self.store.list_endpoints(tenant).await?;
        endpoints.truncate(MAX_ENDPOINTS_PER_TENANT);
        let endpoints = Arc::new(endpoints);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), (endpoints.clone(), Instant::now()));
        Ok(endpoints)
    }
}
