//! `morag`: the local runner (`morag dev`, what `make dev` starts) and the
//! operator CLI (`morag keys ...`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::{Parser, Subcommand};
use tower::ServiceExt;

use morag_cli::{esm, keys, local};
use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::config::{
    ApiSettings, AwsSettings, IngestConfig, ProcessorConfig, RecorderConfig, SenderConfig, StatusConfig,
    DEFAULT_MAX_UPLOAD_BYTES,
};
use morag_shared::domain::TenantId;
use morag_shared::net::TargetPolicy;
use morag_shared::ports::Retention;
use morag_shared::webhook::RetrySchedule;

#[derive(Parser)]
#[command(name = "morag", about = "morag-status local runner and operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision local resources on an emulator and serve the HTTP functions.
    Dev {
        /// The emulator (moto server) endpoint.
        #[arg(long, env = "MORAG_AWS_ENDPOINT_URL")]
        endpoint: String,
        /// Where to serve the API.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Prefix of every local resource name.
        #[arg(long, default_value = "morag-local")]
        prefix: String,
        /// Tenant `local`'s webhook signing secret (`whsec_...`); generated and printed when unset.
        #[arg(long, env = "MORAG_LOCAL_WEBHOOK_SECRET")]
        webhook_secret: Option<String>,
        /// Webhook retry gaps in seconds, comma-separated (default 5,300,1800,7200,18000,36000,36000).
        #[arg(long, env = "MORAG_WEBHOOK_RETRY_SCHEDULE")]
        retry_schedule: Option<RetrySchedule>,
    },
    /// Tenants' webhook signing secrets.
    Webhooks {
        #[arg(long, env = "MORAG_TABLE_NAME")]
        table: String,
        #[arg(long, env = "MORAG_AWS_ENDPOINT_URL")]
        endpoint: Option<String>,
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Manage API keys (shown once, stored only as SHA-256 hashes).
    Keys {
        /// The table (the stack's `TableName` output).
        #[arg(long, env = "MORAG_TABLE_NAME")]
        table: String,
        /// An endpoint override (the emulator); unset for AWS.
        #[arg(long, env = "MORAG_AWS_ENDPOINT_URL")]
        endpoint: Option<String>,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Create or rotate a tenant's signing secret and print the new one once.
    /// With --overlap-hours, the previous secret keeps signing (a second
    /// signature) for that long.
    Secret {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long, default_value_t = 0)]
        overlap_hours: u32,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueueName {
    Webhook,
    StatusEvents,
    Processing,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key for a tenant and print it once.
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a tenant's keys (ids only).
    List {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Revoke a tenant's key by the id `list` shows.
    Revoke {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        key_id: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    morag_shared::telemetry::init();
    match Cli::parse().command {
        Command::Dev {
            endpoint,
            addr,
            prefix,
            webhook_secret,
            retry_schedule,
        } => {
            dev(
                endpoint,
                addr,
                &prefix,
                webhook_secret,
                retry_schedule.unwrap_or_default(),
            )
            .await
        }
        Command::Keys {
            table,
            endpoint,
            action,
        } => keys_command(table, endpoint, action).await,
        Command::Webhooks {
            table,
            endpoint,
            action,
        } => webhooks_command(table, endpoint, action).await,
        Command::Dlq { action } => dlq_command(action).await,
    }
}

/// A given URL, or the URL of the queue with this name.
async fn queue_url_of(sqs: &aws_sdk_sqs::Client, given: Option<String>, name: &str) -> Result<String> {
    match given {
        Some(url) => Ok(url),
        None => sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .with_context(|| format!("no queue {name}: pass --queue-url and --dlq-url (the stack outputs)"))?
            .queue_url
            .context("no queue url"),
    }
}

async fn dlq_command(action: DlqAction) -> Result<()> {
    let DlqAction::Redrive {
        queue,
        queue_url,
        dlq_url,
        prefix,
        table,
        endpoint,
    } = action;
    let sdk = match &endpoint {
        Some(ep) => morag_shared::aws::local(ep),
        None => morag_shared::aws::load(&AwsSettings::default()).await,
    };
    let sqs = morag_shared::aws::sqs(&sdk);
    let names = local::Names::with_prefix(&prefix);
    let (queue_name, dlq_name) = match queue {
        QueueName::Webhook => (names.webhook_queue.clone(), names.webhook_dlq.clone()),
        QueueName::StatusEvents => (names.status_events_queue.clone(), names.status_events_dlq.clone()),
        QueueName::Processing => (names.processing_queue.clone(), names.processing_dlq.clone()),
    };
    let queue_url = queue_url_of(&sqs, queue_url, &queue_name).await?;
    let dlq_url = queue_url_of(&sqs, dlq_url, &dlq_name).await?;
    let table = table.or_else(|| endpoint.as_ref().map(|_| names.table.clone()));
    let done = match queue {
        QueueName::Webhook => {
            let table = table.context("--table (or MORAG_TABLE_NAME) is needed to redrive webhooks")?;
            let store = DynamoStore::new(morag_shared::aws::dynamodb(&sdk), table);
            let q = morag_shared::adapters::sqs::SqsWebhookQueue::new(sqs.clone(), queue_url.clone());
            morag_cli::dlq::redrive_webhooks(&sqs, &dlq_url, &store, &q).await?
        }
        QueueName::StatusEvents | QueueName::Processing => {
            morag_cli::dlq::redrive_plain(&sqs, &queue_url, &dlq_url).await?
        }
    };
    if done.move_task_started {
        println!("started an SQS message move task from {dlq_url} to {queue_url}");
    } else {
        println!(
            "moved {} message(s) back; dropped {} without a delivery",
            done.moved, done.dropped
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum DlqAction {
    /// Move parked messages back to their queue (webhooks: a fresh attempt cycle each).
    Redrive {
        #[arg(long, value_enum)]
        queue: QueueName,
        /// The queue (stack output ...QueueUrl); found by name with --prefix when omitted.
        #[arg(long)]
        queue_url: Option<String>,
        /// Its dead-letter queue (stack output ...DLQUrl); found by name with --prefix when omitted.
        #[arg(long)]
        dlq_url: Option<String>,
        /// Resource name prefix of a local stack (`make dev` uses morag-local).
        #[arg(long, default_value = "morag-local")]
        prefix: String,
        /// The table (webhook redrive only).
        #[arg(long, env = "MORAG_TABLE_NAME")]
        table: Option<String>,
        #[arg(long, env = "MORAG_AWS_ENDPOINT_URL")]
        endpoint: Option<String>,
    },
}

async fn webhooks_command(table: String, endpoint: Option<String>, action: WebhooksAction) -> Result<()> {
    let sdk = match &endpoint {
        Some(ep) => morag_shared::aws::local(ep),
        None => morag_shared::aws::load(&AwsSettings::default()).await,
    };
    let store = DynamoStore::new(morag_shared::aws::dynamodb(&sdk), table);
    match action {
        WebhooksAction::Secret { tenant, overlap_hours } => {
            let secret = morag_shared::webhook::SigningSecret::generate();
            let until = (overlap_hours > 0)
                .then(|| morag_shared::time::now() + chrono::Duration::hours(i64::from(overlap_hours)));
            morag_shared::ports::SecretStore::rotate_secret(&store, &tenant, &secret, until).await?;
            eprintln!("New signing secret for tenant {tenant} (shown only now):");
            println!("{secret}");
        }
    }
    Ok(())
}

async fn keys_command(table: String, endpoint: Option<String>, action: KeysAction) -> Result<()> {
    let sdk = match &endpoint {
        Some(ep) => morag_shared::aws::local(ep),
        None => morag_shared::aws::load(&AwsSettings::default()).await,
    };
    let store = DynamoStore::new(morag_shared::aws::dynamodb(&sdk), table);
    match action {
        KeysAction::Create { tenant, description } => {
            let (key, record) = keys::create(&store, &tenant, &description).await?;
            eprintln!(
                "Created key {} for tenant {tenant}. It is shown only now:",
                record.key_hash.key_id()
            );
            println!("{key}");
        }
        KeysAction::List { tenant } => {
            for k in morag_shared::ports::KeyStore::list_keys(&store, &tenant).await? {
                println!(
                    "{}\t{}\t{}",
                    k.key_hash.key_id(),
                    k.created_at.to_rfc3339(),
                    k.description
                );
            }
        }
        KeysAction::Revoke { tenant, key_id } => {
            let k = keys::revoke(&store, &tenant, &key_id).await?;
            println!("revoked {} (tenant {tenant})", k.key_hash.key_id());
        }
    }
    Ok(())
}

#[derive(Clone)]
struct Apps {
    ingest: Router,
    status: Router,
}

/// Routes like the API Gateway does: by path, to one function or the other.
async fn dispatch(State(apps): State<Apps>, request: Request) -> Response {
    let app = if request.uri().path().starts_with("/api/v1/ingest/") {
        apps.ingest
    } else {
        apps.status
    };
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
    .into_response()
}

async fn dev(
    endpoint: String,
    addr: SocketAddr,
    prefix: &str,
    webhook_secret: Option<String>,
    schedule: RetrySchedule,
) -> Result<()> {
    let sdk = morag_shared::aws::local(&endpoint);
    let names = local::Names::with_prefix(prefix);
    let resources = local::provision_with(&sdk, &names, schedule.attempts())
        .await
        .with_context(|| format!("provisioning local resources on {endpoint}"))?;
    let store = Arc::new(DynamoStore::new(morag_shared::aws::dynamodb(&sdk), &names.table));
    local::seed_local_key(&store).await?;
    let (secret, generated) = match webhook_secret {
        Some(s) => {
            morag_shared::webhook::SigningSecret::parse(&s)
                .map_err(|e| anyhow::anyhow!("MORAG_LOCAL_WEBHOOK_SECRET: {e}"))?;
            (s, false)
        }
        None => (morag_shared::webhook::SigningSecret::generate(), true),
    };
    morag_shared::ports::SecretStore::rotate_secret(store.as_ref(), &"local".parse()?, &secret, None).await?;

    let aws = AwsSettings {
        endpoint_url: Some(endpoint.clone()),
    };
    let api = ApiSettings {
        table: names.table.clone(),
        auth_cache_ttl: Duration::from_secs(60),
    };
    let ingest_cfg = IngestConfig {
        api: api.clone(),
        uploads_bucket: names.bucket.clone(),
        processing_queue_url: resources.processing_queue_url.clone(),
        max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        target_policy: TargetPolicy {
            allow_http: true,
            allow_loopback: true,
        },
        aws: aws.clone(),
    };
    let status_cfg = StatusConfig {
        api,
        cursor_secret: morag_shared::config::SecretString::from(morag_shared::auth::generate_key()),
        webhook_queue_url: resources.webhook_queue_url.clone(),
        aws,
    };
    let apps = Apps {
        ingest: morag_ingest::router(Arc::new(morag_ingest::Ingest::from_sdk(&sdk, &ingest_cfg))),
        status: morag_status::router(Arc::new(morag_status::Status::from_sdk(&sdk, &status_cfg))),
    };
    let app = Router::new().fallback(dispatch).with_state(apps);

    // the SQS functions, fed by local event-source mappings
    let recorder = Arc::new(morag_recorder::Recorder::from_sdk(
        &sdk,
        &RecorderConfig {
            table: names.table.clone(),
            status_events_dlq_url: resources.status_events_dlq_url.clone(),
            webhook_queue_url: resources.webhook_queue_url.clone(),
            retention: Retention {
                history: Duration::from_secs(7 * 86_400),
                ended_task: Duration::from_secs(30 * 86_400),
            },
            aws: AwsSettings {
                endpoint_url: Some(endpoint.clone()),
            },
        },
    ));
    let processor = Arc::new(morag_processor::Processor::from_sdk(
        &sdk,
        &ProcessorConfig {
            status_events_queue_url: resources.status_events_queue_url.clone(),
            processing_dlq_url: resources.processing_dlq_url.clone(),
            max_source_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            fetch_timeout: Duration::from_secs(10),
            chunk_chars: 1000,
            target_policy: TargetPolicy {
                allow_http: true,
                allow_loopback: true,
            },
            aws: AwsSettings {
                endpoint_url: Some(endpoint.clone()),
            },
        },
    ));
    let sqs = morag_shared::aws::sqs(&sdk);
    tokio::spawn(esm::run(
        sqs.clone(),
        resources.processing_queue_url.clone(),
        "processor",
        move |batch| {
            let processor = processor.clone();
            async move { processor.handle(batch).await }
        },
    ));
    tokio::spawn(esm::run(
        sqs.clone(),
        resources.status_events_queue_url.clone(),
        "status-recorder",
        move |batch| {
            let recorder = recorder.clone();
            async move { recorder.handle(batch).await }
        },
    ));
    let sender = Arc::new(morag_webhook_sender::Sender::from_sdk(
        &sdk,
        &SenderConfig {
            table: names.table.clone(),
            webhook_queue_url: resources.webhook_queue_url.clone(),
            webhook_dlq_url: resources.webhook_dlq_url.clone(),
            schedule: schedule.clone(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            target_policy: TargetPolicy {
                allow_http: true,
                allow_loopback: true,
            },
            aws: AwsSettings {
                endpoint_url: Some(endpoint.clone()),
            },
        },
    ));
    tokio::spawn(esm::run(
        sqs,
        resources.webhook_queue_url.clone(),
        "webhook-sender",
        move |batch| {
            let sender = sender.clone();
            async move { sender.handle(batch).await }
        },
    ));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let base = format!("http://{addr}");
    println!(
        "\nmorag-status is running on {base} (emulator {endpoint}, table {table}, bucket {bucket})\n\
         Local API key: test-api-key (tenant local; local mode only)\n\n\
         Try:\n\
         curl -X POST {base}/api/v1/ingest/file -H \"Authorization: Bearer test-api-key\" -F source_type=document -F file=@README.md -F webhook_url=http://127.0.0.1:8001/webhook\n\
         curl {base}/api/v1/status/{{task_id}} -H \"Authorization: Bearer test-api-key\"\n\
         curl {base}/api/v1/status/{{task_id}}/history -H \"Authorization: Bearer test-api-key\"\n\
         curl \"{base}/api/v1/status/events/recent?hours=1\" -H \"Authorization: Bearer test-api-key\"\n\
         curl {base}/api/v1/tasks -H \"Authorization: Bearer test-api-key\"\n\n\
         More API keys for this local stack:\n\
         MORAG_AWS_ENDPOINT_URL={endpoint} MORAG_TABLE_NAME={table} target/debug/morag keys create --tenant acme\n\n\
         Webhooks are signed with {secret_note}\n\
         Retry schedule (s): {gaps:?}; webhook DLQ after {attempts} attempts.\n\n\
         Ctrl-C stops everything.",
        secret_note = if generated { format!("this generated secret (set MORAG_LOCAL_WEBHOOK_SECRET to choose one): {secret}") } else { "MORAG_LOCAL_WEBHOOK_SECRET.".to_owned() },
        gaps = schedule.gaps().iter().map(|g| g.as_secs()).collect::<Vec<_>>(),
        attempts = schedule.attempts(),
        table = names.table,
        bucket = names.bucket,
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
