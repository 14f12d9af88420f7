//! API keys: generated here, stored only as SHA-256 hashes, looked up by hash
//! and cached briefly in a warm function.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::TenantId;
use crate::error::StoreError;
use crate::ports::KeyStore;

/// The key seeded for tenant `local` by `make dev` and never by a deployment.
pub const LOCAL_DEV_KEY: &str = "test-api-key";
pub const LOCAL_DEV_TENANT: &str = "local";

/// Entries kept at most in the warm-function cache.
const CACHE_CAPACITY: usize = 1024;

/// Hex SHA-256 of an API key. `Debug` shows only a prefix.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// From stored hex; `None` if it is not 64 lower-case hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(hex.to_owned()))
    }

    pub fn as_hex(&self) -> &str {
        &self.0
    }

    /// A short, non-secret identifier for logs and the CLI.
    pub fn key_id(&self) -> &str {
        &self.0[..12]
    }

    /// Constant-time equality, for comparing a stored hash with a computed one.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.key_id())
    }
}

/// A new random API key: `mrg_` and 32 random bytes, base64url.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("mrg_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header; send 'Authorization: Bearer <api key>'")]
    Missing,
    #[error("Authorization header must be 'Bearer <api key>'")]
    Malformed,
    #[error("invalid API key")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves `Authorization` headers to tenants.
pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    ttl: Duration,
    cache: Mutex<HashMap<KeyHash, (TenantId, Instant)>>,
}

impl Authenticator {
    pub fn new(keys: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            keys,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant for an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<TenantId, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, key) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.len() > 256 {
            return Err(AuthError::Malformed);
        }
        let hash = KeyHash::of(key);
        if let Some(tenant) = self.cached(&hash) {
            return Ok(tenant);
        }
        let record = self.keys.find_key(&hash).await?.ok_or(AuthError::Invalid)?;
        // The store found the item by its hash; compare again in constant time
        // so an adapter bug can never turn a near-miss into a match.
        if !record.key_hash.ct_eq(&hash) {
            return Err(AuthError::Invalid);
        }
        self.remember(hash, record.tenant.clone());
        Ok(record.tenant)
    }

    fn cached(&self, hash: &KeyHash) -> Option<TenantId> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(tenant, _)| tenant.clone())
    }

    fn remember(&self, hash: KeyHash, tenant: TenantId) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(hash, (tenant, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryKeyStore;
    use crate::ports::ApiKeyRecord;

    fn store_with(key: &str, tenant: &str) -> Arc<MemoryKeyStore> {
        let store = Arc::new(MemoryKeyStore::default());
        store.insert(ApiKeyRecord {
            key_hash: KeyHash::of(key),
            tenant: tenant.parse().unwrap(),
            created_at: crate::time::now(),
            description: String::new(),
        });
        store
    }

    #[tokio::test]
    async fn bearer_keys_resolve_to_their_tenant() {
        let auth = Authenticator::new(store_with("k1", "acme"), Duration::from_secs(60));
        assert_eq!(auth.authenticate(Some("Bearer k1")).await.unwrap().as_str(), "acme");
        assert_eq!(auth.authenticate(Some("bearer   k1 ")).await.unwrap().as_str(), "acme");
        assert!(matches!(auth.authenticate(None).await, Err(AuthError::Missing)));
        assert!(matches!(
            auth.authenticate(Some("Basic k1")).await,
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            auth.authenticate(Some("Bearer")).await,
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            auth.authenticate(Some("Bearer k2")).await,
            Err(AuthError::Invalid)
        ));
    }

    #[tokio::test]
    async fn cache_expires_so_revocation_takes_effect() {
        let store = store_with("k1", "acme");
        let auth = Authenticator::new(store.clone(), Duration::from_millis(50));
        auth.authenticate(Some("Bearer k1")).await.unwrap();
        store
            .revoke_key(&"acme".parse().unwrap(), &KeyHash::of("k1"))
            .await
            .unwrap();
        // still cached
        assert!(auth.authenticate(Some("Bearer k1")).await.is_ok());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(
            auth.authenticate(Some("Bearer k1")).await,
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn generated_keys_are_unique_and_hash_is_stable() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("mrg_") && a.len() == 4 + 43);
        assert_eq!(
            KeyHash::of("test-api-key").as_hex(),
            "4c806362b613f7496abf284146efd31da90e4b16169fe001841ca17290f427c4"
        );
        assert!(!format!("{:?}", KeyHash::of("x")).contains(KeyHash::of("x").as_hex()));
    }
}
