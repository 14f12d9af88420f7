//! Request bodies: the content type a route takes, a size limit enforced
//! while reading (a 413 naming it), and JSON into a typed value (a 400
//! naming what is wrong).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::ApiError;

/// `415` unless the request's `Content-Type` is `wanted` (parameters such
/// as `charset` aside).
pub fn require_content_type(headers: &HeaderMap, wanted: &str) -> Result<(), ApiError> {
    let actual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if actual.as_deref() == Some(wanted) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be {wanted}"),
        ))
    }
}

/// `413 payload_too_large`, naming the limit.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// Reads the body up to `limit` bytes (a 413 above it, before reading when
/// `Content-Length` already says so).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(e) => Err(ApiError::bad_request(
            "invalid_body",
            format!("could not read the request body: {e}"),
        )),
    }
}

/// An `application/json` body of at most `limit` bytes.
pub async fn json_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    require_content_type(request.headers(), "application/json")?;
    let (parts, body) = request.into_parts();
    read_body(&parts.headers, body, limit).await
}

/// A JSON body as `T`; `400 invalid_body` with serde's account of what is
/// wrong (an unknown field, a missing one, a wrong type).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))
}

/// A JSON number that is a whole number at least 0 (`5` or `5.0`, as JSON
/// Schema's `integer` means), as a `u64`.
pub fn whole_number(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}
