//! Signing secrets sealed with KMS: `Encrypt`/`Decrypt` of the secret itself
//! (a few dozen bytes, far under KMS's 4 KB) under the deployment's key,
//! bound to the tenant by the encryption context, so a sealed secret copied
//! to another tenant's item does not open.

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::domain::TenantId;
use crate::error::StoreError;
use crate::ports::SecretCipher;

/// The encryption context's purpose entry.
const PURPOSE: &str = "morag-webhook-signing-secret";

pub struct KmsCipher {
    client: aws_sdk_kms::Client,
    /// The key that seals; opening needs none (the ciphertext names it).
    key_id: String,
}

impl KmsCipher {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

#[async_trait]
impl SecretCipher for KmsCipher {
    async fn seal(&self, tenant: &TenantId, plaintext: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext.as_bytes()))
            .encryption_context("tenant", tenant.as_str())
            .encryption_context("purpose", PURPOSE)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("kms", "Encrypt", DisplayErrorContext(e)))?;
        let blob = out.ciphertext_blob.ok_or_else(|| StoreError::Corrupt {
            what: "kms answer",
            detail: "Encrypt returned no ciphertext".to_owned(),
        })?;
        Ok(STANDARD.encode(blob.as_ref()))
    }

    async fn open(&self, tenant: &TenantId, sealed: &str) -> Result<String, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "sealed signing secret",
            detail,
        };
        let blob = STANDARD
            .decode(sealed)
            .map_err(|e| corrupt(format!("not base64: {e}")))?;
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .encryption_context("tenant", tenant.as_str())
            .encryption_context("purpose", PURPOSE)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("kms", "Decrypt", DisplayErrorContext(e)))?;
        let plain = out
            .plaintext
            .ok_or_else(|| corrupt("Decrypt returned no plaintext".to_owned()))?;
        String::from_utf8(plain.into_inner()).map_err(|_| corrupt("not UTF-8".to_owned()))
    }
}
