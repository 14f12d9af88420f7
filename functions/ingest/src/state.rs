//! The function's state: the ports a request uses, built once per cold
//! start by `wiring`.

use std::sync::Arc;

use morag_shared::http::{Authenticates, Authenticator};
use morag_shared::ports::{BlobStore, JobQueue, TaskStore, UploadStore};

use crate::limits::Limits;

/// Everything a request needs, built once per cold start (see `wiring`).
pub struct Ingest {
    pub tasks: Arc<dyn TaskStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub blobs: Arc<dyn BlobStore>,
    pub uploads: Arc<dyn UploadStore>,
    pub auth: Arc<Authenticator>,
    pub limits: Limits,
}

impl Authenticates for Ingest {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}
