//! Errors from the infrastructure behind the ports.

/// A failure talking to DynamoDB, S3 or SQS (or their in-memory stand-ins).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The service could not be reached or refused the call; trying again later
    /// may work. Answered to clients as 503.
    #[error("{service} unavailable during {op}: {detail}")]
    Unavailable {
        service: &'static str,
        op: &'static str,
        detail: String,
    },
    /// A write was refused because the item already exists (or no longer
    /// matches what the write expected).
    #[error("conflict during {op}: {detail}")]
    Conflict { op: &'static str, detail: String },
    /// An item exists but cannot be read back into the domain model.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl StoreError {
    pub fn unavailable(service: &'static str, op: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Unavailable {
            service,
            op,
            detail: detail.to_string(),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
