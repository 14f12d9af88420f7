//! `morag`: the local runner (`morag dev`, what `make dev` starts) and the
//! operator CLI (`morag keys ...`, `morag webhooks secret`, `morag dlq redrive`).
//! `--table` and `--endpoint` are global: they go before or after the
//! subcommand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::{Parser, Subcommand};
use tower::ServiceExt;

use morag_cli::stack::{self, LocalStack, INGEST, PROCESSOR, RECORDER, STATUS, WATCHDOG, WEBHOOK_SENDER};
use morag_cli::{esm, keys};
use morag_shared::adapters::aws::{self, SdkConfig};
use morag_shared::adapters::dynamodb::DynamoStore;
use morag_shared::adapters::kms::KmsCipher;
use morag_shared::adapters::sqs::SqsQueue;
use morag_shared::config::{
    AwsSettings, IngestConfig, ProcessorConfig, RecorderConfig, SenderConfig, StatusConfig, WatchdogConfig,
};
use morag_shared::domain::delivery::{RetrySchedule, SigningSecret};
use morag_shared::domain::keys::generate_key;
use morag_shared::domain::TenantId;
use morag_shared::ports::{KeyStore, SecretStore};

#[derive(Parser)]
#[command(name = "morag", about = "morag-status local runner and operator CLI")]
struct Cli {
    /// The table (the stack's `TableName` output).
    #[arg(long, global = true, env = "MORAG_TABLE_NAME")]
    table: Option<String>,
    /// An endpoint override (the local emulator); unset for AWS.
    #[arg(long, global = true, env = "MORAG_AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
    /// The KMS key that seals signing secrets (the stack's
    /// `SigningSecretsKeyArn` output); default `alias/{stack}-webhook-secrets`,
    /// the alias the template gives the key of the table's stack.
    #[arg(long, global = true, env = "MORAG_SECRETS_KEY_ID")]
    secrets_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy template.yaml on the emulator as a local stack and run every
    /// function against it: the API on --addr, the SQS functions from the
    /// stack's event source mappings.
    Dev {
        /// Where to serve the API.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// The local stack's name (every resource name starts with it).
        #[arg(long, alias = "prefix", default_value = "morag-local")]
        stack: String,
        /// Tenant `local`'s webhook signing secret (`whsec_...`); generated and printed when unset.
        #[arg(long, env = "MORAG_LOCAL_WEBHOOK_SECRET")]
        webhook_secret: Option<String>,
        /// Webhook retry gaps in seconds, comma-separated (default 5,300,1800,7200,18000,36000,36000).
        #[arg(long, env = "MORAG_WEBHOOK_RETRY_SCHEDULE")]
        retry_schedule: Option<RetrySchedule>,
    },
    /// Tenants' webhook signing secrets.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Submit a file of any size: upload it straight to S3 (with a progress
    /// bar), then make it a task; prints the task id and its status URL.
    Ingest {
        file: std::path::PathBuf,
        /// document, text, audio, video, image, web or youtube.
        #[arg(long, default_value = "document")]
        source_type: String,
        /// Overrides the type guessed from the extension.
        #[arg(long)]
        content_type: Option<String>,
        #[arg(long)]
        webhook_url: Option<String>,
        /// A JSON object.
        #[arg(long)]
        metadata: Option<String>,
        /// Then follow the task as `morag watch` does (and exit as it does).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        follow: Follow,
        #[command(flatten)]
        api: Api,
    },
    /// Follow a task until it ends: its progress and message, its events
    /// as they come, its webhooks' outcomes. Exits 0 when it completes, 1
    /// when it fails, 2 when it stalls or --timeout-s passes, 3 when it
    /// cannot watch (a wrong key, an unknown task, the API unreachable).
    Watch {
        task_id: String,
        #[command(flatten)]
        follow: Follow,
        #[command(flatten)]
        api: Api,
    },
    /// Print the API's OpenAPI 3.1 document (docs/openapi.json is its output).
    Openapi,
    /// Manage API keys (shown once, stored only as SHA-256 hashes).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

/// Where the API is and the key to it (`ingest`, `watch`).
#[derive(clap::Args)]
struct Api {
    /// The API's base URL (`make dev`'s by default; a stack's `ApiUrl` output).
    #[arg(long, env = "MORAG_API_URL", default_value = "http://127.0.0.1:3000")]
    api: String,
    /// An API key (`make dev`'s local key by default).
    #[arg(
        long,
        env = "MORAG_API_KEY",
        default_value = "test-api-key",
        hide_default_value = true
    )]
    key: String,
}

impl Api {
    fn base(&self) -> &str {
        self.api.trim_end_matches('/')
    }
}

/// How `watch` follows a task.
#[derive(clap::Args)]
struct Follow {
    /// Stop watching (exit 2) after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_s: u64,
    /// The longest one request waits for news (the timeline's long-poll), 1–20 s.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=20))]
    wait_s: u64,
}

impl Follow {
    async fn run(&self, api: &Api, task_id: &str) -> anyhow::Result<()> {
        let watched = morag_cli::watch::watch(&morag_cli::watch::WatchTask {
            api: api.base(),
            key: &api.key,
            task_id,
            timeout: std::time::Duration::from_secs(self.timeout_s),
            wait: std::time::Duration::from_secs(self.wait_s),
        })
        .await;
        match watched {
            Ok(ended) => std::process::exit(ended.exit_code()),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(morag_cli::watch::COULD_NOT_WATCH);
            }
        }
    }
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

impl QueueName {
    /// The template's logical ids of the queue and its DLQ.
    fn logical_ids(self) -> (&'static str, &'static str) {
        match self {
            QueueName::Webhook => ("WebhookQueue", "WebhookDLQ"),
            QueueName::StatusEvents => ("StatusEventsQueue", "StatusEventsDLQ"),
            QueueName::Processing => ("ProcessingQueue", "ProcessingDLQ"),
        }
    }
}

#[derive(Subcommand)]
enum DlqAction {
    /// Move parked messages back to their queue (webhooks: a fresh attempt cycle each).
    Redrive {
        #[arg(long, value_enum)]
        queue: QueueName,
        /// The queue (stack output ...QueueUrl); found by the stack's name when omitted.
        #[arg(long)]
        queue_url: Option<String>,
        /// Its dead-letter queue (stack output ...DLQUrl); found by the stack's name when omitted.
        #[arg(long)]
        dlq_url: Option<String>,
        /// The stack whose queues and table to find by name (`make dev`'s is morag-local).
        #[arg(long, alias = "prefix", default_value = "morag-local")]
        stack: String,
    },
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
    morag_shared::telemetry::init_stderr();
    let cli = Cli::parse();
    let sdk = || async {
        match &cli.endpoint {
            Some(ep) => aws::local(ep),
            None => aws::load(&AwsSettings::default()).await,
        }
    };
    match cli.command {
        Command::Dev {
            addr,
            stack,
            webhook_secret,
            retry_schedule,
        } => {
            let endpoint = cli
                .endpoint
                .clone()
                .context("--endpoint (or MORAG_AWS_ENDPOINT_URL): the emulator to run on")?;
            dev(
                &endpoint,
                addr,
                &stack,
                webhook_secret,
                retry_schedule.unwrap_or_default(),
            )
            .await
        }
        Command::Openapi => {
            print!("{}", morag_cli::openapi::document_text());
            Ok(())
        }
        Command::Keys { action } => {
            keys_command(
                &sdk().await,
                required_table(cli.table.clone())?,
                cli.secrets_key.clone(),
                action,
            )
            .await
        }
        Command::Ingest {
            file,
            source_type,
            content_type,
            webhook_url,
            metadata,
            watch,
            follow,
            api,
        } => {
            let metadata = metadata
                .map(|m| serde_json::from_str(&m).context("--metadata must be a JSON object"))
                .transpose()?;
            let req = morag_cli::ingest::IngestFile {
                api: api.base(),
                key: &api.key,
                path: &file,
                source_type: &source_type,
                content_type: content_type.as_deref(),
                webhook_url: webhook_url.as_deref(),
                metadata,
            };
            let done = morag_cli::ingest::ingest(&req, &morag_cli::ingest::progress_bar()).await?;
            println!("{}", done.task_id);
            eprintln!("status: {}", done.status_url);
            if watch {
                follow.run(&api, &done.task_id).await?;
            }
            Ok(())
        }
        Command::Watch { task_id, follow, api } => follow.run(&api, &task_id).await,
        Command::Webhooks { action } => {
            webhooks_command(
                &sdk().await,
                required_table(cli.table.clone())?,
                cli.secrets_key.clone(),
                action,
            )
            .await
        }
        Command::Dlq { action } => dlq_command(&sdk().await, cli.table.clone(), action).await,
    }
}

fn required_table(table: Option<String>) -> Result<String> {
    table.context("--table (or MORAG_TABLE_NAME) is required: the stack's TableName output")
}

async fn dlq_command(sdk: &SdkConfig, table: Option<String>, action: DlqAction) -> Result<()> {
    let DlqAction::Redrive {
        queue,
        queue_url,
        dlq_url,
        stack,
    } = action;
    let sqs = aws::sqs(sdk);
    let (queue_id, dlq_id) = queue.logical_ids();
    let queue_url = match queue_url {
        Some(url) => url,
        None => stack::queue_url_by_stack(&sqs, &stack, queue_id).await?,
    };
    let dlq_url = match dlq_url {
        Some(url) => url,
        None => stack::queue_url_by_stack(&sqs, &stack, dlq_id).await?,
    };
    let done = match queue {
        QueueName::Webhook => {
            let ddb = aws::dynamodb(sdk);
            let table = match table {
                Some(t) => t,
                None => stack::table_by_stack(&ddb, &stack).await?,
            };
            let store = DynamoStore::new(ddb, table);
            let q = SqsQueue::new(sqs.clone(), queue_url.clone());
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
            "moved {} message(s) back; deleted {} without a delivery and {} whose delivery moved on",
            done.moved, done.dropped, done.stale
        );
        if !done.kept.is_empty() {
            println!(
                "kept {} message(s) that are not delivery messages in {dlq_url} (message ids: {})",
                done.kept.len(),
                done.kept.join(", ")
            );
        }
    }
    Ok(())
}

/// The table, sealing signing secrets with the stack's key.
fn secrets_store(sdk: &SdkConfig, table: String, secrets_key: Option<String>) -> DynamoStore {
    // CloudFormation names the table `{stack}-Table-{suffix}`: the key's
    // alias follows from it
    let key = secrets_key.unwrap_or_else(|| stack::secrets_key_alias(stack::stack_of_table(&table)));
    DynamoStore::new(aws::dynamodb(sdk), table).with_secrets_cipher(Arc::new(KmsCipher::new(aws::kms(sdk), key)))
}

async fn webhooks_command(
    sdk: &SdkConfig,
    table: String,
    secrets_key: Option<String>,
    action: WebhooksAction,
) -> Result<()> {
    let store = secrets_store(sdk, table, secrets_key);
    match action {
        WebhooksAction::Secret { tenant, overlap_hours } => {
            let secret = SigningSecret::generate();
            let until = (overlap_hours > 0)
                .then(|| morag_shared::time::now() + chrono::Duration::hours(i64::from(overlap_hours)));
            store.rotate_secret(&tenant, &secret, until).await?;
            eprintln!("New signing secret for tenant {tenant} (shown only now):");
            println!("{secret}");
        }
    }
    Ok(())
}

async fn keys_command(sdk: &SdkConfig, table: String, secrets_key: Option<String>, action: KeysAction) -> Result<()> {
    let store = secrets_store(sdk, table, secrets_key);
    match action {
        KeysAction::Create { tenant, description } => {
            let (key, record) = keys::create(&store, &tenant, &description).await?;
            // a new tenant gets its webhook signing secret with its first key
            let (secrets, created) = store.secrets_or_provision(&tenant).await?;
            if created {
                eprintln!(
                    "Tenant {tenant}'s webhook signing secret (verify webhooks with it; \
                     GET /api/v1/webhooks/secret shows it again):\n{}",
                    secrets.secret.current
                );
            }
            eprintln!(
                "Created key {} for tenant {tenant}. It is shown only now:",
                record.key_hash.key_id()
            );
            println!("{key}");
        }
        KeysAction::List { tenant } => {
            for k in store.list_keys(&tenant).await? {
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

/// The HTTP functions' routers, and which function serves which path: the
/// template's HttpApi routes, as API Gateway dispatches them.
#[derive(Clone)]
struct Apps {
    stack: Arc<LocalStack>,
    routers: Arc<std::collections::HashMap<&'static str, Router>>,
}

async fn dispatch(State(apps): State<Apps>, request: Request) -> Response {
    let function = apps.stack.function_for_path(request.uri().path());
    // paths no route has: the status function's JSON 404
    let app = function
        .and_then(|f| apps.routers.get(f))
        .or_else(|| apps.routers.get(STATUS))
        .cloned()
        .expect("the status router");
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
    .into_response()
}

/// `make dev`'s endpoint failure window: 5 minutes (deployed: 5 days).
const LOCAL_ENDPOINT_FAILURE_WINDOW_S: u32 = 300;

async fn dev(
    endpoint: &str,
    addr: SocketAddr,
    stack_name: &str,
    webhook_secret: Option<String>,
    schedule: RetrySchedule,
) -> Result<()> {
    let sdk = aws::local(endpoint);
    // minutes, not days, before a failing endpoint is disabled
    let params = [
        ("WebhookRetrySchedule", schedule.to_string()),
        (
            "EndpointFailureWindowSeconds",
            LOCAL_ENDPOINT_FAILURE_WINDOW_S.to_string(),
        ),
    ];
    let local = LocalStack::deploy(endpoint, stack_name, &params)
        .await
        .with_context(|| format!("deploying the local stack on {endpoint}"))?;
    let table = local.output("TableName")?.to_owned();
    let bucket = local.output("UploadsBucketName")?.to_owned();
    let store = Arc::new(
        DynamoStore::new(aws::dynamodb(&sdk), &table).with_secrets_cipher(Arc::new(KmsCipher::new(
            aws::kms(&sdk),
            local.output("SigningSecretsKeyArn")?,
        ))),
    );
    stack::seed_local_key(&store).await?;
    let (secret, generated) = match webhook_secret {
        Some(s) => {
            SigningSecret::parse(&s).map_err(|e| anyhow::anyhow!("MORAG_LOCAL_WEBHOOK_SECRET: {e}"))?;
            (s, false)
        }
        None => (SigningSecret::generate(), true),
    };
    store
        .rotate_secret(&stack::LOCAL_DEV_TENANT.parse()?, &secret, None)
        .await?;

    // every function's configuration is the stack's, plus local mode
    let mut overrides = stack::local_overrides(endpoint, true);
    // the webhooks' data.status_url: this server, not the emulator's API id
    overrides.push(("MORAG_PUBLIC_API_URL", format!("http://{addr}")));
    let mut status_overrides = overrides.clone();
    status_overrides.push(("MORAG_CURSOR_SECRET", generate_key()));
    let ingest_cfg: IngestConfig = local.config(INGEST, &overrides)?;
    let status_cfg: StatusConfig = local.config(STATUS, &status_overrides)?;
    let recorder_cfg: RecorderConfig = local.config(RECORDER, &overrides)?;
    let processor_cfg: ProcessorConfig = local.config(PROCESSOR, &overrides)?;
    let sender_cfg: SenderConfig = local.config(WEBHOOK_SENDER, &overrides)?;
    let watchdog_cfg: WatchdogConfig = local.config(WATCHDOG, &overrides)?;

    let apps = Apps {
        stack: Arc::new(local.clone()),
        routers: Arc::new(std::collections::HashMap::from([
            (
                INGEST,
                morag_ingest::router(Arc::new(morag_ingest::wiring::build(&sdk, &ingest_cfg))),
            ),
            (
                STATUS,
                morag_status::router(Arc::new(morag_status::wiring::build(&sdk, &status_cfg))),
            ),
        ])),
    };
    let app = Router::new().fallback(dispatch).with_state(apps);

    // the SQS functions, fed by local copies of the stack's event source mappings
    let sqs = aws::sqs(&sdk);
    let recorder = Arc::new(morag_recorder::wiring::build(&sdk, &recorder_cfg));
    let processor = Arc::new(morag_processor::wiring::build(&sdk, &processor_cfg)?);
    let sender = Arc::new(morag_webhook_sender::wiring::build(&sdk, &sender_cfg)?);
    // MORAG_DEV_PROCESSOR=off: everything but the reference processor, so
    // a team's own worker can take the jobs
    let processor_on = !std::env::var("MORAG_DEV_PROCESSOR").is_ok_and(|v| v.eq_ignore_ascii_case("off"));
    if processor_on {
        esm::start(&sqs, &local, PROCESSOR, processor)?;
    }
    esm::start(&sqs, &local, RECORDER, recorder)?;
    esm::start(&sqs, &local, WEBHOOK_SENDER, sender)?;
    // the template's schedule, on a short local timer
    let watchdog_every = Duration::from_secs(
        std::env::var("MORAG_WATCHDOG_INTERVAL_S")
            .ok()
            .map(|v| {
                v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    anyhow::anyhow!("MORAG_WATCHDOG_INTERVAL_S must be a whole number of seconds, at least 1")
                })
            })
            .transpose()?
            .unwrap_or(5),
    );
    // MORAG_DEV_WATCHDOG_AHEAD_S: the local watchdog's clock runs ahead, to
    // watch a stall or a deadline without waiting for it (local only)
    let ahead = chrono::Duration::seconds(
        std::env::var("MORAG_DEV_WATCHDOG_AHEAD_S")
            .ok()
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|s| (0..=7 * 86_400).contains(s))
                    .ok_or_else(|| anyhow::anyhow!("MORAG_DEV_WATCHDOG_AHEAD_S must be 0 to 604800 seconds"))
            })
            .transpose()?
            .unwrap_or(0),
    );
    let watchdog = morag_watchdog::wiring::build(&sdk, &watchdog_cfg);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(watchdog_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            watchdog.run(morag_shared::time::now() + ahead).await;
        }
    });
    let queue = |name: &str| local.output(name).map(str::to_owned);
    let (jobs_url, events_url) = (queue("ProcessingQueueUrl")?, queue("StatusEventsQueueUrl")?);
    let pipeline_note = if processor_on {
        "The reference processor takes the jobs (MORAG_DEV_PROCESSOR=off leaves them to your own worker).".to_owned()
    } else {
        "MORAG_DEV_PROCESSOR=off: no processor runs; point your own worker at these queues.".to_owned()
    };

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let base = format!("http://{addr}");
    println!(
        "\nmorag-status is running on {base} (emulator {endpoint}, stack {stack_name}: table {table}, bucket {bucket})\n\
         Local API key: test-api-key (tenant local; local mode only)\n\n\
         Try:\n\
         curl -X POST {base}/api/v1/ingest/file -H \"Authorization: Bearer test-api-key\" -F source_type=document -F file=@README.md -F webhook_url=http://127.0.0.1:8001/webhook\n\
         curl {base}/api/v1/status/{{task_id}} -H \"Authorization: Bearer test-api-key\"\n\
         curl {base}/api/v1/status/{{task_id}}/history -H \"Authorization: Bearer test-api-key\"\n\
         curl \"{base}/api/v1/status/events/recent?hours=1\" -H \"Authorization: Bearer test-api-key\"\n\
         curl {base}/api/v1/tasks -H \"Authorization: Bearer test-api-key\"\n\n\
         More API keys for this local stack:\n\
         target/debug/morag keys create --tenant acme --endpoint {endpoint} --table {table}\n\n\
         Webhooks are signed with {secret_note}\n\
         Retry schedule (s): {schedule}; webhook DLQ after {attempts} attempts.\n\n\
         {pipeline_note}\n\
         Jobs (processing queue): {jobs_url}\n\
         Status events (report here): {events_url}\n\
         The watchdog runs every {watchdog_s} s (MORAG_WATCHDOG_INTERVAL_S).\n\n\
         Ctrl-C stops everything.",
        secret_note = if generated { format!("this generated secret (set MORAG_LOCAL_WEBHOOK_SECRET to choose one): {secret}") } else { "MORAG_LOCAL_WEBHOOK_SECRET.".to_owned() },
        attempts = schedule.attempts(),
        watchdog_s = watchdog_every.as_secs(),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
