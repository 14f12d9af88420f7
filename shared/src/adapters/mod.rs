//! Adapters behind the ports: the AWS SDK clients (`aws`), DynamoDB, SQS and
//! S3 for real, and in-memory ones for unit tests (`memory`, only with the
//! `test-support` feature or in this crate's tests: never in a release binary).

pub mod aws;
pub mod dynamodb;
pub mod kms;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod s3;
pub mod sqs;
