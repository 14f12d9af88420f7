//! The limits of a submission, named once: body sizes, metadata, the
//! `Idempotency-Key`, and the deployment's upload limit and target policy.

use axum::http::StatusCode;

use morag_shared::http::ApiError;
use morag_shared::outbound::TargetPolicy;

/// Largest JSON body for `/ingest/url`.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub use morag_shared::config::{MAX_DIRECT_BODY, MAX_DIRECT_FILE, MULTIPART_OVERHEAD};

/// Limits and policies of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest file `/ingest/file` accepts: the configured limit, never
    /// above [`MAX_DIRECT_FILE`] (see [`Limits::new`]).
    pub max_upload_bytes: usize,
    /// The largest object `POST /api/v1/uploads` grants (at most S3's 5 GiB
    /// single PUT).
    pub max_object_bytes: u64,
    pub target_policy: TargetPolicy,
}

/// `413 payload_too_large` for a file through `/ingest/file`: names the
/// limit and the route that takes any size.
pub(crate) fn file_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the file exceeds the limit of {limit} bytes for /api/v1/ingest/file; send larger files with \
             POST /api/v1/uploads (a presigned S3 PUT), then POST /api/v1/ingest/upload"
        ),
    )
}

impl Limits {
    /// The configured upload limit, lowered to what can reach the function
    /// through API Gateway at all.
    pub fn new(configured_max_upload_bytes: usize, max_object_bytes: u64, target_policy: TargetPolicy) -> Self {
        if configured_max_upload_bytes > MAX_DIRECT_FILE {
            tracing::warn!(
                configured = configured_max_upload_bytes,
                ceiling = MAX_DIRECT_FILE,
                "MORAG_MAX_UPLOAD_BYTES is above what API Gateway and Lambda can carry; using the ceiling"
            );
        }
        Self {
            max_upload_bytes: configured_max_upload_bytes.min(MAX_DIRECT_FILE),
            max_object_bytes: max_object_bytes.min(morag_shared::domain::upload::MAX_SINGLE_PUT_BYTES),
            target_policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use morag_shared::config::{EVENT_OVERHEAD, LAMBDA_PAYLOAD_LIMIT};

    #[test]
    fn the_ceiling_is_what_base64_through_lambda_leaves() {
        assert_eq!(MAX_DIRECT_BODY, 4_669_440);
        assert_eq!(MAX_DIRECT_FILE, 4_603_904);
        // base64 of the largest body, plus the event around it, fits Lambda's 6 MB
        assert!(MAX_DIRECT_BODY.div_ceil(3) * 4 + EVENT_OVERHEAD <= LAMBDA_PAYLOAD_LIMIT);
        let policy = TargetPolicy::default();
        assert_eq!(
            Limits::new(5 * 1024 * 1024, 1, policy).max_upload_bytes,
            MAX_DIRECT_FILE
        );
        assert_eq!(Limits::new(1000, 1, policy).max_upload_bytes, 1000);
        assert_eq!(
            Limits::new(1, u64::MAX, policy).max_object_bytes,
            5 * 1024 * 1024 * 1024
        );
    }
}
