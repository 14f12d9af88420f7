//! Everything the morag-status functions share: the domain model (no AWS
//! types), the ports the domain talks through, their DynamoDB/SQS/S3 and
//! in-memory adapters, configuration, authentication, HTTP error mapping and
//! telemetry.
//!
//! A request is easiest to follow from the function crate
//! (`functions/*/src/lib.rs`) into [`domain`], then into [`adapters`].

pub mod adapters;
pub mod auth;
pub mod aws;
pub mod batch;
pub mod config;
pub mod cursor;
pub mod domain;
pub mod error;
pub mod http;
pub mod net;
pub mod outbound;
pub mod ports;
pub mod reporter;
pub mod telemetry;
pub mod time;
pub mod webhook;
