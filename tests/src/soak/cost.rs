//! What a soak costs on AWS: the emulator's meter (requests by service and
//! operation, DynamoDB request units; `scripts/moto_meter.py`) and the
//! functions' invocations and billed time, at us-east-1 on-demand list prices.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;

/// us-east-1 on-demand list prices in USD, as published on the services'
/// pricing pages (not re-fetched from this machine, which has no web access).
pub mod prices {
    /// When these prices were written down.
    pub const AS_OF: &str = "2026-11-30 (DynamoDB's since its 2024-11-01 on-demand price cut)";
    /// Lambda, per request.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// Lambda on arm64 (the template's architecture), per GB-second.
    pub const LAMBDA_GB_SECOND_ARM64: f64 = 0.0000133334;
    /// DynamoDB on-demand, per write request unit.
    pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand, per read request unit.
    pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
    /// SQS standard queue, per request (each 64 KB of payload is one).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// API Gateway HTTP API, per request (first 300 million a month).
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
    /// S3 Standard, per PUT/POST/LIST request and per GET/HEAD request.
    pub const S3_PUT: f64 = 0.005 / 1e3;
    pub const S3_GET: f64 = 0.0004 / 1e3;
}

/// The emulator meter's counts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metered {
    pub requests: BTreeMap<String, f64>,
    pub read_units: BTreeMap<String, f64>,
    pub write_units: BTreeMap<String, f64>,
}

/// Operations only the soak's harness makes (not the system's cost).
const HARNESS_ONLY: [&str; 3] = [
    "sqs.GetQueueAttributes",
    "sqs.SetQueueAttributes",
    "sqs.ReceiveMessage (empty)",
];

fn meter_url(endpoint: &str) -> String {
    format!("{}/_morag/meter", endpoint.trim_end_matches('/'))
}

/// Resets the meter; `false` when the emulator has none (MORAG_METER unset).
pub async fn reset(endpoint: &str) -> Result<bool> {
    let res = reqwest::Client::new().delete(meter_url(endpoint)).send().await?;
    Ok(res.status().is_success())
}

pub async fn read(endpoint: &str) -> Result<Option<Metered>> {
    let res = reqwest::get(meter_url(endpoint)).await?;
    if !res.status().is_success() {
        return Ok(None);
    }
    Ok(Some(res.json().await?))
}

/// One function's share: invocations and billed time.
#[derive(Debug, Clone)]
pub struct FunctionUse {
    pub name: String,
    pub invocations: usize,
    pub busy_s: f64,
    pub memory_mb: u32,
}

/// Cost per task, itemized.
#[derive(Debug, Clone)]
pub struct Cost {
    pub tasks: usize,
    /// (item, count per task, USD per million tasks)
    pub items: Vec<(String, f64, f64)>,
}

impl Cost {
    pub fn per_million(&self) -> f64 {
        self.items.iter().map(|(_, _, usd)| usd).sum()
    }

    pub fn compute(tasks: usize, metered: &Metered, functions: &[FunctionUse]) -> Self {
        let n = tasks.max(1) as f64;
        let mut items = Vec::new();
        let mut push = |item: String, total: f64, unit_price: f64| {
            items.push((item, total / n, total / n * unit_price * 1e6));
        };
        // one HTTP API request per task (its ingest); status reads are the client's choice
        push(
            "API Gateway HTTP API: requests (ingest)".into(),
            n,
            prices::HTTP_API_REQUEST,
        );
        let mut by_function: BTreeMap<String, FunctionUse> = BTreeMap::new();
        for f in functions {
            let base = f
                .name
                .rsplit_once('-')
                .filter(|(_, i)| i.parse::<u32>().is_ok())
                .map_or(f.name.as_str(), |(b, _)| b);
            let entry = by_function.entry(base.to_owned()).or_insert(FunctionUse {
                name: base.to_owned(),
                invocations: 0,
                busy_s: 0.0,
                memory_mb: f.memory_mb,
            });
            entry.invocations += f.invocations;
            entry.busy_s += f.busy_s;
        }
        for f in by_function.values() {
            push(
                format!("Lambda {}: invocations", f.name),
                f.invocations as f64,
                prices::LAMBDA_REQUEST,
            );
            push(
                format!("Lambda {}: GB-seconds at {} MB", f.name, f.memory_mb),
                f.busy_s * f64::from(f.memory_mb) / 1024.0,
                prices::LAMBDA_GB_SECOND_ARM64,
            );
        }
        for (op, count) in &metered.requests {
            if HARNESS_ONLY.contains(&op.as_str()) || *count == 0.0 {
                continue;
            }
            if let Some(rest) = op.strip_prefix("dynamodb.") {
                let write = metered.write_units.get(op).copied().unwrap_or(0.0);
                let read = metered.read_units.get(op).copied().unwrap_or(0.0);
                if write > 0.0 {
                    push(
                        format!("DynamoDB {rest}: write units ({} requests/task)", fmt(count / n)),
                        write,
                        prices::DYNAMODB_WRITE_UNIT,
                    );
                }
                if read > 0.0 {
                    push(
                        format!("DynamoDB {rest}: read units ({} requests/task)", fmt(count / n)),
                        read,
                        prices::DYNAMODB_READ_UNIT,
                    );
                }
            } else if let Some(rest) = op.strip_prefix("sqs.") {
                push(format!("SQS {rest}"), *count, prices::SQS_REQUEST);
            } else if let Some(rest) = op.strip_prefix("s3.") {
                let price = if rest.starts_with("GET") || rest.starts_with("HEAD") {
                    prices::S3_GET
                } else {
                    prices::S3_PUT
                };
                push(format!("S3 {rest}"), *count, price);
            }
        }
        Self { tasks, items }
    }

    pub fn markdown(&self) -> String {
        let mut out = vec![
            format!("| per task ({} tasks) | count | USD per million tasks |", self.tasks),
            "|---|---|---|".to_owned(),
        ];
        for (item, count, usd) in &self.items {
            out.push(format!("| {item} | {} | {usd:.2} |", fmt(*count)));
        }
        out.push(format!("| **total** | | **{:.2}** |", self.per_million()));
        out.join("\n")
    }
}

fn fmt(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
