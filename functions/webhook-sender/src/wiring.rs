//! Composition: the real adapters behind the ports. `main.rs`, `morag dev`
//! and the tests build the function here, and nowhere else.

use std::sync::Arc;

use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::{dynamodb::DynamoStore, kms::KmsCipher, sqs::SqsQueue};
use morag_shared::config::SenderConfig;
use morag_shared::domain::delivery::USER_AGENT;
use morag_shared::outbound::{self, ClientError, Lookup};

use crate::{Sender, SenderPorts, SenderSettings};

/// The function over DynamoDB and SQS reached through `sdk`, resolving
/// receivers' names with the system resolver.
pub fn build(sdk: &SdkConfig, cfg: &SenderConfig) -> Result<Sender, ClientError> {
    build_with_lookup(sdk, cfg, outbound::system_lookup())
}

/// Like `build`, with a chosen name lookup (tests map names to addresses).
/// Fails if the outbound HTTP client cannot be built: never a client without
/// the address policy.
pub fn build_with_lookup(sdk: &SdkConfig, cfg: &SenderConfig, lookup: Lookup) -> Result<Sender, ClientError> {
    let store = Arc::new(
        DynamoStore::new(aws::dynamodb(sdk), &cfg.table)
            .with_secrets_cipher(Arc::new(KmsCipher::new(aws::kms(sdk), &cfg.secrets_key_id))),
    );
    let sqs = aws::sqs(sdk);
    let ports = SenderPorts {
        deliveries: store.clone(),
        endpoints: store.clone(),
        webhooks: Arc::new(SqsQueue::new(sqs.clone(), &cfg.webhook_queue_url)),
        secrets: store,
        visibility: Arc::new(SqsQueue::new(sqs.clone(), &cfg.webhook_queue_url)),
        dead_letters: Arc::new(SqsQueue::new(sqs, &cfg.webhook_dlq_url)),
    };
    let http = outbound::client(cfg.target_policy, lookup, cfg.connect_timeout, cfg.timeout, USER_AGENT)?;
    Ok(Sender::new(
        ports,
        http,
        SenderSettings {
            schedule: cfg.schedule.clone(),
            policy: cfg.target_policy,
            endpoint_failure_window: cfg.endpoint_failure_window,
            // an attempt's longest (connect, then the whole request) and its bookkeeping
            probe_lease: cfg.connect_timeout + cfg.timeout + std::time::Duration::from_secs(10),
            history_ttl: cfg.retention.history,
        },
    ))
}
