//! Opaque, tamper-evident pagination cursors: the position (a store key and
//! whatever else a route needs) as base64url JSON, sealed with HMAC-SHA256
//! over the route, the tenant and the payload. A cursor from one tenant or
//! route does not open for another, and an edited one does not open at all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::domain::TenantId;

/// Longest cursor accepted.
pub const MAX_CURSOR_LEN: usize = 4096;

/// Why a cursor was refused (answered 400 `invalid_cursor`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is invalid, expired or not from this query")]
pub struct InvalidCursor;

/// Seals and opens cursors with one secret.
#[derive(Clone)]
pub struct CursorCodec {
    secret: SecretString,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

impl CursorCodec {
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    fn mac(&self, route: &str, tenant: &TenantId, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"morag-cursor-v1\0");
        mac.update(route.as_bytes());
        mac.update(b"\0");
        mac.update(tenant.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn seal<T: Serialize>(&self, route: &str, tenant: &TenantId, position: &T) -> String {
        let json = serde_json::to_vec(position).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(route, tenant, &payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    pub fn open<T: DeserializeOwned>(&self, route: &str, tenant: &TenantId, token: &str) -> Result<T, InvalidCursor> {
        if token.len() > MAX_CURSOR_LEN {
            return Err(InvalidCursor);
        }
        let (payload, tag) = token.split_once('.').ok_or(InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| InvalidCursor)?;
        // constant-time comparison
        self.mac(route, tenant, payload)
            .verify_slice(&tag)
            .map_err(|_| InvalidCursor)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| InvalidCursor)?;
        serde_json::from_slice(&json).map_err(|_| InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn codec(secret: &str) -> CursorCodec {
        CursorCodec::new(SecretString::from(secret.to_owned()))
    }

    #[test]
    fn round_trips_and_refuses_every_kind_of_misuse() {
        let c = codec("s3cret-s3cret-s3cret-s3cret-s3cret");
        let acme: TenantId = "acme".parse().unwrap();
        let globex: TenantId = "globex".parse().unwrap();
        let pos = json!({"pk": "TASK#1", "sk": "EVENT#0000000007"});
        let token = c.seal("history", &acme, &pos);
        assert_eq!(c.open::<Value>("history", &acme, &token).unwrap(), pos);
        assert_eq!(
            c.open::<Value>("history", &globex, &token),
            Err(InvalidCursor),
            "another tenant"
        );
        assert_eq!(
            c.open::<Value>("tasks", &acme, &token),
            Err(InvalidCursor),
            "another route"
        );
        assert_eq!(
            codec("other-secret").open::<Value>("history", &acme, &token),
            Err(InvalidCursor)
        );
        // an edited payload with the old tag
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(br#"{"pk":"TASK#2","sk":"EVENT#0000000007"}"#)
        );
        assert_eq!(c.open::<Value>("history", &acme, &forged), Err(InvalidCursor));
        for junk in ["", ".", "abc", "abc.def", &"a".repeat(5000)] {
            assert_eq!(c.open::<Value>("history", &acme, junk), Err(InvalidCursor), "{junk}");
        }
    }
}
