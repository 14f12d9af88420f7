//! The uploads bucket on S3.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, Tag, Tagging};
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;

use crate::domain::upload::{CLAIMED_TAG_VALUE, PENDING_TAG};
use crate::domain::{Blob, ObjectInfo, PresignedPut, Upload};
use crate::error::StoreError;
use crate::ports::{BlobReader, BlobStore};

fn unavailable<E: std::error::Error + Send + Sync + 'static>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::unavailable("s3", op, DisplayErrorContext(e))
}

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

    async fn presign_put(&self, upload: &Upload, expires_in: Duration) -> Result<PresignedPut, StoreError> {
        let length = i64::try_from(upload.size_bytes).map_err(|_| StoreError::Corrupt {
            what: "upload size",
            detail: "larger than S3 can take".to_owned(),
        })?;
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&upload.key)
            .content_length(length)
            .content_type(&upload.content_type)
            .tagging(format!("{}={}", PENDING_TAG.0, PENDING_TAG.1));
        if let Some(checksum) = upload.sha256_base64() {
            put = put.checksum_sha256(checksum);
        }
        let config = PresigningConfig::expires_in(expires_in).map_err(unavailable("PresignPutObject"))?;
        let request = put.presigned(config).await.map_err(unavailable("PresignPutObject"))?;
        Ok(PresignedPut {
            url: request.uri().to_owned(),
            headers: request.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let sent = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Some(ObjectInfo {
                size_bytes: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
                checksum_sha256: out.checksum_sha256().map(str::to_owned),
            })),
            // (with s3:ListBucket; without it S3 answers 403 for a missing key)
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(unavailable("HeadObject")(e)),
        }
    }

    async fn mark_claimed(&self, key: &str) -> Result<(), StoreError> {
        let tag = Tag::builder()
            .key(PENDING_TAG.0)
            .value(CLAIMED_TAG_VALUE)
            .build()
            .map_err(unavailable("PutObjectTagging"))?;
        let tagging = Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(unavailable("PutObjectTagging"))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(unavailable("PutObjectTagging"))?;
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
    async fn open(&self, bucket: &str, key: &str) -> Result<Option<Blob>, StoreError> {
        let out = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            // (a 404 needs s3:ListBucket; the template grants it on the prefix)
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(unavailable("GetObject")(e)),
        };
        let content_type = out.content_type().unwrap_or("application/octet-stream").to_owned();
        let size_bytes = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        let body = futures_util::stream::unfold(out.body, |mut body| async move {
            body.next()
                .await
                .map(|piece| (piece.map_err(std::io::Error::other), body))
        });
        Ok(Some(Blob {
            content_type,
            size_bytes,
            body: Box::pin(body),
        }))
    }
}
