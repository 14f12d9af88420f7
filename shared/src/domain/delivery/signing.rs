//! Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`,
//! and the asymmetric `v1a,<base64 ed25519 signature>` over the same bytes
//! with a `whsk_` key (receivers verify with its `whpk_` public key).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The `User-Agent` of every webhook request (the MoRAG seed's).
pub const USER_AGENT: &str = "MoRAG-Webhook/1.0";

/// A tenant's signing secret, `whsec_` + base64 of 24 to 64 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// A new random secret, as text.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        format!("whsec_{}", STANDARD.encode(bytes))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text
            .strip_prefix("whsec_")
            .ok_or("a signing secret starts with whsec_")?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| "a signing secret is whsec_ and base64".to_owned())?;
        if !(24..=64).contains(&bytes.len()) {
            return Err("a signing secret has 24 to 64 bytes".to_owned());
        }
        Ok(Self(bytes))
    }

    /// `v1,` + base64 HMAC-SHA256 over `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// A tenant's ed25519 signing key: `whsk_` + base64 of its 32-byte seed.
/// Its public half, `whpk_` + base64 of the 32-byte public key, is what
/// receivers verify `v1a` signatures with.
#[derive(Clone)]
pub struct AsymmetricKey(ed25519_dalek::SigningKey);

impl fmt::Debug for AsymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AsymmetricKey({})", self.key_id())
    }
}

impl AsymmetricKey {
    /// A new random key, as `whsk_` text.
    pub fn generate() -> String {
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        format!("whsk_{}", STANDARD.encode(seed))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text.strip_prefix("whsk_").ok_or("a signing key starts with whsk_")?;
        let seed: [u8; 32] = STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a signing key is whsk_ and the base64 of a 32-byte ed25519 seed")?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// `whpk_` + base64 of the public key.
    pub fn public_key(&self) -> String {
        format!("whpk_{}", STANDARD.encode(self.0.verifying_key().as_bytes()))
    }

    /// A short, stable name for the key pair (`kid_` + the first 8 bytes of
    /// SHA-256 of the public key, hex), to tell keys apart during a rotation.
    pub fn key_id(&self) -> String {
        use sha2::Digest;
        let digest = Sha256::digest(self.0.verifying_key().as_bytes());
        format!("kid_{}", hex::encode(&digest[..8]))
    }

    /// `v1a,` + base64 ed25519 signature over `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        use ed25519_dalek::Signer;
        let mut message = Vec::with_capacity(id.len() + body.len() + 24);
        message.extend_from_slice(id.as_bytes());
        message.push(b'.');
        message.extend_from_slice(timestamp.to_string().as_bytes());
        message.push(b'.');
        message.extend_from_slice(body);
        format!("v1a,{}", STANDARD.encode(self.0.sign(&message).to_bytes()))
    }
}

/// The `webhook-signature` header: one signature per active secret (two
/// during a rotation), space-separated.
pub fn signature_header(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn asymmetric_keys_round_trip_and_sign_deterministically() {
        let text = AsymmetricKey::generate();
        let key = AsymmetricKey::parse(&text).unwrap();
        assert!(key.public_key().starts_with("whpk_"));
        assert_eq!(STANDARD.decode(&key.public_key()[5..]).unwrap().len(), 32);
        assert!(key.key_id().starts_with("kid_") && key.key_id().len() == 20);
        let sig = key.sign("msg_1", 1, b"{}");
        assert!(sig.starts_with("v1a,"));
        assert_eq!(STANDARD.decode(&sig[4..]).unwrap().len(), 64);
        assert_eq!(sig, key.sign("msg_1", 1, b"{}"), "ed25519 is deterministic");
        assert_ne!(sig, key.sign("msg_1", 2, b"{}"));
        assert!(AsymmetricKey::parse("whsec_AAAA").is_err());
        assert!(AsymmetricKey::parse("whsk_c2hvcnQ=").is_err());
        assert!(!format!("{key:?}").contains("whsk_"));
    }

    #[test]
    fn rotation_signs_with_both_secrets() {
        let old = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let new = SigningSecret::parse(&SigningSecret::generate()).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]);
        assert!(SigningSecret::parse("nope").is_err());
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err());
        assert!(!format!("{new:?}").contains("whsec"));
    }
}
