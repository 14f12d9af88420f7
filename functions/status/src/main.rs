//! Lambda entry point: wiring only.

use std::sync::Arc;

use morag_shared::config::{FromEnv, StatusConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    morag_shared::telemetry::init();
    let cfg = StatusConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let state = Arc::new(morag_status::wiring::from_config(&cfg).await);
    lambda_http::run(morag_status::router(state)).await
}
