//! Authenticating requests: `Authorization: Bearer <api key>`, looked up by
//! the key's SHA-256 hash and cached briefly in a warm function, and the
//! [`Authenticated`] extractor that gives a handler its tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use axum::http::StatusCode;

use super::error::ApiError;
use crate::domain::{KeyHash, TenantId};
use crate::error::StoreError;
use crate::ports::KeyStore;

/// Entries kept at most in the warm-function cache.
const CACHE_CAPACITY: usize = 1024;

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

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(e) => e.into(),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

/// Function state that can authenticate requests.
pub trait Authenticates: Send + Sync {
    fn authenticator(&self) -> &Authenticator;
}

/// The authenticated tenant of a request: `Authenticated(tenant)` as a handler
/// argument answers 401 (or 503) before the handler runs, and records the
/// tenant on the request span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub TenantId);

impl<S: Authenticates> FromRequestParts<Arc<S>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<Self, Self::Rejection> {
        authenticate(state.authenticator(), &parts.headers)
            .await
            .map(Authenticated)
    }
}

/// Authenticates a request's headers and records its tenant on the request span.
pub async fn authenticate(auth: &Authenticator, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    let value = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| ApiError::from(AuthError::Malformed))?),
    };
    let tenant = auth.authenticate(value).await.inspect_err(|e| {
        if !matches!(e, AuthError::Store(_)) {
            tracing::info!(reason = %e, "authentication failed");
        }
    })?;
    tracing::Span::current().record("tenant", tenant.as_str());
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryKeyStore;
    use crate::domain::ApiKeyRecord;

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
}
