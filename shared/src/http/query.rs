//! Typed query strings: `Params<T>` deserializes the query into `T` (a struct
//! with `#[serde(deny_unknown_fields)]`) and answers a malformed or unknown
//! parameter with `400 invalid_parameter` in the API's error shape.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The request's query string as `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(invalid_parameter(
                rejection
                    .body_text()
                    .trim_start_matches("Failed to deserialize query string: ")
                    .to_owned(),
            )),
        }
    }
}

/// `400 invalid_parameter`.
pub fn invalid_parameter(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", message)
}

/// A whole number parameter within `range`, `default` when absent.
pub fn bounded(
    value: Option<u32>,
    name: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ApiError> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(invalid_parameter(format!(
            "{name} must be an integer from {} to {}",
            range.start(),
            range.end()
        )))
    }
}
