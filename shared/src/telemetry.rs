//! Logging: JSON lines when Lambda asks for them (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! which the template's `LoggingConfig` sets), level from
//! `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`. Spans carry `task_id`, `tenant` and
//! friends; payloads, keys and secrets are never logged.
//!
//! These are the logging variables Lambda itself defines, so they are read
//! here rather than through `config`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stdout (where Lambda collects
/// logs). Call once, first thing in `main`; a second call is a no-op.
pub fn init() {
    init_to(std::io::stdout);
}

/// Like `init`, writing to stderr: for the CLI, whose stdout is its answer.
pub fn init_stderr() {
    init_to(std::io::stderr);
}

fn init_to<W>(writer: fn() -> W)
where
    W: std::io::Write + 'static,
{
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    let _already_set = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}
