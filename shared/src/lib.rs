//! Everything the morag-status functions share, in folders that say what they are:
//!
//! - [`domain`]: the model and its rules (tasks, status events, the lifecycle,
//!   webhook deliveries and their policy, keys). No AWS or HTTP types.
//! - [`ports`]: the traits the functions talk through (traits only).
//! - [`adapters`]: DynamoDB, SQS, S3 (and in-memory ones for tests) behind the ports.
//! - [`http`]: the API's error shape, authentication, cursors, typed queries.
//! - [`outbound`]: URL checks and the resolving, pinning HTTP client.
//! - [`batch`]: the SQS batch pipeline of the SQS functions; [`outbox`]: the
//!   delivery outbox; [`reporter`]: `TaskReporter` for pipeline workers.
//! - [`config`], [`telemetry`], [`error`], [`time`].
//!
//! Imports point inward: adapters and http know the domain and ports; the
//! domain knows neither.

pub mod adapters;
pub mod apply;
pub mod batch;
pub mod config;
pub mod domain;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod outbound;
pub mod outbox;
pub mod ports;
pub mod reporter;
pub mod telemetry;
pub mod time;
