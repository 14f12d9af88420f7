//! Timestamps: UTC, millisecond precision, RFC 3339 with a `Z` suffix.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time truncated to milliseconds, so that a timestamp survives a
/// round trip through JSON and DynamoDB unchanged.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Seconds since the Unix epoch, as DynamoDB's TTL attribute wants them.
pub fn epoch_seconds(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}
