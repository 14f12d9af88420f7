//! Composition: the real adapters behind the ports. `main.rs`, `morag dev`
//! and the tests build the function here, and nowhere else.

use std::sync::Arc;

use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::{dynamodb::DynamoStore, sqs::SqsQueue};
use morag_shared::config::WatchdogConfig;
use morag_shared::endpoints::{EndpointCache, ENDPOINT_CACHE_TTL};

use crate::{Watchdog, WatchdogSettings};

/// The function over DynamoDB and SQS reached through `sdk`.
pub fn build(sdk: &SdkConfig, cfg: &WatchdogConfig) -> Watchdog {
    let store = Arc::new(DynamoStore::new(aws::dynamodb(sdk), &cfg.table));
    let sqs = aws::sqs(sdk);
    Watchdog {
        tasks: store.clone(),
        deliveries: store.clone(),
        endpoints: Arc::new(EndpointCache::new(store.clone(), ENDPOINT_CACHE_TTL)),
        index: store,
        jobs: Arc::new(SqsQueue::new(sqs.clone(), &cfg.processing_queue_url)),
        webhooks: Arc::new(SqsQueue::new(sqs.clone(), &cfg.webhook_queue_url)),
        dead_jobs: Arc::new(SqsQueue::new(sqs.clone(), &cfg.processing_dlq_url)),
        dead_webhooks: Arc::new(SqsQueue::new(sqs, &cfg.webhook_dlq_url)),
        settings: WatchdogSettings {
            retention: cfg.retention,
            time_budget: cfg.time_budget,
            public_api_url: Some(cfg.public_api_url.clone()),
            ..WatchdogSettings::default()
        },
    }
}
