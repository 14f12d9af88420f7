//! Outbound HTTP that cannot be aimed at internal addresses: `target` judges
//! a URL as written (at intake), `client` resolves, checks every address and
//! pins the connection to it (at send time).

pub mod client;
pub mod target;

pub use client::{blocked_by_policy, client, static_lookup, system_lookup, BlockedAddress, ClientError, Lookup};
pub use target::{check_target_url, TargetPolicy, UrlError};
