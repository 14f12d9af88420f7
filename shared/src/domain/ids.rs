//! Identifiers: task ids are UUIDs, tenants are short slugs.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A malformed identifier. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub String);

/// A task id: a random (v4) UUID, always shown in lower-case hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The same id for the same `name` (a version 8 UUID from its SHA-256):
    /// the partition of a tenant's operational webhooks, which belong to no
    /// task, so a repeat plans the same deliveries.
    pub fn derived(name: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(name.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for TaskId {
    type Err = InvalidId;

    /// Accepts only the canonical 36-character hyphenated form, so that one
    /// task has exactly one spelling (and one DynamoDB key).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidId("task_id must be a UUID like 3f2b8c1e-9a4d-4e6f-8b21-5c7d9e0f1a2b".to_owned());
        if s.len() != 36 {
            return Err(bad());
        }
        let uuid = Uuid::try_parse(s).map_err(|_| bad())?;
        let canonical = uuid.hyphenated().to_string();
        if canonical != s.to_ascii_lowercase() {
            return Err(bad());
        }
        Ok(Self(uuid))
    }
}

impl TryFrom<String> for TaskId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// A tenant: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a
/// letter or digit. Tenants appear in S3 keys and DynamoDB keys, so the
/// alphabet is deliberately small.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_')));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId(
                "tenant must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit".to_owned(),
            ))
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_round_trips_and_rejects_other_spellings() {
        let id = TaskId::new();
        assert_eq!(id.to_string().parse::<TaskId>().unwrap(), id);
        assert!("not-a-uuid".parse::<TaskId>().is_err());
        assert!("".parse::<TaskId>().is_err());
        // simple (unhyphenated) and braced forms are other spellings of the same id
        assert!(id.to_string().replace('-', "").parse::<TaskId>().is_err());
        assert!(format!("{{{id}}}").parse::<TaskId>().is_err());
        assert!("../../etc/passwd".parse::<TaskId>().is_err());
    }

    #[test]
    fn tenant_alphabet_is_small() {
        assert!("acme".parse::<TenantId>().is_ok());
        assert!("acme-2_b".parse::<TenantId>().is_ok());
        for bad in ["", "Acme", "-acme", "ac#me", "a/b", &"a".repeat(65)] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad}");
        }
    }
}

/// `ep_` + 24 lowercase hex digits (96 random bits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointId(String);

impl EndpointId {
    const HEX_DIGITS: usize = 24;

    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::HEX_DIGITS / 2];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(format!("ep_{}", hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EndpointId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("ep_").unwrap_or("");
        if hex.len() == Self::HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId(format!(
                "an endpoint id is ep_ and {} lowercase hex digits",
                Self::HEX_DIGITS
            )))
        }
    }
}

impl TryFrom<String> for EndpointId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EndpointId> for String {
    fn from(id: EndpointId) -> Self {
        id.0
    }
}
