//! `make soak`: the system under load and faults on the local stack (see
//! `morag_tests::soak` and docs/RELIABILITY.md). `SOAK_TASKS` sets the size
//! (default 1,000); the emulator's endpoint comes in `MORAG_SOAK_ENDPOINT`.
//! Prints the report as Markdown and exits 1 on any loss.

use anyhow::{Context, Result};

use morag_tests::soak::{run, SoakConfig};

#[tokio::main]
async fn main() -> Result<()> {
    let endpoint = std::env::var("MORAG_SOAK_ENDPOINT").context("MORAG_SOAK_ENDPOINT (make soak sets it)")?;
    let tasks = match std::env::var("SOAK_TASKS") {
        Ok(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .context("SOAK_TASKS must be a whole number of tasks, at least 1")?,
        Err(_) => 1000,
    };
    let binaries = std::env::current_exe()?
        .parent()
        .context("the soak binary's directory")?
        .to_path_buf();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let report = run(SoakConfig::new(endpoint, binaries, tasks)).await?;
    println!("{}", report.markdown());
    if report.lost() > 0 || report.settled_after.is_none() {
        std::process::exit(1);
    }
    Ok(())
}
