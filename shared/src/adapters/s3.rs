//! The uploads bucket on S3.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;

use crate::error::StoreError;
use crate::ports::{BlobReader, BlobStore};

pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StoreError::unavailable("s3", "PutObject", DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("s3", "DeleteObject", DisplayErrorContext(e)))?;
        Ok(())
    }
}

#[async_trait]
impl BlobReader for S3BlobStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: usize) -> Result<Option<(Bytes, String)>, StoreError> {
        let out = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(StoreError::unavailable("s3", "GetObject", DisplayErrorContext(e))),
        };
        if out.content_length().is_some_and(|n| n > max_bytes as i64) {
            return Err(StoreError::Conflict {
                op: "GetObject",
                detail: format!("object is larger than {max_bytes} bytes"),
            });
        }
        let content_type = out.content_type().unwrap_or("application/octet-stream").to_owned();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::unavailable("s3", "GetObject", e))?
            .into_bytes();
        if bytes.len() > max_bytes {
            return Err(StoreError::Conflict {
                op: "GetObject",
                detail: format!("object is larger than {max_bytes} bytes"),
            });
        }
        Ok(Some((bytes, content_type)))
    }
}
