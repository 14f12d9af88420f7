//! Lambda entry point: wiring only.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use morag_shared::config::{FromEnv, SenderConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    morag_shared::telemetry::init();
    let cfg = SenderConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let sdk = morag_shared::adapters::aws::load(&cfg.aws).await;
    let sender = Arc::new(
        morag_webhook_sender::wiring::build(&sdk, &cfg).inspect_err(|e| tracing::error!(error = %e, "cannot start"))?,
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let sender = sender.clone();
        async move { Ok::<_, lambda_runtime::Error>(sender.handle(event.payload).await) }
    }))
    .await
}
