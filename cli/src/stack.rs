//! The local stack: `template.yaml` deployed as a CloudFormation stack on the
//! emulator (moto server) by `scripts/local_stack.py`, and read back: the
//! stack's outputs, each function's environment and its event source
//! mappings. `morag dev` and the integration tests build every function's
//! configuration from here, so the shapes, names and settings they run
//! against are the template's own: a resource or variable changed in the
//! template is what the local stack and the tests get, and a function whose
//! template environment does not satisfy its `Config` fails to start here as
//! it would on AWS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::config::FromEnv;
use morag_shared::domain::{ApiKeyRecord, KeyHash};
use morag_shared::ports::KeyStore;

/// The key seeded for tenant `local` by `morag dev`, never by a deployment.
pub const LOCAL_DEV_KEY: &str = "test-api-key";
pub const LOCAL_DEV_TENANT: &str = "local";

/// The template's functions, by logical id.
pub const INGEST: &str = "IngestFunction";
pub const STATUS: &str = "StatusFunction";
pub const RECORDER: &str = "RecorderFunction";
pub const PROCESSOR: &str = "ProcessorFunction";
pub const WEBHOOK_SENDER: &str = "WebhookSenderFunction";
pub const WATCHDOG: &str = "WatchdogFunction";

/// An SQS event source of a function, as its event source mapping says.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueEvent {
    pub queue_url: String,
    pub batch_size: i32,
    pub function_response_types: Vec<String>,
}

/// An HTTP API route of a function, as the template declares it
/// (`/api/v1/status/{task_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub method: String,
    pub path: String,
}

impl Route {
    /// Whether `path` is this route's path (`{name}` matches one segment).
    pub fn matches_path(&self, path: &str) -> bool {
        let (mut want, mut got) = (self.path.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w == g || (w.starts_with('{') && w.ends_with('}') && !g.is_empty()) => {}
                _ => return false,
            }
        }
    }
}

/// A function of the stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    /// Its environment, as the template resolves it.
    pub env: BTreeMap<String, String>,
    pub events: Vec<QueueEvent>,
    /// Its HTTP API routes (HTTP functions only).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Its `MemorySize` in MB (what Lambda bills GB-seconds at).
    #[serde(default)]
    pub memory_mb: u32,
}

/// A deployed local stack.
#[derive(Debug, Clone, Deserialize)]
pub struct LocalStack {
    pub stack: String,
    pub outputs: BTreeMap<String, String>,
    pub functions: BTreeMap<String, Function>,
}

/// The repository the binary was built from (the template and the script);
/// `MORAG_REPO_ROOT` overrides it.
pub fn repo_root() -> PathBuf {
    std::env::var_os("MORAG_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")))
}

/// The project venv's Python (`make dev` and `make test` install it);
/// `MORAG_PYTHON` overrides it.
pub fn python() -> PathBuf {
    std::env::var_os("MORAG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

impl LocalStack {
    /// Deploys `template.yaml` as stack `name` on the emulator at `endpoint`,
    /// with template parameters `params`.
    pub async fn deploy(endpoint: &str, name: &str, params: &[(&str, String)]) -> Result<Self> {
        let root = repo_root();
        let python = python();
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(root.join("scripts/local_stack.py"))
            .args(["--endpoint", endpoint, "--stack", name]);
        for (key, value) in params {
            command.arg("--param").arg(format!("{key}={value}"));
        }
        let out = command.output().await.with_context(|| {
            format!(
                "running {} scripts/local_stack.py (make dev / make test install it)",
                python.display()
            )
        })?;
        if !out.status.success() {
            bail!(
                "deploying template.yaml as stack {name} on {endpoint} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("reading the local stack's description")
    }

    /// The function whose HTTP API route has `path`, as API Gateway routes.
    pub fn function_for_path(&self, path: &str) -> Option<&str> {
        self.functions
            .iter()
            .find(|(_, f)| f.routes.iter().any(|r| r.matches_path(path)))
            .map(|(id, _)| id.as_str())
    }

    /// A stack output (`TableName`, `WebhookQueueUrl`, ...).
    pub fn output(&self, key: &str) -> Result<&str> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("stack {} has no output {key}", self.stack))
    }

    pub fn function(&self, logical_id: &str) -> Result<&Function> {
        self.functions
            .get(logical_id)
            .with_context(|| format!("stack {} has no function {logical_id}", self.stack))
    }

    /// The function's one SQS event source.
    pub fn queue_event(&self, logical_id: &str) -> Result<&QueueEvent> {
        match self.function(logical_id)?.events.as_slice() {
            [one] => Ok(one),
            other => bail!("{logical_id} has {} event source mappings, expected one", other.len()),
        }
    }

    /// A function's configuration: its environment from the stack, with
    /// `overrides` on top (local-mode settings the template leaves to the
    /// deployment, such as the emulator endpoint). A value the emulator could
    /// not resolve (a `{{resolve:...}}` reference) must be overridden.
    pub fn config<C: FromEnv>(&self, logical_id: &str, overrides: &[(&str, String)]) -> Result<C> {
        let env = self.env(logical_id, overrides)?;
        C::from_lookup(&|name| env.get(name).cloned()).with_context(|| format!("{logical_id}'s environment"))
    }

    /// A function's environment as a process gets it (the binaries run
    /// through the Runtime API emulator): the stack's, with `overrides`.
    pub fn env(&self, logical_id: &str, overrides: &[(&str, String)]) -> Result<BTreeMap<String, String>> {
        let mut env = self.function(logical_id)?.env.clone();
        for (k, v) in overrides {
            env.insert((*k).to_owned(), v.clone());
        }
        if let Some((k, _)) = env.iter().find(|(_, v)| v.contains("{{resolve:")) {
            bail!("{logical_id}: {k} is a dynamic reference the emulator cannot resolve; override it");
        }
        Ok(env)
    }
}

/// Settings every local function gets on top of the template: the emulator
/// endpoint, and (with `local_targets`) http and loopback webhook targets and
/// sources, for receivers on 127.0.0.1.
pub fn local_overrides(endpoint: &str, local_targets: bool) -> Vec<(&'static str, String)> {
    let mut v = vec![("MORAG_AWS_ENDPOINT_URL", endpoint.to_owned())];
    if local_targets {
        v.push(("MORAG_ALLOW_HTTP_WEBHOOKS", "true".to_owned()));
        v.push(("MORAG_ALLOW_LOOPBACK_WEBHOOKS", "true".to_owned()));
    }
    v
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

/// The URL of the queue with logical id `logical_id` in stack `stack`, found
/// by name: CloudFormation (and moto's) name a queue without a `QueueName`
/// `{stack}-{logical id}-{suffix}`.
pub async fn queue_url_by_stack(sqs: &aws_sdk_sqs::Client, stack: &str, logical_id: &str) -> Result<String> {
    let prefix = format!("{stack}-{logical_id}-");
    let urls = sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .context("ListQueues")?
        .queue_urls
        .unwrap_or_default();
    match urls.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no queue named {prefix}*: pass its URL (the stack's outputs)"),
        _ => bail!("several queues named {prefix}*: pass its URL (the stack's outputs)"),
    }
}

/// The stack a table of this template belongs to: CloudFormation names it
/// `{stack}-Table-{suffix}` (`morag-local` for any other name).
pub fn stack_of_table(table: &str) -> &str {
    table.rsplit_once("-Table-").map_or("morag-local", |(stack, _)| stack)
}

/// The alias the template gives stack `stack`'s signing-secrets key.
pub fn secrets_key_alias(stack: &str) -> String {
    format!("alias/{stack}-webhook-secrets")
}

/// The name of stack `stack`'s table (`{stack}-Table-{suffix}`).
pub async fn table_by_stack(ddb: &aws_sdk_dynamodb::Client, stack: &str) -> Result<String> {
    let prefix = format!("{stack}-Table-");
    let mut pages = ddb.list_tables().into_paginator().items().send();
    let mut found = Vec::new();
    while let Some(name) = pages.try_next().await.context("ListTables")? {
        if name.starts_with(&prefix) {
            found.push(name);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no table named {prefix}*: pass --table (the stack's TableName output)"),
        _ => bail!("several tables named {prefix}*: pass --table"),
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn a_tables_stack_comes_from_its_name() {
        assert_eq!(super::stack_of_table("prod-morag-Table-1AB2C3"), "prod-morag");
        assert_eq!(super::stack_of_table("custom"), "morag-local");
        assert_eq!(
            super::secrets_key_alias("prod-morag"),
            "alias/prod-morag-webhook-secrets"
        );
    }

    #[test]
    fn route_paths_match_by_segment() {
        let r = Route {
            method: "GET".into(),
            path: "/api/v1/status/{task_id}/history".into(),
        };
        assert!(r.matches_path("/api/v1/status/abc/history"));
        assert!(!r.matches_path("/api/v1/status/abc"));
        assert!(!r.matches_path("/api/v1/status//history"));
        assert!(!r.matches_path("/api/v1/status/abc/history/x"));
    }
}
