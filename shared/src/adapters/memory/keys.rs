//! API keys and webhook signing secrets, in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::faults::lock;
use crate::domain::delivery::Schemes;
use crate::domain::{ApiKeyRecord, Credential, KeyHash, Rotating, TenantId, TenantSecrets};
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

/// `r` rotated to `new_value`, the old value signing until `overlap_until`.
fn rotated(r: Option<&Rotating>, new_value: &str, overlap_until: Option<DateTime<Utc>>) -> Rotating {
    Rotating {
        current: new_value.to_owned(),
        previous: r.zip(overlap_until).map(|(r, until)| (r.current.clone(), until)),
        since: crate::time::now(),
    }
}

#[async_trait]
impl SecretStore for MemorySecretStore {
    async fn tenant_secrets(&self, tenant: &TenantId) -> Result<Option<TenantSecrets>, StoreError> {
        Ok(lock(&self.secrets).get(tenant).cloned())
    }

    async fn rotate(
        &self,
        tenant: &TenantId,
        which: Credential,
        new_value: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<TenantSecrets, StoreError> {
        let mut secrets = lock(&self.secrets);
        let stored = match (secrets.get(tenant), which) {
            (None, Credential::Secret) => TenantSecrets {
                secret: rotated(None, new_value, None),
                signing_key: None,
                schemes: Schemes::default(),
            },
            (None, Credential::SigningKey) => return Err(no_signing(tenant)),
            (Some(s), Credential::Secret) => TenantSecrets {
                secret: rotated(Some(&s.secret), new_value, overlap_until),
                ..s.clone()
            },
            (Some(s), Credential::SigningKey) => TenantSecrets {
                signing_key: Some(rotated(s.signing_key.as_ref(), new_value, overlap_until)),
                ..s.clone()
            },
        };
        secrets.insert(tenant.clone(), stored.clone());
        Ok(stored)
    }

    async fn provision(&self, tenant: &TenantId, secret: &str, signing_key: &str) -> Result<bool, StoreError> {
        let mut secrets = lock(&self.secrets);
        if secrets.contains_key(tenant) {
            return Ok(false);
        }
        let now = crate::time::now();
        secrets.insert(
            tenant.clone(),
            TenantSecrets {
                secret: Rotating::new(secret, now),
                signing_key: Some(Rotating::new(signing_key, now)),
                schemes: Schemes::default(),
            },
        );
        Ok(true)
    }

    async fn configure(
        &self,
        tenant: &TenantId,
        schemes: Option<Schemes>,
        new_key: &str,
    ) -> Result<TenantSecrets, StoreError> {
        let mut secrets = lock(&self.secrets);
        let stored = secrets.get_mut(tenant).ok_or_else(|| no_signing(tenant))?;
        if stored.signing_key.is_none() {
            stored.signing_key = Some(Rotating::new(new_key, crate::time::now()));
        }
        if let Some(schemes) = schemes {
            stored.schemes = schemes;
        }
        Ok(stored.clone())
    }
}

fn no_signing(tenant: &TenantId) -> StoreError {
    StoreError::Conflict {
        op: "configure",
        detail: format!("tenant {tenant} has no signing secret yet"),
    }
}
