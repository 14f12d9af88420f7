//! Local resources on the emulator, mirroring `template.yaml`: the table
//! (pk/sk, GSI1, TTL on `expires_at`), the uploads bucket, and the processing
//! queue with its dead-letter queue.

use std::sync::Arc;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::auth::{KeyHash, LOCAL_DEV_KEY, LOCAL_DEV_TENANT};
use morag_shared::aws::SdkConfig;
use morag_shared::ports::{ApiKeyRecord, KeyStore};

/// Receives before a message is parked in its DLQ (as in the template).
pub const MAX_RECEIVES: u32 = 5;

/// Names of one set of resources.
#[derive(Debug, Clone)]
pub struct Names {
    pub table: String,
    pub bucket: String,
    pub processing_queue: String,
    pub processing_dlq: String,
    pub status_events_queue: String,
    pub status_events_dlq: String,
    pub webhook_queue: String,
    pub webhook_dlq: String,
}

impl Names {
    /// Every name starts with `prefix` (lower-case letters, digits, `-`).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            table: format!("{prefix}-table"),
            bucket: format!("{prefix}-uploads"),
            processing_queue: format!("{prefix}-processing"),
            processing_dlq: format!("{prefix}-processing-dlq"),
            status_events_queue: format!("{prefix}-status-events"),
            status_events_dlq: format!("{prefix}-status-events-dlq"),
            webhook_queue: format!("{prefix}-webhooks"),
            webhook_dlq: format!("{prefix}-webhooks-dlq"),
        }
    }
}

/// What `provision` created (or found).
#[derive(Debug, Clone)]
pub struct Resources {
    pub names: Names,
    pub processing_queue_url: String,
    pub processing_dlq_url: String,
    pub status_events_queue_url: String,
    pub status_events_dlq_url: String,
    pub webhook_queue_url: String,
    pub webhook_dlq_url: String,
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()?)
}

fn attr(name: &str) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn gsi(name: &str, pk: &str, sk: &str) -> Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()?)
}

/// A queue and its dead-letter queue; returns (queue url, dlq url).
async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq_name: &str,
    visibility_timeout: u32,
    max_receives: u32,
) -> Result<(String, String)> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(dlq_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .with_context(|| format!("creating queue {dlq_name}"))?
        .queue_url
        .context("no queue url")?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("no queue arn")?;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string();
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .context("no queue url")?;
    Ok((queue_url, dlq_url))
}

/// Creates the resources if they do not exist yet. Safe to run again. The
/// webhook queue's `maxReceiveCount` is the default schedule's attempt budget.
pub async fn provision(sdk: &SdkConfig, names: &Names) -> Result<Resources> {
    provision_with(sdk, names, morag_shared::webhook::RetrySchedule::default().attempts()).await
}

/// Like `provision`, with the webhook attempt budget of a custom retry schedule.
pub async fn provision_with(sdk: &SdkConfig, names: &Names, webhook_attempts: u32) -> Result<Resources> {
    let ddb = morag_shared::aws::dynamodb(sdk);
    let exists = ddb.describe_table().table_name(&names.table).send().await.is_ok();
    if !exists {
        ddb.create_table()
            .table_name(&names.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .attribute_definitions(attr("gsi2pk")?)
            .attribute_definitions(attr("gsi2sk")?)
            .attribute_definitions(attr("gsi3pk")?)
            .attribute_definitions(attr("gsi3sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("GSI1")
                    .key_schema(key("gsi1pk", KeyType::Hash)?)
                    .key_schema(key("gsi1sk", KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()?,
            )
            .global_secondary_indexes(gsi("GSI2", "gsi2pk", "gsi2sk")?)
            .global_secondary_indexes(gsi("GSI3", "gsi3pk", "gsi3sk")?)
            .send()
            .await
            .with_context(|| format!("creating table {}", names.table))?;
        ddb.update_time_to_live()
            .table_name(&names.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .context("enabling TTL")?;
    }

    let s3 = morag_shared::aws::s3(sdk);
    if s3.head_bucket().bucket(&names.bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&names.bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {}", names.bucket))?;
    }

    let sqs = morag_shared::aws::sqs(sdk);
    // visibility timeouts: six times the consuming function's timeout, as in the template
    let (processing_queue_url, processing_dlq_url) =
        queue_with_dlq(&sqs, &names.processing_queue, &names.processing_dlq, 360, MAX_RECEIVES).await?;
    let (status_events_queue_url, status_events_dlq_url) = queue_with_dlq(
        &sqs,
        &names.status_events_queue,
        &names.status_events_dlq,
        180,
        MAX_RECEIVES,
    )
    .await?;
    // the webhook queue's maxReceiveCount is the delivery attempt budget
    let (webhook_queue_url, webhook_dlq_url) =
        queue_with_dlq(&sqs, &names.webhook_queue, &names.webhook_dlq, 180, webhook_attempts).await?;

    Ok(Resources {
        names: names.clone(),
        processing_queue_url,
        processing_dlq_url,
        status_events_queue_url,
        status_events_dlq_url,
        webhook_queue_url,
        webhook_dlq_url,
    })
}

/// Seeds tenant `local` with the documented development key. Local only.
pub async fn seed_local_key(store: &Arc<DynamoStore>) -> Result<()> {
    let hash = KeyHash::of(LOCAL_DEV_KEY);
    if store.find_key(&hash).await?.is_some() {
        return Ok(());
    }
    store
        .put_key(&ApiKeyRecord {
            key_hash: hash,
            tenant: LOCAL_DEV_TENANT.parse()?,
            created_at: morag_shared::time::now(),
            description: "local development key (make dev)".to_owned(),
        })
        .await?;
    Ok(())
}
