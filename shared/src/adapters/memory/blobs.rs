//! The uploads bucket, in memory.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::faults::{down, lock};
use crate::domain::{Blob, ObjectInfo, PresignedPut, Upload};
use crate::error::StoreError;
use crate::ports::{BlobReader, BlobStore};

#[derive(Default)]
pub struct MemoryBlobStore {
    pub objects: Mutex<HashMap<String, (Bytes, String)>>,
    /// Keys marked claimed by a task.
    pub claimed: Mutex<Vec<String>>,
    /// Stored checksums (base64 SHA-256) `head` reports, as S3 does for
    /// objects uploaded with one.
    pub checksums: Mutex<HashMap<String, String>>,
    pub fail: AtomicBool,
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn bucket(&self) -> &str {
        "memory-bucket"
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        down(&self.fail, "memory", "put")?;
        lock(&self.objects).insert(key.to_owned(), (body, content_type.to_owned()));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        down(&self.fail, "memory", "delete")?;
        lock(&self.objects).remove(key);
        Ok(())
    }

    async fn presign_put(&self, upload: &Upload, _expires_in: std::time::Duration) -> Result<PresignedPut, StoreError> {
        down(&self.fail, "memory", "presign_put")?;
        Ok(PresignedPut {
            url: format!("memory://{}/{}", self.bucket(), upload.key),
            headers: vec![
                ("content-type".to_owned(), upload.content_type.clone()),
                ("content-length".to_owned(), upload.size_bytes.to_string()),
            ],
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        down(&self.fail, "memory", "head")?;
        let checksum = lock(&self.checksums).get(key).cloned();
        Ok(lock(&self.objects).get(key).map(|(bytes, _)| ObjectInfo {
            size_bytes: bytes.len() as u64,
            checksum_sha256: checksum,
        }))
    }

    async fn mark_claimed(&self, key: &str) -> Result<(), StoreError> {
        down(&self.fail, "memory", "mark_claimed")?;
        lock(&self.claimed).push(key.to_owned());
        Ok(())
    }
}

/// Objects are read back in pieces of this size, so readers meet pieces
/// that cut lines, words and characters.
const READ_PIECE: usize = 97;

#[async_trait]
impl BlobReader for MemoryBlobStore {
    async fn open(&self, _bucket: &str, key: &str) -> Result<Option<Blob>, StoreError> {
        down(&self.fail, "memory", "open")?;
        let Some((bytes, content_type)) = lock(&self.objects).get(key).cloned() else {
            return Ok(None);
        };
        let pieces: Vec<std::io::Result<Bytes>> = (0..bytes.len())
            .step_by(READ_PIECE)
            .map(|at| Ok(bytes.slice(at..(at + READ_PIECE).min(bytes.len()))))
            .collect();
        Ok(Some(Blob {
            content_type,
            size_bytes: bytes.len() as u64,
            body: Box::pin(futures_util::stream::iter(pieces)),
        }))
    }
}
