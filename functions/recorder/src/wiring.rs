//! Composition: the real adapters behind the ports. `main.rs`, `morag dev`
//! and the tests build the function here, and nowhere else.

use std::sync::Arc;

use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::{dynamodb::DynamoStore, sqs::SqsQueue};
use morag_shared::config::RecorderConfig;
use morag_shared::endpoints::{EndpointCache, ENDPOINT_CACHE_TTL};

use crate::Recorder;

/// The function over DynamoDB and SQS reached through `sdk`.
pub fn build(sdk: &SdkConfig, cfg: &RecorderConfig) -> Recorder {
    let store = Arc::new(DynamoStore::new(aws::dynamodb(sdk), &cfg.table));
    let sqs = aws::sqs(sdk);
    Recorder {
        tasks: store.clone(),
        deliveries: store.clone(),
        endpoints: Arc::new(EndpointCache::new(store, ENDPOINT_CACHE_TTL)),
        webhooks: Arc::new(SqsQueue::new(sqs.clone(), &cfg.webhook_queue_url)),
        dead_letters: Arc::new(SqsQueue::new(sqs, &cfg.status_events_dlq_url)),
        retention: cfg.retention,
        public_api_url: Some(cfg.public_api_url.clone()),
    }
}
