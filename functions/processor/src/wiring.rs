//! Composition: the real adapters behind the ports. `main.rs`, `morag dev`
//! and the tests build the function here, and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::{s3::S3BlobStore, sqs::SqsQueue};
use morag_shared::config::ProcessorConfig;
use morag_shared::outbound::{self, ClientError};

use crate::{Processor, Settings, USER_AGENT};

/// Connect timeout of downloads.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The function over S3 and SQS reached through `sdk`; fails if the outbound
/// HTTP client cannot be built (never a client without the address policy).
pub fn build(sdk: &SdkConfig, cfg: &ProcessorConfig) -> Result<Processor, ClientError> {
    let sqs = aws::sqs(sdk);
    Ok(Processor {
        // reads any bucket the job names; IAM limits it to the uploads bucket
        blobs: Arc::new(S3BlobStore::new(aws::s3(sdk), "")),
        events: Arc::new(SqsQueue::new(sqs.clone(), &cfg.status_events_queue_url)),
        dead_letters: Arc::new(SqsQueue::new(sqs, &cfg.processing_dlq_url)),
        http: outbound::client(
            cfg.target_policy,
            outbound::system_lookup(),
            CONNECT_TIMEOUT,
            cfg.fetch_timeout,
            USER_AGENT,
        )?,
        settings: Settings {
            max_source_bytes: cfg.max_source_bytes,
            chunk_chars: cfg.chunk_chars,
            target_policy: cfg.target_policy,
            time_budget: cfg.job_time_budget,
        },
    })
}
