//! API keys and webhook signing secrets, in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::faults::lock;
use crate::domain::{ApiKeyRecord, KeyHash, TenantId, TenantSecrets};
use crate::error::StoreError;
use crate::ports::{KeyStore, SecretStore};

#[derive(Default)]
pub struct MemoryKeyStore {
    keys: Mutex<Vec<ApiKeyRecord>>,
}

impl MemoryKeyStore {
    pub fn insert(&self, record: ApiKeyRecord) {
        lock(&self.keys).push(record);
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(lock(&self.keys).iter().find(|r| r.key_hash.ct_eq(hash)).cloned())
    }

    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.insert(record.clone());
        Ok(())
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(lock(&self.keys)
            .iter()
            .filter(|r| &r.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn revoke_key(&self, tenant: &TenantId, hash: &KeyHash) -> Result<bool, StoreError> {
        let mut keys = lock(&self.keys);
        let before = keys.len();
        keys.retain(|r| !(r.key_hash.ct_eq(hash) && &r.tenant == tenant));
        Ok(keys.len() != before)
    }
}

/// Signing secrets, in memory.
#[derive(Default)]
pub struct MemorySecretStore {
    pub secrets: Mutex<HashMap<TenantId, TenantSecrets>>,
}

#[async_trait]
impl SecretStore for MemorySecretStore {
    async fn tenant_secrets(&self, tenant: &TenantId) -> Result<Option<TenantSecrets>, StoreError> {
        Ok(lock(&self.secrets).get(tenant).cloned())
    }

    async fn rotate_secret(
        &self,
        tenant: &TenantId,
        new_secret: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<TenantSecrets, StoreError> {
        let mut secrets = lock(&self.secrets);
        let previous = secrets
            .get(tenant)
            .and_then(|s| overlap_until.map(|u| (s.current.clone(), u)));
        let stored = TenantSecrets {
            current: new_secret.to_owned(),
            previous,
            since: crate::time::now(),
        };
        secrets.insert(tenant.clone(), stored.clone());
        Ok(stored)
    }

    async fn provision_secret(&self, tenant: &TenantId, secret: &str) -> Result<bool, StoreError> {
        let mut secrets = lock(&self.secrets);
        if secrets.contains_key(tenant) {
            return Ok(false);
        }
        secrets.insert(
            tenant.clone(),
            TenantSecrets {
                current: secret.to_owned(),
                previous: None,
                since: crate::time::now(),
            },
        );
        Ok(true)
    }
}
