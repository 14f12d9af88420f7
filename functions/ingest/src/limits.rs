//! The limits of a submission, named once: body sizes, metadata, the
//! `Idempotency-Key`, and the deployment's upload limit and target policy.

use axum::http::StatusCode;

use morag_shared::http::ApiError;
use morag_shared::outbound::TargetPolicy;

/// Room for multipart boundaries and the small text fields around the file.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// Largest JSON body for `/ingest/url`.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Limits and policies of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub target_policy: TargetPolicy,
}

/// `413 payload_too_large`, naming the limit.
pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds the limit of {limit} bytes"),
    )
}
