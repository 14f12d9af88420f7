//! API keys: generated here, stored only as SHA-256 hashes.

use std::fmt;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::delivery::{AsymmetricKey, Schemes, Signer, SigningSecret};
use super::ids::TenantId;

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

/// A stored API key: only its hash and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_hash: KeyHash,
    pub tenant: TenantId,
    pub created_at: DateTime<Utc>,
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(KeyHash::from_hex(KeyHash::of("x").as_hex()).is_some());
        assert!(KeyHash::from_hex("ABC").is_none());
    }
}

/// One credential that rotates: the current value and, during a rotation,
/// the previous one and until when it still signs.
#[derive(Clone, PartialEq, Eq)]
pub struct Rotating {
    pub current: String,
    pub previous: Option<(String, DateTime<Utc>)>,
    /// When `current` was set.
    pub since: DateTime<Utc>,
}

impl fmt::Debug for Rotating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotating")
            .field("previous_until", &self.previous.as_ref().map(|(_, until)| until))
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl Rotating {
    pub fn new(current: impl Into<String>, since: DateTime<Utc>) -> Self {
        Self {
            current: current.into(),
            previous: None,
            since,
        }
    }

    /// The values that sign at `now`: the current one first, then the
    /// previous one while its overlap lasts.
    pub fn signing(&self, now: DateTime<Utc>) -> Vec<&str> {
        std::iter::once(self.current.as_str())
            .chain(self.previous_at(now).map(|(previous, _)| previous))
            .collect()
    }

    /// The previous value while it still signs at `now`.
    pub fn previous_at(&self, now: DateTime<Utc>) -> Option<(&str, DateTime<Utc>)> {
        self.previous
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(p, until)| (p.as_str(), *until))
    }
}

/// Which of a tenant's credentials a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The `whsec_` secret behind `v1` signatures.
    Secret,
    /// The `whsk_` ed25519 key behind `v1a` signatures.
    SigningKey,
}

/// A tenant's webhook signing as stored: its `whsec_` secret, its `whsk_`
/// ed25519 key (tenants provisioned before `v1a` existed may have none yet)
/// and which signatures its webhooks carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSecrets {
    pub secret: Rotating,
    pub signing_key: Option<Rotating>,
    pub schemes: Schemes,
}

impl TenantSecrets {
    /// What signs the tenant's webhooks at `now`. An error names a stored
    /// credential that cannot sign (never expected: they are generated here).
    pub fn signer(&self, now: DateTime<Utc>) -> Result<Signer, String> {
        let secrets = if self.schemes.v1 {
            self.secret
                .signing(now)
                .into_iter()
                .map(SigningSecret::parse)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let keys = match (&self.signing_key, self.schemes.v1a) {
            (_, false) => Vec::new(),
            (None, true) => return Err("v1a is on but the tenant has no signing key".to_owned()),
            (Some(key), true) => key
                .signing(now)
                .into_iter()
                .map(AsymmetricKey::parse)
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Signer::new(secrets, keys))
    }
}
