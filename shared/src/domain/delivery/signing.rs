//! Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`,
//! and the asymmetric `v1a,<base64 ed25519 signature>` over the same bytes
//! with a `whsk_` key (receivers verify with its `whpk_` public key).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
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

/// A signature scheme of the Standard Webhooks spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// HMAC-SHA256 with the shared `whsec_` secret.
    V1,
    /// Ed25519 with the `whsk_` key; receivers hold only its `whpk_` half.
    V1a,
}

/// Which signatures a tenant's webhooks carry: at least one of `v1`, `v1a`.
/// Stored and shown as a list (`["v1"]`, `["v1a"]`, `["v1", "v1a"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scheme>", into = "Vec<Scheme>")]
pub struct Schemes {
    pub v1: bool,
    pub v1a: bool,
}

impl Default for Schemes {
    /// `v1` only: what every Standard Webhooks library verifies.
    fn default() -> Self {
        Self { v1: true, v1a: false }
    }
}

impl TryFrom<Vec<Scheme>> for Schemes {
    type Error = &'static str;

    fn try_from(list: Vec<Scheme>) -> Result<Self, Self::Error> {
        let schemes = Self {
            v1: list.contains(&Scheme::V1),
            v1a: list.contains(&Scheme::V1a),
        };
        if !(schemes.v1 || schemes.v1a) {
            return Err("schemes lists at least one of \"v1\", \"v1a\"");
        }
        Ok(schemes)
    }
}

impl From<Schemes> for Vec<Scheme> {
    fn from(s: Schemes) -> Self {
        [(s.v1, Scheme::V1), (s.v1a, Scheme::V1a)]
            .into_iter()
            .filter_map(|(on, scheme)| on.then_some(scheme))
            .collect()
    }
}

/// What signs one tenant's webhooks now: its `whsec_` secrets (for `v1`)
/// and its ed25519 keys (for `v1a`), each newest first (two during a
/// rotation's overlap).
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<SigningSecret>,
    keys: Vec<AsymmetricKey>,
}

/// The signing headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `webhook-signature`: the `v1` signatures, then the `v1a` ones.
    pub signature: String,
    /// `webhook-key-ids`: the key id of each `v1a` signature, in the order
    /// they appear in `webhook-signature`; `None` without `v1a`.
    pub key_ids: Option<String>,
}

impl Signer {
    pub fn new(secrets: Vec<SigningSecret>, keys: Vec<AsymmetricKey>) -> Self {
        Self { secrets, keys }
    }

    /// Nothing to sign with (a tenant whose schemes name no credential).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.keys.is_empty()
    }

    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Signed {
        let signatures = self
            .secrets
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .chain(self.keys.iter().map(|k| k.sign(id, timestamp, body)));
        Signed {
            signature: signatures.collect::<Vec<_>>().join(" "),
            key_ids: (!self.keys.is_empty()).then(|| {
                self.keys
                    .iter()
                    .map(AsymmetricKey::key_id)
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        }
    }
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
        let header = Signer::new(vec![new.clone(), old.clone()], Vec::new())
            .sign("msg_1", 1, b"{}")
            .signature;
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]);
        assert!(SigningSecret::parse("nope").is_err());
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err());
        assert!(!format!("{new:?}").contains("whsec"));
    }

    #[test]
    fn a_signer_signs_v1_then_v1a_and_names_the_v1a_keys_in_order() {
        let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let new = AsymmetricKey::parse(&AsymmetricKey::generate()).unwrap();
        let old = AsymmetricKey::parse(&AsymmetricKey::generate()).unwrap();
        let signer = Signer::new(vec![secret.clone()], vec![new.clone(), old.clone()]);
        let signed = signer.sign("msg_1", 1, b"{}");
        assert_eq!(
            signed.signature,
            [
                secret.sign("msg_1", 1, b"{}"),
                new.sign("msg_1", 1, b"{}"),
                old.sign("msg_1", 1, b"{}")
            ]
            .join(" ")
        );
        assert_eq!(signed.key_ids, Some(format!("{} {}", new.key_id(), old.key_id())));

        let v1_only = Signer::new(vec![secret.clone()], Vec::new()).sign("msg_1", 1, b"{}");
        assert_eq!(v1_only.key_ids, None);
        assert!(!v1_only.signature.contains("v1a,"));
        let v1a_only = Signer::new(Vec::new(), vec![new.clone()]).sign("msg_1", 1, b"{}");
        assert_eq!(v1a_only.signature, new.sign("msg_1", 1, b"{}"));
        assert!(Signer::new(Vec::new(), Vec::new()).is_empty());
    }

    #[test]
    fn schemes_are_a_non_empty_list() {
        let both: Schemes = serde_json::from_str(r#"["v1a", "v1", "v1a"]"#).unwrap();
        assert_eq!(both, Schemes { v1: true, v1a: true });
        assert_eq!(serde_json::to_string(&both).unwrap(), r#"["v1","v1a"]"#);
        assert_eq!(serde_json::to_string(&Schemes::default()).unwrap(), r#"["v1"]"#);
        assert!(serde_json::from_str::<Schemes>("[]").is_err());
        assert!(serde_json::from_str::<Schemes>(r#"["v2"]"#).is_err());
    }
}
