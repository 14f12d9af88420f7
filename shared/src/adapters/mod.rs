//! Adapters behind the ports: DynamoDB, SQS and S3 for real, memory for unit
//! tests.

pub mod dynamodb;
pub mod memory;
pub mod s3;
pub mod sqs;
