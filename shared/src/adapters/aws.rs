//! Building the AWS SDK clients, once per cold start.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};

use crate::config::AwsSettings;

/// Loads the SDK configuration from the Lambda environment (region and
/// credentials), with bounded timeouts so that a slow dependency turns into a
/// 503 instead of a Lambda timeout.
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// A configuration for a local emulator: fixed test credentials, `us-east-1`.
pub fn local(endpoint_url: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .endpoint_url(endpoint_url)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "morag-local"),
        ))
        .timeout_config(timeouts())
        .build()
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(10))
        .build()
}

pub fn dynamodb(conf: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(conf)
}

pub fn sqs(conf: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(conf)
}

/// S3 with path-style addressing when an endpoint override is set (emulators
/// do not serve virtual-hosted bucket names).
pub fn s3(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let builder = aws_sdk_s3::config::Builder::from(conf).force_path_style(conf.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

pub fn kms(conf: &SdkConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(conf)
}
