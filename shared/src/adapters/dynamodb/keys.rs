//! API keys (by hash, with a per-tenant index for listing) and tenants'
//! webhook signing secrets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, s, to_item, unavailable, Condition, DynamoStore};
use crate::domain::{ApiKeyRecord, KeyHash, TenantId, TenantSecrets};
use crate::error::StoreError;
use crate::ports::{KeyStore, SecretCipher, SecretStore};

fn apikey_pk(hash: &KeyHash) -> String {
    format!("APIKEY#{}", hash.as_hex())
}
const APIKEY_SK: &str = "KEY";

fn tenant_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

fn secret_pk(tenant: &TenantId) -> String {
    format!("WHSECRET#{tenant}")
}
const SECRET_SK: &str = "SECRET";

#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    key_hash: String,
    tenant: TenantId,
    created_at: DateTime<Utc>,
    #[serde(default)]
    description: String,
}

impl ApiKeyItem {
    fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        let key_hash = KeyHash::from_hex(&self.key_hash).ok_or_else(|| StoreError::Corrupt {
            what: "api key item",
            detail: "key_hash is not a SHA-256 hex digest".to_owned(),
        })?;
        Ok(ApiKeyRecord {
            key_hash,
            tenant: self.tenant,
            created_at: self.created_at,
            description: self.description,
        })
    }
}

/// A tenant's signing secrets, sealed (`*_sealed`: base64 KMS ciphertext
/// bound to the tenant). `current`/`previous` in plaintext are read from
/// items written before secrets were sealed, and never written.
#[derive(Serialize, Deserialize)]
struct SecretItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_until: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        match self.get(apikey_pk(hash), APIKEY_SK).await? {
            None => Ok(None),
            Some(item) => from_item::<ApiKeyItem>(item, "api key item")?.into_record().map(Some),
        }
    }

    /// The key item and its tenant-index item, in one transaction.
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let item = |pk: String, sk: String| {
            to_item(
                &ApiKeyItem {
                    pk,
                    sk,
                    key_hash: record.key_hash.as_hex().to_owned(),
                    tenant: record.tenant.clone(),
                    created_at: record.created_at,
                    description: record.description.clone(),
                },
                "api key item",
            )
        };
        let key = self.tx_put(
            item(apikey_pk(&record.key_hash), APIKEY_SK.to_owned())?,
            Some(Condition::new("attribute_not_exists(pk)")),
        )?;
        let index = self.tx_put(item(tenant_pk(&record.tenant), apikey_pk(&record.key_hash))?, None)?;
        if !self.transact(vec![key, index]).await? {
            return Err(StoreError::Conflict {
                op: "TransactWriteItems",
                detail: format!("key {} exists", record.key_hash.key_id()),
            });
        }
        Ok(())
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(tenant_pk(tenant)))
            .expression_attribute_values(":prefix", s("APIKEY#"))
            .into_paginator()
            .items()
            .send();
        let mut keys = Vec::new();
        while let Some(item) = pages.try_next().await.map_err(unavailable("Query"))? {
            keys.push(from_item::<ApiKeyItem>(item, "api key item")?.into_record()?);
        }
        Ok(keys)
    }

    /// Only the tenant's own key is removed (the condition on `tenant`).
    async fn revoke_key(&self, tenant: &TenantId, hash: &KeyHash) -> Result<bool, StoreError> {
        let key = self.tx_delete(
            apikey_pk(hash),
            APIKEY_SK,
            Some(Condition::new("tenant = :tenant").value(":tenant", s(tenant.as_str()))),
        )?;
        let index = self.tx_delete(tenant_pk(tenant), &apikey_pk(hash), None)?;
        self.transact(vec![key, index]).await
    }
}

impl DynamoStore {
    fn cipher(&self) -> Result<&dyn SecretCipher, StoreError> {
        self.secrets_cipher.as_deref().ok_or_else(|| StoreError::Unavailable {
            service: "kms",
            op: "SecretCipher",
            detail: "this store has no key to seal signing secrets with (MORAG_SECRETS_KEY_ID)".to_owned(),
        })
    }

    async fn open_secret(
        &self,
        tenant: &TenantId,
        sealed: Option<String>,
        legacy: Option<String>,
    ) -> Result<Option<String>, StoreError> {
        match (sealed, legacy) {
            (Some(sealed), _) => Ok(Some(self.cipher()?.open(tenant, &sealed).await?)),
            (None, legacy) => Ok(legacy),
        }
    }

    async fn sealed_item(
        &self,
        tenant: &TenantId,
        current: &str,
        previous: Option<(String, DateTime<Utc>)>,
    ) -> Result<SecretItem, StoreError> {
        let cipher = self.cipher()?;
        let (previous_sealed, previous_until) = match previous {
            Some((p, until)) => (Some(cipher.seal(tenant, &p).await?), Some(until)),
            None => (None, None),
        };
        Ok(SecretItem {
            pk: secret_pk(tenant),
            sk: SECRET_SK.to_owned(),
            tenant: tenant.clone(),
            current_sealed: Some(cipher.seal(tenant, current).await?),
            previous_sealed,
            current: None,
            previous: None,
            previous_until,
            updated_at: crate::time::now(),
        })
    }
}

#[async_trait]
impl SecretStore for DynamoStore {
    async fn tenant_secrets(&self, tenant: &TenantId) -> Result<Option<TenantSecrets>, StoreError> {
        let Some(item) = self.get(secret_pk(tenant), SECRET_SK).await? else {
            return Ok(None);
        };
        let item: SecretItem = from_item(item, "secret item")?;
        let current = self
            .open_secret(tenant, item.current_sealed, item.current)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "secret item",
                detail: "no current secret".to_owned(),
            })?;
        let previous = self.open_secret(tenant, item.previous_sealed, item.previous).await?;
        Ok(Some(TenantSecrets {
            current,
            previous: previous.zip(item.previous_until),
            since: item.updated_at,
        }))
    }

    async fn rotate_secret(
        &self,
        tenant: &TenantId,
        new_secret: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<TenantSecrets, StoreError> {
        let previous = match overlap_until {
            None => None,
            Some(until) => self.tenant_secrets(tenant).await?.map(|s| (s.current, until)),
        };
        let item = self.sealed_item(tenant, new_secret, previous.clone()).await?;
        let since = item.updated_at;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item, "secret item")?))
            .send()
            .await
            .map_err(unavailable("PutItem"))?;
        Ok(TenantSecrets {
            current: new_secret.to_owned(),
            previous,
            since,
        })
    }

    async fn provision_secret(&self, tenant: &TenantId, secret: &str) -> Result<bool, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(
                &self.sealed_item(tenant, secret, None).await?,
                "secret item",
            )?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        Ok(super::settle("PutItem", sent)?.is_some())
    }
}
