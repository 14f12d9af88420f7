//! Lambda entry point: wiring only.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use morag_shared::config::{FromEnv, RecorderConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    morag_shared::telemetry::init();
    let cfg = RecorderConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let sdk = morag_shared::adapters::aws::load(&cfg.aws).await;
    let recorder = Arc::new(morag_recorder::wiring::build(&sdk, &cfg));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let recorder = recorder.clone();
        async move {
            let (response, stats) = recorder.handle_with_stats(event.payload).await;
            // counts as CloudWatch metrics (Embedded Metric Format on stdout)
            println!("{}", stats.emf());
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
