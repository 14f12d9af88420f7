//! `POST /api/v1/uploads`: a presigned S3 PUT for one object under the
//! tenant's prefix, and the upload record that `/ingest/upload` claims.

use std::time::Duration;

use chrono::{DateTime, Utc};

use morag_shared::domain::{PresignedPut, TenantId, Upload, UploadId};
use morag_shared::error::StoreError;

use crate::form::UploadRequest;
use crate::state::Ingest;

/// How long the presigned URL is valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(3600);

/// A granted upload, as answered.
#[derive(Debug, Clone)]
pub struct Granted {
    pub upload: Upload,
    pub put: PresignedPut,
}

/// Presigns the PUT (local: no call to S3), then stores the record.
pub async fn grant(
    st: &Ingest,
    tenant: TenantId,
    req: UploadRequest,
    now: DateTime<Utc>,
) -> Result<Granted, StoreError> {
    let upload_id = UploadId::new();
    let upload = Upload {
        key: Upload::key_for(&tenant, &upload_id, &req.filename),
        upload_id,
        tenant,
        filename: req.filename,
        content_type: req.content_type,
        size_bytes: req.size_bytes,
        sha256: req.sha256,
        created_at: now,
        expires_at: now + chrono::Duration::from_std(UPLOAD_URL_TTL).unwrap_or_default(),
        task_id: None,
    };
    let put = st.blobs.presign_put(&upload, UPLOAD_URL_TTL).await?;
    st.uploads.put_upload(&upload).await?;
    tracing::info!(upload_id = %upload.upload_id, size_bytes = upload.size_bytes, "upload granted");
    Ok(Granted { upload, put })
}
