//! Composition: the real adapters behind the ports, from configuration and
//! the SDK configuration. `main.rs`, `morag dev` and the tests build the
//! function here, and nowhere else.

use std::sync::Arc;

use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::{dynamodb::DynamoStore, s3::S3BlobStore, sqs::SqsQueue};
use morag_shared::config::IngestConfig;
use morag_shared::http::Authenticator;

use crate::limits::Limits;
use crate::state::Ingest;

/// The function as Lambda runs it: SDK configuration from the environment.
pub async fn from_config(cfg: &IngestConfig) -> Ingest {
    build(&aws::load(&cfg.aws).await, cfg)
}

/// The function over DynamoDB, S3 and SQS reached through `sdk`.
pub fn build(sdk: &SdkConfig, cfg: &IngestConfig) -> Ingest {
    let store = Arc::new(DynamoStore::new(aws::dynamodb(sdk), &cfg.api.table));
    Ingest {
        tasks: store.clone(),
        jobs: Arc::new(SqsQueue::new(aws::sqs(sdk), &cfg.processing_queue_url)),
        blobs: Arc::new(S3BlobStore::new(aws::s3(sdk), &cfg.uploads_bucket)),
        uploads: store.clone(),
        auth: Arc::new(Authenticator::new(store, cfg.api.auth_cache_ttl)),
        limits: Limits::new(cfg.max_upload_bytes, cfg.max_object_bytes, cfg.target_policy),
    }
}
