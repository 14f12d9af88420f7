//! Lambda entry point: wiring only. Triggered by the schedule (EventBridge);
//! the event's content does not matter, the clock does.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use morag_shared::config::{FromEnv, WatchdogConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    morag_shared::telemetry::init();
    let cfg = WatchdogConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let sdk = morag_shared::adapters::aws::load(&cfg.aws).await;
    let watchdog = Arc::new(morag_watchdog::wiring::build(&sdk, &cfg));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let watchdog = watchdog.clone();
        async move {
            let report = watchdog.run(morag_shared::time::now()).await;
            // counts as CloudWatch metrics (Embedded Metric Format on stdout)
            println!("{}", report.emf());
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
