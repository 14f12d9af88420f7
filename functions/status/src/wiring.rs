//! Composition: the real adapters behind the ports. `main.rs`, `morag dev`
//! and the tests build the function here, and nowhere else.

use std::sync::Arc;

use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::{dynamodb::DynamoStore, kms::KmsCipher, sqs::SqsQueue};
use morag_shared::config::StatusConfig;
use morag_shared::http::cursor::CursorCodec;
use morag_shared::http::Authenticator;

use crate::Status;

/// The function as Lambda runs it: SDK configuration from the environment.
pub async fn from_config(cfg: &StatusConfig) -> Status {
    build(&aws::load(&cfg.aws).await, cfg)
}

/// The function over DynamoDB and SQS reached through `sdk`.
pub fn build(sdk: &SdkConfig, cfg: &StatusConfig) -> Status {
    let store = Arc::new(
        DynamoStore::new(aws::dynamodb(sdk), &cfg.api.table)
            .with_secrets_cipher(Arc::new(KmsCipher::new(aws::kms(sdk), &cfg.secrets_key_id))),
    );
    Status {
        tasks: store.clone(),
        deliveries: store.clone(),
        webhooks: Arc::new(SqsQueue::new(aws::sqs(sdk), &cfg.webhook_queue_url)),
        secrets: store.clone(),
        endpoints: store.clone(),
        target_policy: cfg.target_policy,
        auth: Arc::new(Authenticator::new(store, cfg.api.auth_cache_ttl)),
        cursors: CursorCodec::new(cfg.cursor_secret.clone()),
    }
}
