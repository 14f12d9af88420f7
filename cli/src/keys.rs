//! `morag keys create|list|revoke`: API keys are shown once and stored only
//! as SHA-256 hashes.

use anyhow::{bail, Result};

use morag_shared::domain::keys::generate_key;
use morag_shared::domain::TenantId;
use morag_shared::domain::{ApiKeyRecord, KeyHash};
use morag_shared::ports::KeyStore;

/// Creates a key for `tenant`; returns the key (to print once) and its record.
pub async fn create(store: &dyn KeyStore, tenant: &TenantId, description: &str) -> Result<(String, ApiKeyRecord)> {
    let key = generate_key();
    let record = ApiKeyRecord {
        key_hash: KeyHash::of(&key),
        tenant: tenant.clone(),
        created_at: morag_shared::time::now(),
        description: description.to_owned(),
    };
    store.put_key(&record).await?;
    Ok((key, record))
}

/// Revokes the tenant's key whose id (hash prefix, as `list` shows) is `key_id`.
pub async fn revoke(store: &dyn KeyStore, tenant: &TenantId, key_id: &str) -> Result<ApiKeyRecord> {
    if key_id.len() < 8 {
        bail!("key id must be at least 8 characters of the id shown by `morag keys list`");
    }
    let matching: Vec<ApiKeyRecord> = store
        .list_keys(tenant)
        .await?
        .into_iter()
        .filter(|k| k.key_hash.as_hex().starts_with(key_id))
        .collect();
    match matching.as_slice() {
        [] => bail!("tenant {tenant} has no key with id {key_id}"),
        [one] => {
            if !store.revoke_key(tenant, &one.key_hash).await? {
                bail!("key {key_id} was already revoked");
            }
            Ok(one.clone())
        }
        _ => bail!("key id {key_id} is ambiguous; give more characters"),
    }
}
