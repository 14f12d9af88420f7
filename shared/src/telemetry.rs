//! Logging: JSON lines when Lambda asks for them (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! which the template's `LoggingConfig` sets), level from
//! `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`. Spans carry `task_id`, `tenant` and
//! friends; payloads, keys and secrets are never logged.
//!
//! These are the logging variables Lambda itself defines, so they are read
//! here rather than through `config`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber, writing to stdout (where Lambda collects
/// logs). Call once, first thing in `main`; a second call is a no-op.
pub fn init() {
    init_to(std::io::stdout);
}

/// Like `init`, writing to stderr: for the CLI, whose stdout is its answer.
pub fn init_stderr() {
    init_to(std::io::stderr);
}

/// One CloudWatch Embedded Metric Format line (namespace `MoRAG/Status`,
/// dimension `Function`): printed on stdout, the counts become metrics
/// without an API call.
pub fn emf(function: &str, counts: &[(&str, u32)]) -> String {
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": crate::time::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "MoRAG/Status",
                "Dimensions": [["Function"]],
                "Metrics": counts
                    .iter()
                    .map(|(n, _)| serde_json::json!({"Name": n, "Unit": "Count"}))
                    .collect::<Vec<_>>(),
            }]
        },
        "Function": function,
    });
    for (n, v) in counts {
        doc[*n] = (*v).into();
    }
    doc.to_string()
}

/// The filter a level setting asks for: a level (`info`, Lambda's upper-case
/// `DEBUG`, its `FATAL` read as `error`) or `RUST_LOG`'s `target=level,...`
/// list, where targets not named log at `info`; anything unreadable is
/// `info`. (`Targets` rather than `EnvFilter`:
/// the same syntax without span and field filters, and without a regex
/// engine in every binary.)
pub fn filter(setting: &str) -> Targets {
    let setting = setting.trim().to_ascii_lowercase().replace("fatal", "error");
    let targets: Targets = setting.parse().unwrap_or_default();
    match targets.default_level() {
        Some(_) => targets,
        None => targets.with_default(tracing::Level::INFO),
    }
}

fn init_to<W>(writer: fn() -> W)
where
    W: std::io::Write + 'static,
{
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let layer = tracing_subscriber::fmt::layer().with_target(false).with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter(&level));
    let _already_set = if json {
        let layer = layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false);
        registry.with(layer).try_init()
    } else {
        registry.with(layer.with_ansi(false)).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::filter;
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn levels_come_from_lambda_or_rust_log() {
        let at = |setting: &str, target: &str, level: Level| filter(setting).would_enable(target, &level);
        assert!(at("DEBUG", "morag_shared", Level::DEBUG));
        assert!(!at("INFO", "morag_shared", Level::DEBUG));
        assert!(at("FATAL", "x", Level::ERROR) && !at("FATAL", "x", Level::WARN));
        assert!(at(
            "warn,morag_shared::outbox=trace",
            "morag_shared::outbox",
            Level::TRACE
        ));
        assert!(!at(
            "warn,morag_shared::outbox=trace",
            "morag_shared::batch",
            Level::INFO
        ));
        assert!(at("morag_shared=debug", "morag_shared", Level::DEBUG) && at("morag_shared=debug", "x", Level::INFO));
        assert_eq!(filter("no such level!").default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter("=?").default_level(), Some(LevelFilter::INFO));
    }
}
