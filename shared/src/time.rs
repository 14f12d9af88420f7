//! Timestamps: UTC, millisecond precision, RFC 3339 with a `Z` suffix.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time truncated to milliseconds, so that a timestamp survives a
/// round trip through JSON and DynamoDB unchanged.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Fixed-width RFC 3339 with milliseconds, for sort keys (sorts as time).
pub fn sort_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A `std` duration as a `chrono` one, saturating (a duration too long
/// for `chrono` is its longest).
pub fn span(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The hour bucket of a time, `yyyy-mm-ddThh`.
pub fn hour_bucket(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_are_fixed_width_and_sort_as_time() {
        let a = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let b = DateTime::from_timestamp_millis(1_700_000_000_001).unwrap();
        assert_eq!(sort_ts(a), "2023-11-14T22:13:20.000Z");
        assert!(sort_ts(a) < sort_ts(b));
        assert_eq!(hour_bucket(a), "2023-11-14T22");
    }
}
