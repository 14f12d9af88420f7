//! Tenant webhook endpoints: URLs registered once for a tenant, each with
//! an event-type filter. Every event of every task of the tenant goes to
//! each enabled endpoint whose filter matches (next to the task's own
//! `webhook_url`), as one delivery per (event, endpoint).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::delivery::WebhookEvent;
use super::ids::{InvalidId, TenantId};

/// Endpoints a tenant may have. Each one's deliveries of an event are
/// written in the event's one transaction (task, history entry and every
/// delivery: at most 100 items, and one event plans at most two kinds of
/// webhook), so 2 × (40 + 1) + 3 stays below DynamoDB's limit.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 40;
/// Longest endpoint description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

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

/// A tenant's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub tenant: TenantId,
    pub endpoint_id: EndpointId,
    /// Checked like a task's `webhook_url` when set, and again at every send.
    pub url: String,
    /// The event types it receives; never empty.
    pub event_types: Vec<WebhookEvent>,
    pub description: String,
    /// A disabled endpoint gets no new deliveries, and its queued ones are
    /// not sent.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// Whether a webhook of `event_type` goes to this endpoint.
    pub fn wants(&self, event_type: WebhookEvent) -> bool {
        !self.disabled && self.event_types.contains(&event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_are_generated_and_parsed_strictly() {
        let id = EndpointId::generate();
        assert_eq!(id.as_str().len(), 27);
        assert_eq!(id.as_str().parse::<EndpointId>().unwrap(), id);
        assert_ne!(id, EndpointId::generate());
        for bad in [
            "",
            "ep_",
            "ep_0123456789abcdef0123456",
            "ep_0123456789abcdef012345678",
            "ep_0123456789ABCDEF01234567",
            "xx_0123456789abcdef01234567",
            "ep_0123456789abcdef0123456g",
        ] {
            assert!(bad.parse::<EndpointId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_disabled_endpoint_wants_nothing() {
        let mut e = Endpoint {
            tenant: "acme".parse().unwrap(),
            endpoint_id: EndpointId::generate(),
            url: "https://hooks.example.com/h".to_owned(),
            event_types: vec![WebhookEvent::TaskCompleted],
            description: String::new(),
            disabled: false,
            created_at: crate::time::now(),
            updated_at: crate::time::now(),
        };
        assert!(e.wants(WebhookEvent::TaskCompleted));
        assert!(!e.wants(WebhookEvent::TaskProgress));
        e.disabled = true;
        assert!(!e.wants(WebhookEvent::TaskCompleted));
    }
}
