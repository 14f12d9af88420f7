//! Direct uploads: a client asks for a presigned S3 PUT (`POST
//! /api/v1/uploads`), sends the file straight to S3, then turns the landed
//! object into a task (`POST /api/v1/ingest/upload`). The upload record binds
//! the object to its tenant and is claimed by exactly one task.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::ids::{InvalidId, TaskId, TenantId};

/// S3's largest single PUT: 5 GiB.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// An upload's id: `upl_` and 32 lower-case hex digits (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

impl UploadId {
    const HEX_DIGITS: usize = 32;

    pub fn new() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(format!("upl_{}", hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for UploadId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("upl_").unwrap_or("");
        if hex.len() == Self::HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId(
                "upload_id must be upl_ and 32 lower-case hex digits".to_owned(),
            ))
        }
    }
}

impl TryFrom<String> for UploadId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> Self {
        id.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A granted upload: where the object goes and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: UploadId,
    pub tenant: TenantId,
    /// `uploads/{tenant}/{upload_id}/{file name}`.
    pub key: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 the client declared (and S3 checks).
    pub sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The presigned URL's expiry; the record lives a day longer.
    pub expires_at: DateTime<Utc>,
    /// The task that claimed it (an upload makes one task).
    pub task_id: Option<TaskId>,
}

/// How long after its URL expires an upload can still be turned into a task
/// (its record lives that long, then DynamoDB's TTL removes it).
pub const CLAIM_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl Upload {
    /// The declared SHA-256 as S3 spells checksums (base64).
    pub fn sha256_base64(&self) -> Option<String> {
        use base64::Engine;
        let digest = hex::decode(self.sha256.as_deref()?).ok()?;
        Some(base64::engine::general_purpose::STANDARD.encode(digest))
    }

    /// The last moment `POST /api/v1/ingest/upload` takes it.
    pub fn claimable_until(&self) -> DateTime<Utc> {
        self.expires_at + CLAIM_WINDOW
    }

    /// The object key of `upload_id` for `tenant`: under the tenant's prefix.
    pub fn key_for(tenant: &TenantId, upload_id: &UploadId, filename: &str) -> String {
        format!("uploads/{tenant}/{upload_id}/{filename}")
    }
}

/// The S3 object tag (`morag-upload`) of an upload that no task has claimed
/// yet; the bucket's lifecycle rule expires such objects after a day.
pub const PENDING_TAG: (&str, &str) = ("morag-upload", "pending");
/// The tag value once a task claimed the upload.
pub const CLAIMED_TAG_VALUE: &str = "claimed";

/// A presigned PUT: the client sends the file to `url` with exactly `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// An object being read: its type, its size and its bytes as they arrive.
pub struct Blob {
    pub content_type: String,
    pub size_bytes: u64,
    pub body: futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("content_type", &self.content_type)
            .field("size_bytes", &self.size_bytes)
            .finish_non_exhaustive()
    }
}

/// What S3 says about a landed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size_bytes: u64,
    /// Base64 SHA-256, when the object was uploaded with a checksum.
    pub checksum_sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_random_and_parsed_strictly() {
        let (a, b) = (UploadId::new(), UploadId::new());
        assert_ne!(a, b);
        assert_eq!(a.as_str().parse::<UploadId>().unwrap(), a);
        for bad in [
            "",
            "upl_",
            "upl_XYZ",
            "msg_0123456789abcdef0123456789abcdef",
            "upl_../../etc/passwd0000000000000",
        ] {
            assert!(bad.parse::<UploadId>().is_err(), "{bad}");
        }
        let tenant: TenantId = "acme".parse().unwrap();
        assert_eq!(Upload::key_for(&tenant, &a, "f.md"), format!("uploads/acme/{a}/f.md"));
    }
}
