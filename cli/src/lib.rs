//! The local runner and operator CLI behind the `morag` binary, as a library
//! so that the integration tests provision their resources with the same code
//! as `make dev`.

pub mod dlq;
pub mod esm;
pub mod ingest;
pub mod keys;
pub mod openapi;
pub mod stack;
pub mod watch;
