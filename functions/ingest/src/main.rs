//! Lambda entry point: wiring only.

use std::sync::Arc;

use morag_shared::config::{FromEnv, IngestConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    morag_shared::telemetry::init();
    let cfg = IngestConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let state = Arc::new(morag_ingest::wiring::from_config(&cfg).await);
    lambda_http::run(morag_ingest::router(state)).await
}
