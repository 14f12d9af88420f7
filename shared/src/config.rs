//! Typed configuration, read once at cold start. Every missing or invalid
//! variable is named in one error, so a broken deployment says everything
//! that is wrong at once. Nothing else in the code reads the environment.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use secrecy::SecretString;

use crate::domain::delivery::RetrySchedule;
use crate::domain::upload::MAX_SINGLE_PUT_BYTES;
use crate::domain::Retention;
use crate::outbound::TargetPolicy;

/// Lambda's limit on a synchronous invocation's request payload (6 MB).
pub const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// Room left for the API Gateway event around the body (headers, request
/// context, JSON framing).
pub const EVENT_OVERHEAD: usize = 64 * 1024;
/// The largest request body API Gateway can hand a function: an HTTP API
/// base64-encodes a multipart body (4 bytes for every 3) inside the event.
pub const MAX_DIRECT_BODY: usize = (LAMBDA_PAYLOAD_LIMIT - EVENT_OVERHEAD) / 4 * 3;
/// Room for multipart boundaries and the small text fields around a file.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// The largest file `/ingest/file` can take when deployed (4,603,904 bytes,
/// about 4.39 MiB), whatever `MORAG_MAX_UPLOAD_BYTES` says; the template's
/// `MaxUploadBytes` default and maximum (checked by the stack tests).
pub const MAX_DIRECT_FILE: usize = MAX_DIRECT_BODY - MULTIPART_OVERHEAD;

/// Default upload limit of `/ingest/file`: its ceiling. Also the processor's
/// default largest source read whole.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = MAX_DIRECT_FILE;

/// `MORAG_HISTORY_TTL_DAYS` default.
pub const DEFAULT_HISTORY_TTL_DAYS: u64 = 7;
/// `MORAG_TASK_TTL_DAYS` default.
pub const DEFAULT_TASK_TTL_DAYS: u64 = 30;

/// All configuration problems found, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// Reads variables through a lookup function and collects every problem.
pub struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
}

impl<'a> EnvReader<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            errors: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&mut self, name: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            self.errors.push(format!("{name} is required"));
            String::new()
        })
    }

    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.get(name)
    }

    pub fn parse_or<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|e| {
                self.errors.push(format!("{name}={raw:?} is invalid: {e}"));
                default
            }),
        }
    }

    pub fn flag(&mut self, name: &str) -> bool {
        match self.get(name).as_deref() {
            None => false,
            Some("1" | "true" | "TRUE" | "yes") => true,
            Some("0" | "false" | "FALSE" | "no") => false,
            Some(other) => {
                self.errors
                    .push(format!("{name}={other:?} is invalid: expected true or false"));
                false
            }
        }
    }

    /// Whether the code runs in AWS Lambda proper: Lambda (and every
    /// emulator) sets `AWS_LAMBDA_FUNCTION_NAME`; the local emulators
    /// (`sam local`, the project's Runtime API emulator) also set
    /// `AWS_SAM_LOCAL=true`.
    fn in_lambda(&self) -> bool {
        self.get("AWS_LAMBDA_FUNCTION_NAME").is_some() && self.get("AWS_SAM_LOCAL").as_deref() != Some("true")
    }

    fn refuse_in_lambda(&mut self, name: &str) {
        if self.in_lambda() {
            self.errors.push(format!(
                "{name} is for local runs only and is refused in AWS Lambda \
                 (AWS_LAMBDA_FUNCTION_NAME is set, AWS_SAM_LOCAL is not)"
            ));
        }
    }

    /// A flag meant only for local runs: setting it in Lambda is an error.
    pub fn local_only_flag(&mut self, name: &str) -> bool {
        let on = self.flag(name);
        if on {
            self.refuse_in_lambda(name);
        }
        on
    }

    /// A value meant only for local runs: setting it in Lambda is an error.
    pub fn local_only_optional(&mut self, name: &str) -> Option<String> {
        let value = self.get(name);
        if value.is_some() {
            self.refuse_in_lambda(name);
        }
        value
    }

    /// `MORAG_ALLOW_HTTP_WEBHOOKS`, `MORAG_ALLOW_LOOPBACK_WEBHOOKS`: the
    /// outbound policy, loosened for local runs only.
    pub fn target_policy(&mut self) -> TargetPolicy {
        TargetPolicy {
            allow_http: self.local_only_flag("MORAG_ALLOW_HTTP_WEBHOOKS"),
            allow_loopback: self.local_only_flag("MORAG_ALLOW_LOOPBACK_WEBHOOKS"),
        }
    }

    /// `MORAG_PUBLIC_API_URL`: an absolute http(s) URL with no query, kept
    /// without a trailing slash (`https://api.example.com/morag`).
    pub fn public_api_url(&mut self) -> String {
        let raw = self.required("MORAG_PUBLIC_API_URL");
        if raw.is_empty() {
            return raw;
        }
        match url::Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.query().is_none() && u.fragment().is_none() => {
                raw.trim_end_matches('/').to_owned()
            }
            _ => {
                self.errors.push(format!(
                    "MORAG_PUBLIC_API_URL={raw:?} is invalid: expected an http(s) base URL"
                ));
                String::new()
            }
        }
    }

    /// Records a problem found while checking values together.
    pub fn invalid(&mut self, problem: impl Into<String>) {
        self.errors.push(problem.into());
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A function's configuration, read from the environment once at cold start.
pub trait FromEnv: Sized {
    /// Reads every variable, recording problems in `env`.
    fn read(env: &mut EnvReader<'_>) -> Self;

    /// From the process environment.
    fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&process_env)
    }

    /// From any lookup (tests, the local runner).
    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = EnvReader::new(lookup);
        let cfg = Self::read(&mut env);
        env.finish().map(|()| cfg)
    }
}

/// How the AWS clients reach their services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `MORAG_AWS_ENDPOINT_URL`: one endpoint for every service (moto in local
    /// mode and tests). Unset on AWS.
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    fn read(env: &mut EnvReader<'_>) -> Self {
        Self {
            endpoint_url: env.local_only_optional("MORAG_AWS_ENDPOINT_URL"),
        }
    }
}

/// Settings common to the HTTP functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `MORAG_TABLE_NAME`
    pub table: String,
    /// `MORAG_AUTH_CACHE_SECONDS` (default 60; 0 disables the cache): how long a
    /// warm function trusts a key lookup. A revoked key stops working within it.
    pub auth_cache_ttl: Duration,
}

impl ApiSettings {
    fn read(env: &mut EnvReader<'_>) -> Self {
        Self {
            table: env.required("MORAG_TABLE_NAME"),
            auth_cache_ttl: Duration::from_secs(env.parse_or("MORAG_AUTH_CACHE_SECONDS", 60u64)),
        }
    }
}

/// The ingest function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    pub api: ApiSettings,
    /// `MORAG_UPLOADS_BUCKET`
    pub uploads_bucket: String,
    /// `MORAG_PROCESSING_QUEUE_URL`
    pub processing_queue_url: String,
    /// `MORAG_MAX_UPLOAD_BYTES`: largest file through `/ingest/file`
    /// (default and ceiling 4,603,904 bytes).
    pub max_upload_bytes: usize,
    /// `MORAG_MAX_OBJECT_BYTES`: largest upload `POST /api/v1/uploads`
    /// grants (default and ceiling 5 GiB, one S3 PUT).
    pub max_object_bytes: u64,
    /// `MORAG_ALLOW_HTTP_WEBHOOKS`, `MORAG_ALLOW_LOOPBACK_WEBHOOKS` (local mode only)
    pub target_policy: TargetPolicy,
    pub aws: AwsSettings,
}

impl FromEnv for IngestConfig {
    fn read(env: &mut EnvReader<'_>) -> Self {
        let cfg = Self {
            api: ApiSettings::read(env),
            uploads_bucket: env.required("MORAG_UPLOADS_BUCKET"),
            processing_queue_url: env.required("MORAG_PROCESSING_QUEUE_URL"),
            max_upload_bytes: env.parse_or("MORAG_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            max_object_bytes: env.parse_or("MORAG_MAX_OBJECT_BYTES", MAX_SINGLE_PUT_BYTES),
            target_policy: env.target_policy(),
            aws: AwsSettings::read(env),
        };
        if cfg.max_upload_bytes == 0 {
            env.invalid("MORAG_MAX_UPLOAD_BYTES must be greater than 0");
        }
        if cfg.max_object_bytes == 0 || cfg.max_object_bytes > MAX_SINGLE_PUT_BYTES {
            env.invalid(format!(
                "MORAG_MAX_OBJECT_BYTES must be from 1 to {MAX_SINGLE_PUT_BYTES} (one S3 PUT)"
            ));
        }
        cfg
    }
}

/// The status function.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub api: ApiSettings,
    /// `MORAG_CURSOR_SECRET` (at least 32 characters): seals pagination cursors.
    pub cursor_secret: SecretString,
    /// `MORAG_WEBHOOK_QUEUE_URL`: for redelivery.
    pub webhook_queue_url: String,
    /// `MORAG_SECRETS_KEY_ID`: the KMS key sealing signing secrets.
    pub secrets_key_id: String,
    /// `MORAG_ALLOW_HTTP_WEBHOOKS`, `MORAG_ALLOW_LOOPBACK_WEBHOOKS` (local
    /// mode only): what endpoint URLs may point at.
    pub target_policy: TargetPolicy,
    pub aws: AwsSettings,
}

impl FromEnv for StatusConfig {
    fn read(env: &mut EnvReader<'_>) -> Self {
        let secret = env.required("MORAG_CURSOR_SECRET");
        if !secret.is_empty() && secret.len() < 32 {
            env.invalid("MORAG_CURSOR_SECRET must be at least 32 characters");
        }
        Self {
            api: ApiSettings::read(env),
            cursor_secret: SecretString::from(secret),
            webhook_queue_url: env.required("MORAG_WEBHOOK_QUEUE_URL"),
            secrets_key_id: env.required("MORAG_SECRETS_KEY_ID"),
            target_policy: env.target_policy(),
            aws: AwsSettings::read(env),
        }
    }
}

/// How long history and ended tasks are kept.
fn read_retention(env: &mut EnvReader<'_>) -> Retention {
    let days = |d: u64| Duration::from_secs(d * 86_400);
    let history = env.parse_or("MORAG_HISTORY_TTL_DAYS", DEFAULT_HISTORY_TTL_DAYS);
    let task = env.parse_or("MORAG_TASK_TTL_DAYS", DEFAULT_TASK_TTL_DAYS);
    if history == 0 || task == 0 {
        env.invalid("MORAG_HISTORY_TTL_DAYS and MORAG_TASK_TTL_DAYS must be at least 1");
    }
    Retention {
        history: days(history),
        ended_task: days(task),
    }
}

/// The status-recorder function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// `MORAG_TABLE_NAME`
    pub table: String,
    /// `MORAG_STATUS_EVENTS_DLQ_URL`: where malformed and unknown-task events are parked.
    pub status_events_dlq_url: String,
    /// `MORAG_WEBHOOK_QUEUE_URL`: where planned webhook deliveries go.
    pub webhook_queue_url: String,
    /// `MORAG_HISTORY_TTL_DAYS` (default 7), `MORAG_TASK_TTL_DAYS` (default 30)
    pub retention: Retention,
    /// `MORAG_PUBLIC_API_URL`: the API's base URL, for the webhooks'
    /// `data.status_url`.
    pub public_api_url: String,
    pub aws: AwsSettings,
}

impl FromEnv for RecorderConfig {
    fn read(env: &mut EnvReader<'_>) -> Self {
        Self {
            table: env.required("MORAG_TABLE_NAME"),
            status_events_dlq_url: env.required("MORAG_STATUS_EVENTS_DLQ_URL"),
            webhook_queue_url: env.required("MORAG_WEBHOOK_QUEUE_URL"),
            retention: read_retention(env),
            public_api_url: env.public_api_url(),
            aws: AwsSettings::read(env),
        }
    }
}

/// The watchdog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// `MORAG_TABLE_NAME`
    pub table: String,
    /// `MORAG_PROCESSING_QUEUE_URL`: where orphaned jobs are sent again.
    pub processing_queue_url: String,
    /// `MORAG_PROCESSING_DLQ_URL`: dead-lettered jobs fail their task.
    pub processing_dlq_url: String,
    /// `MORAG_WEBHOOK_QUEUE_URL`: where unsent deliveries go.
    pub webhook_queue_url: String,
    /// `MORAG_WEBHOOK_DLQ_URL`: dead-lettered deliveries still `pending` end `dead`.
    pub webhook_dlq_url: String,
    /// `MORAG_WATCHDOG_TIME_BUDGET_SECONDS` (default 45, below the
    /// function's 60 s timeout): a run stops taking new work after it.
    pub time_budget: Duration,
    pub retention: Retention,
    /// `MORAG_PUBLIC_API_URL`, as the recorder's.
    pub public_api_url: String,
    pub aws: AwsSettings,
}

impl FromEnv for WatchdogConfig {
    fn read(env: &mut EnvReader<'_>) -> Self {
        let cfg = Self {
            table: env.required("MORAG_TABLE_NAME"),
            processing_queue_url: env.required("MORAG_PROCESSING_QUEUE_URL"),
            processing_dlq_url: env.required("MORAG_PROCESSING_DLQ_URL"),
            webhook_queue_url: env.required("MORAG_WEBHOOK_QUEUE_URL"),
            webhook_dlq_url: env.required("MORAG_WEBHOOK_DLQ_URL"),
            time_budget: Duration::from_secs(env.parse_or("MORAG_WATCHDOG_TIME_BUDGET_SECONDS", 45u64)),
            retention: read_retention(env),
            public_api_url: env.public_api_url(),
            aws: AwsSettings::read(env),
        };
        if cfg.time_budget.is_zero() {
            env.invalid("MORAG_WATCHDOG_TIME_BUDGET_SECONDS must be at least 1");
        }
        cfg
    }
}

/// The reference processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// `MORAG_STATUS_EVENTS_QUEUE_URL`: where it reports.
    pub status_events_queue_url: String,
    /// `MORAG_PROCESSING_DLQ_URL`: where malformed jobs are parked.
    pub processing_dlq_url: String,
    /// `MORAG_MAX_SOURCE_BYTES` (default 5 MiB): largest object or download.
    pub max_source_bytes: usize,
    /// `MORAG_FETCH_TIMEOUT_SECONDS` (default 10)
    pub fetch_timeout: Duration,
    /// `MORAG_CHUNK_CHARS` (default 1000): target chunk size.
    pub chunk_chars: usize,
    /// `MORAG_JOB_TIME_BUDGET_SECONDS` (default 45, below the processor's
    /// 60 s timeout): a job still running after it is reported `failed`.
    pub job_time_budget: Duration,
    /// `MORAG_ALLOW_HTTP_WEBHOOKS`, `MORAG_ALLOW_LOOPBACK_WEBHOOKS`: the same
    /// outbound policy as webhooks (local mode only).
    pub target_policy: TargetPolicy,
    pub aws: AwsSettings,
}

impl FromEnv for ProcessorConfig {
    fn read(env: &mut EnvReader<'_>) -> Self {
        let cfg = Self {
            status_events_queue_url: env.required("MORAG_STATUS_EVENTS_QUEUE_URL"),
            processing_dlq_url: env.required("MORAG_PROCESSING_DLQ_URL"),
            max_source_bytes: env.parse_or("MORAG_MAX_SOURCE_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            fetch_timeout: Duration::from_secs(env.parse_or("MORAG_FETCH_TIMEOUT_SECONDS", 10u64)),
            chunk_chars: env.parse_or("MORAG_CHUNK_CHARS", 1000usize),
            job_time_budget: Duration::from_secs(env.parse_or("MORAG_JOB_TIME_BUDGET_SECONDS", 45u64)),
            target_policy: env.target_policy(),
            aws: AwsSettings::read(env),
        };
        if cfg.chunk_chars < 100 {
            env.invalid("MORAG_CHUNK_CHARS must be at least 100");
        }
        if cfg.job_time_budget.is_zero() {
            env.invalid("MORAG_JOB_TIME_BUDGET_SECONDS must be at least 1");
        }
        cfg
    }
}

/// The webhook sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// `MORAG_TABLE_NAME`
    pub table: String,
    /// `MORAG_WEBHOOK_QUEUE_URL`: its own queue (for `ChangeMessageVisibility`).
    pub webhook_queue_url: String,
    /// `MORAG_WEBHOOK_DLQ_URL`: where malformed messages are parked.
    pub webhook_dlq_url: String,
    /// `MORAG_SECRETS_KEY_ID`: the KMS key sealing signing secrets.
    pub secrets_key_id: String,
    /// `MORAG_WEBHOOK_RETRY_SCHEDULE`: comma-separated seconds (default
    /// 5,300,1800,7200,18000,36000,36000); attempts = gaps + 1, counted in
    /// receives.
    pub schedule: RetrySchedule,
    /// `MORAG_WEBHOOK_CONNECT_TIMEOUT_SECONDS` (5), `MORAG_WEBHOOK_TIMEOUT_SECONDS` (15)
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// `MORAG_ALLOW_HTTP_WEBHOOKS`, `MORAG_ALLOW_LOOPBACK_WEBHOOKS` (local mode only)
    pub target_policy: TargetPolicy,
    /// `MORAG_ENDPOINT_FAILURE_WINDOW_SECONDS` (default 432,000: 5 days): how
    /// long a tenant endpoint may fail every attempt before it is disabled.
    pub endpoint_failure_window: Duration,
    /// `MORAG_HISTORY_TTL_DAYS` (default 7): how long an attempt's timeline
    /// entry is kept, as a history entry (`MORAG_TASK_TTL_DAYS` is unused).
    pub retention: Retention,
    pub aws: AwsSettings,
}

impl FromEnv for SenderConfig {
    fn read(env: &mut EnvReader<'_>) -> Self {
        Self {
            table: env.required("MORAG_TABLE_NAME"),
            webhook_queue_url: env.required("MORAG_WEBHOOK_QUEUE_URL"),
            webhook_dlq_url: env.required("MORAG_WEBHOOK_DLQ_URL"),
            secrets_key_id: env.required("MORAG_SECRETS_KEY_ID"),
            schedule: env.parse_or("MORAG_WEBHOOK_RETRY_SCHEDULE", RetrySchedule::default()),
            connect_timeout: Duration::from_secs(env.parse_or("MORAG_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5u64)),
            timeout: Duration::from_secs(env.parse_or("MORAG_WEBHOOK_TIMEOUT_SECONDS", 15u64)),
            target_policy: env.target_policy(),
            endpoint_failure_window: {
                let default = crate::domain::endpoint::DEFAULT_FAILURE_WINDOW.as_secs();
                let s: u64 = env.parse_or("MORAG_ENDPOINT_FAILURE_WINDOW_SECONDS", default);
                if s == 0 {
                    env.invalid("MORAG_ENDPOINT_FAILURE_WINDOW_SECONDS must be at least 1");
                }
                Duration::from_secs(s)
            },
            retention: read_retention(env),
            aws: AwsSettings::read(env),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn names_every_problem_at_once() {
        let err = IngestConfig::from_lookup(&lookup(&[
            ("MORAG_MAX_UPLOAD_BYTES", "lots"),
            ("MORAG_ALLOW_HTTP_WEBHOOKS", "maybe"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "MORAG_TABLE_NAME",
            "MORAG_UPLOADS_BUCKET",
            "MORAG_PROCESSING_QUEUE_URL",
            "MORAG_MAX_UPLOAD_BYTES",
            "MORAG_ALLOW_HTTP_WEBHOOKS",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }

    #[test]
    fn defaults_are_production_safe() {
        let cfg = IngestConfig::from_lookup(&lookup(&[
            ("MORAG_TABLE_NAME", "t"),
            ("MORAG_UPLOADS_BUCKET", "b"),
            ("MORAG_PROCESSING_QUEUE_URL", "https://sqs/q"),
        ]))
        .unwrap();
        assert_eq!(cfg.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
        assert_eq!(
            cfg.target_policy,
            TargetPolicy {
                allow_http: false,
                allow_loopback: false
            }
        );
        assert_eq!(cfg.api.auth_cache_ttl, Duration::from_secs(60));
        assert_eq!(cfg.aws.endpoint_url, None);
    }

    /// The loopback and plain-HTTP webhook switches and the endpoint
    /// override are for local runs: in Lambda they stop the function at
    /// cold start, named; under `sam local` or the project's emulator
    /// (`AWS_SAM_LOCAL=true`) and outside Lambda they work.
    #[test]
    fn local_only_settings_are_refused_in_lambda() {
        let base = [
            ("MORAG_TABLE_NAME", "t"),
            ("MORAG_UPLOADS_BUCKET", "b"),
            ("MORAG_PROCESSING_QUEUE_URL", "https://sqs/q"),
            ("MORAG_ALLOW_LOOPBACK_WEBHOOKS", "true"),
            ("MORAG_ALLOW_HTTP_WEBHOOKS", "1"),
            ("MORAG_AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            IngestConfig::from_lookup(&lookup(&pairs))
        };
        let err = with(&[("AWS_LAMBDA_FUNCTION_NAME", "morag-ingest")])
            .unwrap_err()
            .to_string();
        for name in [
            "MORAG_ALLOW_LOOPBACK_WEBHOOKS",
            "MORAG_ALLOW_HTTP_WEBHOOKS",
            "MORAG_AWS_ENDPOINT_URL",
        ] {
            assert!(err.contains(&format!("{name} is for local runs only")), "{err}");
        }
        // switched off is fine anywhere
        let mut off = base.to_vec();
        off.retain(|(k, _)| !k.starts_with("MORAG_ALLOW") && *k != "MORAG_AWS_ENDPOINT_URL");
        off.extend([
            ("MORAG_ALLOW_LOOPBACK_WEBHOOKS", "false"),
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
        ]);
        assert!(IngestConfig::from_lookup(&lookup(&off)).is_ok());
        let local = with(&[("AWS_LAMBDA_FUNCTION_NAME", "morag-ingest"), ("AWS_SAM_LOCAL", "true")]).unwrap();
        assert!(local.target_policy.allow_loopback && local.aws.endpoint_url.is_some());
        assert!(with(&[]).unwrap().target_policy.allow_loopback);
    }
}
