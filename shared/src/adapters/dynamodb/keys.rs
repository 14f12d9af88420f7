//! API keys (by hash, with a per-tenant index for listing) and tenants'
//! webhook signing secrets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, n, s, to_item, unavailable, Condition, DynamoStore};
use crate::domain::delivery::Schemes;
use crate::domain::{ApiKeyRecord, Credential, KeyHash, Rotating, TenantId, TenantSecrets};
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

/// A tenant's signing, sealed (`*_sealed`: base64 KMS ciphertext bound to
/// the tenant). `current`/`previous` in plaintext are read from items
/// written before secrets were sealed, never written: any write seals them.
/// `version` grows with every write; writes are conditional on it.
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
    /// When the current secret was set.
    updated_at: DateTime<Utc>,
    /// The `whsk_` ed25519 key (none on items from before `v1a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_current_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_previous_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_previous_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_since: Option<DateTime<Utc>>,
    /// `None`: `v1` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schemes: Option<Schemes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

impl SecretItem {
    /// A tenant's item with nothing in it yet, as of `now`.
    fn empty(tenant: &TenantId, now: DateTime<Utc>) -> Self {
        Self {
            pk: secret_pk(tenant),
            sk: SECRET_SK.to_owned(),
            tenant: tenant.clone(),
            current_sealed: None,
            previous_sealed: None,
            current: None,
            previous: None,
            previous_until: None,
            updated_at: now,
            key_current_sealed: None,
            key_previous_sealed: None,
            key_previous_until: None,
            key_since: None,
            schemes: None,
            version: None,
        }
    }
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

    async fn secret_item(&self, tenant: &TenantId) -> Result<Option<SecretItem>, StoreError> {
        match self.get(secret_pk(tenant), SECRET_SK).await? {
            None => Ok(None),
            Some(item) => from_item(item, "secret item").map(Some),
        }
    }

    /// The plaintext of a sealed value (or of a legacy plaintext one).
    async fn open_value(
        &self,
        tenant: &TenantId,
        sealed: Option<&String>,
        legacy: Option<&String>,
    ) -> Result<Option<String>, StoreError> {
        match (sealed, legacy) {
            (Some(sealed), _) => Ok(Some(self.cipher()?.open(tenant, sealed).await?)),
            (None, legacy) => Ok(legacy.cloned()),
        }
    }

    /// One credential of an item, opened; a previous value past its overlap
    /// is not opened (it signs nothing).
    fn rotating(
        current: Option<String>,
        since: DateTime<Utc>,
        previous: Option<String>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Rotating, StoreError> {
        let current = current.ok_or_else(|| StoreError::Corrupt {
            what: "secret item",
            detail: "no current secret".to_owned(),
        })?;
        let previous = match previous.zip(until) {
            Some((p, until)) if until > crate::time::now() => Some((p, until)),
            _ => None,
        };
        Ok(Rotating {
            current,
            previous,
            since,
        })
    }

    async fn open_item(&self, tenant: &TenantId, item: &SecretItem) -> Result<TenantSecrets, StoreError> {
        let now = crate::time::now();
        let live = |until: Option<DateTime<Utc>>| until.is_some_and(|u| u > now);
        let secret = Self::rotating(
            self.open_value(tenant, item.current_sealed.as_ref(), item.current.as_ref())
                .await?,
            item.updated_at,
            if live(item.previous_until) {
                self.open_value(tenant, item.previous_sealed.as_ref(), item.previous.as_ref())
                    .await?
            } else {
                None
            },
            item.previous_until,
        )?;
        let signing_key = match &item.key_current_sealed {
            None => None,
            Some(sealed) => Some(Self::rotating(
                Some(self.cipher()?.open(tenant, sealed).await?),
                item.key_since.unwrap_or(item.updated_at),
                match (live(item.key_previous_until), &item.key_previous_sealed) {
                    (true, Some(p)) => Some(self.cipher()?.open(tenant, p).await?),
                    _ => None,
                },
                item.key_previous_until,
            )?),
        };
        Ok(TenantSecrets {
            secret,
            signing_key,
            schemes: item.schemes.unwrap_or_default(),
        })
    }

    /// Seals what an item from before sealing holds in plaintext.
    async fn seal_legacy(&self, tenant: &TenantId, item: &mut SecretItem) -> Result<(), StoreError> {
        if let Some(plain) = item.current.take() {
            item.current_sealed = Some(self.cipher()?.seal(tenant, &plain).await?);
        }
        if let Some(plain) = item.previous.take() {
            item.previous_sealed = Some(self.cipher()?.seal(tenant, &plain).await?);
        }
        Ok(())
    }

    /// Writes `item` if the stored one is still at `seen` (`None`: there
    /// was none); `false` if another write came first.
    async fn put_secret_item(&self, mut item: SecretItem, seen: Option<Option<u64>>) -> Result<bool, StoreError> {
        let condition = match seen {
            None => Condition::new("attribute_not_exists(pk)"),
            Some(None) => Condition::new("attribute_exists(pk) AND attribute_not_exists(version)"),
            Some(Some(v)) => Condition::new("version = :seen").value(":seen", n(v)),
        };
        item.version = Some(seen.flatten().map_or(1, |v| v + 1));
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item, "secret item")?))
            .set_condition_expression(condition.expression())
            .set_expression_attribute_values(condition.values())
            .send()
            .await;
        Ok(super::settle("PutItem", sent)?.is_some())
    }
}

/// A rotation of the tenant's signing raced another write.
fn raced(tenant: &TenantId, op: &'static str) -> StoreError {
    StoreError::Conflict {
        op,
        detail: format!("tenant {tenant}'s signing changed while it was being written; nothing was written"),
    }
}

#[async_trait]
impl SecretStore for DynamoStore {
    async fn tenant_secrets(&self, tenant: &TenantId) -> Result<Option<TenantSecrets>, StoreError> {
        match self.secret_item(tenant).await? {
            None => Ok(None),
            Some(item) => self.open_item(tenant, &item).await.map(Some),
        }
    }

    async fn rotate(
        &self,
        tenant: &TenantId,
        which: Credential,
        new_value: &str,
        overlap_until: Option<DateTime<Utc>>,
    ) -> Result<TenantSecrets, StoreError> {
        let now = crate::time::now();
        let cipher = self.cipher()?;
        let sealed_new = cipher.seal(tenant, new_value).await?;
        let stored = self.secret_item(tenant).await?;
        let seen = stored.as_ref().map(|i| i.version);
        let mut item = match (stored, which) {
            (Some(item), _) => item,
            (None, Credential::Secret) => SecretItem::empty(tenant, now),
            (None, Credential::SigningKey) => return Err(raced(tenant, "rotate")),
        };
        self.seal_legacy(tenant, &mut item).await?;
        match which {
            Credential::Secret => {
                let old = item.current_sealed.replace(sealed_new);
                (item.previous_sealed, item.previous_until) = old.zip(overlap_until).unzip();
                item.updated_at = now;
            }
            Credential::SigningKey => {
                let old = item.key_current_sealed.replace(sealed_new);
                (item.key_previous_sealed, item.key_previous_until) = old.zip(overlap_until).unzip();
                item.key_since = Some(now);
            }
        }
        let answer = self.open_item(tenant, &item).await?;
        if !self.put_secret_item(item, seen).await? {
            return Err(raced(tenant, "rotate"));
        }
        Ok(answer)
    }

    async fn provision(&self, tenant: &TenantId, secret: &str, signing_key: &str) -> Result<bool, StoreError> {
        let cipher = self.cipher()?;
        let now = crate::time::now();
        let item = SecretItem {
            current_sealed: Some(cipher.seal(tenant, secret).await?),
            key_current_sealed: Some(cipher.seal(tenant, signing_key).await?),
            key_since: Some(now),
            ..SecretItem::empty(tenant, now)
        };
        self.put_secret_item(item, None).await
    }

    async fn configure(
        &self,
        tenant: &TenantId,
        schemes: Option<Schemes>,
        new_key: &str,
    ) -> Result<TenantSecrets, StoreError> {
        // a write that raced another is tried again on what that one wrote
        for _ in 0..3 {
            let mut item = self.secret_item(tenant).await?.ok_or_else(|| StoreError::Conflict {
                op: "configure",
                detail: format!("tenant {tenant} has no signing secret yet"),
            })?;
            let seen = Some(item.version);
            if item.key_current_sealed.is_none() {
                item.key_current_sealed = Some(self.cipher()?.seal(tenant, new_key).await?);
                item.key_since = Some(crate::time::now());
            } else if schemes.is_none_or(|s| s == item.schemes.unwrap_or_default()) {
                // nothing to change
                return self.open_item(tenant, &item).await;
            }
            if schemes.is_some() {
                item.schemes = schemes;
            }
            self.seal_legacy(tenant, &mut item).await?;
            let answer = self.open_item(tenant, &item).await?;
            if self.put_secret_item(item, seen).await? {
                return Ok(answer);
            }
        }
        Err(raced(tenant, "configure"))
    }
}
