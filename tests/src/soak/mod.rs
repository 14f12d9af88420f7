//! `make soak`: the whole system under load and faults on the local stack,
//! checked from the stores and the receivers at the end.
//!
//! The real function binaries (ingest, recorder ×2, webhook sender ×2,
//! watchdog) run behind Runtime API emulators fed by local event-source
//! mappings; workers take the jobs and report shuffled, duplicated status
//! events, some dying mid-task; receivers fail, hang and throttle, one is
//! down for the first third; the recorder and sender processes are killed
//! with SIGKILL at random moments and restarted. See docs/RELIABILITY.md.

pub mod checks;
pub mod cost;
pub mod functions;
pub mod receivers;
pub mod workers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use morag_cli::stack;
use morag_shared::domain::TaskId;

use checks::Verdict;
use functions::Supervised;
use receivers::{Flakiness, FlakyReceiver};
use workers::{Behaviour, Fate, Pipeline};

/// The soak's retry schedule (seconds): five attempts over about 15 s.
pub const RETRY_SCHEDULE: &str = "1,2,4,8";
/// The shortest heartbeat timeout a task may ask for (`Timeouts`): a dying
/// worker's task is `stalled` this long after its last event.
pub const HEARTBEAT_TIMEOUT_S: u64 = 60;
/// How often the soak invokes the watchdog (Lambda: every minute). Each run
/// queries the due index, which moto answers by walking the whole table.
pub const WATCHDOG_EVERY: Duration = Duration::from_secs(10);
/// The queues' visibility timeout in the soak (the template's is 180 s, six
/// times a function's timeout): how long a killed batch waits to return.
/// Never below the emulator's invocation deadline and the invoke timeout
/// (15 s, 20 s), as AWS requires of a queue and its function: at 10 s a
/// batch slowed by a loaded machine came back while still in hand, and five
/// such receives parked 23 valid status events in the DLQ.
pub const VISIBILITY_TIMEOUT_S: u64 = 20;

/// A soak's size and pace.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub endpoint: String,
    /// Where the function binaries are (target/release or target/debug).
    pub binaries: PathBuf,
    pub tasks: usize,
    pub workers: usize,
    pub seed: u64,
    /// A kill every this long on average (recorder or sender, at random).
    pub kill_every: Duration,
    /// The run gives up waiting for the system to settle after this long.
    pub time_limit: Duration,
}

impl SoakConfig {
    pub fn new(endpoint: String, binaries: PathBuf, tasks: usize) -> Self {
        Self {
            endpoint,
            binaries,
            tasks,
            workers: 32.min(tasks.max(1)),
            seed: 20261130,
            kill_every: Duration::from_secs(6),
            // the local stack runs about 12 status events/s (moto holds one core)
            time_limit: Duration::from_secs(900 + 2 * tasks as u64),
        }
    }
}

/// What a soak did and what the checks found.
#[derive(Debug)]
pub struct SoakReport {
    pub config: SoakConfig,
    pub duration: Duration,
    /// From the first status event sent to the last one's effects settled.
    pub settled_after: Option<Duration>,
    pub kills: Vec<(String, usize, usize)>,
    pub failed_invocations: usize,
    /// Ingest requests retried (same Idempotency-Key) after a 5xx.
    pub ingest_retries: u64,
    pub receiver_requests: usize,
    pub verdict: Verdict,
    /// With the emulator's meter on (`make soak`).
    pub cost: Option<cost::Cost>,
}

impl SoakReport {
    pub fn lost(&self) -> usize {
        self.verdict.problems.len()
    }

    /// The report as Markdown (docs/RELIABILITY.md records one).
    pub fn markdown(&self) -> String {
        let v = &self.verdict;
        let c = &self.config;
        let secs = self.duration.as_secs_f64();
        let mut out = vec![
            format!("## Soak: {} tasks", c.tasks),
            String::new(),
            format!(
                "Run time {:.0} s ({}); status events sent {} ({} originals + {} duplicates), {:.0} events/s over the run.",
                secs,
                match self.settled_after {
                    Some(d) => format!("settled {:.0} s after the first event", d.as_secs_f64()),
                    None => "did NOT settle within the time limit".to_owned(),
                },
                v.copies_sent,
                v.events_sent,
                v.copies_sent - v.events_sent,
                v.copies_sent as f64 / secs
            ),
            String::new(),
            "| | count |".to_owned(),
            "|---|---|".to_owned(),
        ];
        for (status, n) in &v.final_status {
            out.push(format!("| tasks ending `{status}` | {n} |"));
        }
        out.extend([
            format!("| events applied (history entries from workers) | {} |", v.applied),
            format!(
                "| events ignored as late (a later event of the task applied first) | {} |",
                v.ignored_late
            ),
            format!("| stalls marked by the watchdog | {} |", v.stalls),
            format!("| webhook deliveries planned and stored | {} |", v.deliveries),
        ]);
        for (state, n) in &v.delivery_states {
            out.push(format!("| deliveries `{state}` | {n} |"));
        }
        out.extend([
            format!("| attempts recorded | {} |", v.attempts),
            format!("| requests at the receivers | {} |", self.receiver_requests),
            format!(
                "| deliveries taken more than once by a receiver (extra arrivals) | {} ({}) |",
                v.duplicated_deliveries, v.duplicate_arrivals
            ),
            format!(
                "| webhook DLQ messages (of them after a recorded success; a second one of the same delivery) | {} ({}; {}) |",
                v.webhook_dlq, v.webhook_dlq_after_success, v.webhook_dlq_repeated
            ),
            format!(
                "| invocations failed by a kill or timeout | {} |",
                self.failed_invocations
            ),
        ]);
        for (name, kills, abandoned) in &self.kills {
            out.push(format!(
                "| {name}: SIGKILLs survived (invocations in hand) | {kills} ({abandoned}) |"
            ));
        }
        out.push(format!("| **lost or inconsistent** | **{}** |", self.lost()));
        out.push(String::new());
        for p in v.problems.iter().take(50) {
            out.push(format!("- {p}"));
        }
        if v.problems.len() > 50 {
            out.push(format!("- ... and {} more", v.problems.len() - 50));
        }
        if let Some(cost) = &self.cost {
            out.extend([
                String::new(),
                format!(
                    "### Cost per million tasks: ${:.2} (us-east-1 on-demand list prices of {})",
                    cost.per_million(),
                    cost::prices::AS_OF
                ),
                String::new(),
                cost.markdown(),
            ]);
        }
        out.join("\n")
    }
}

/// An API Gateway request for `POST /api/v1/ingest/url` with `body`.
fn ingest_request(body: &Value, idempotency_key: &str) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_str(include_str!("../../../events/ingest-url.json")).expect("events/ingest-url.json");
    event["body"] = body.to_string().into();
    event["headers"]["idempotency-key"] = idempotency_key.into();
    serde_json::to_vec(&event).expect("event")
}

async fn set_visibility(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<()> {
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT_S.to_string())
        .send()
        .await
        .context("SetQueueAttributes")?;
    Ok(())
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .context("GetQueueAttributes")?;
    Ok(out
        .attributes
        .unwrap_or_default()
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// Waits (up to two minutes) until no message of `url` is hidden, so a
/// drain sees the whole queue.
async fn wait_until_visible(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let out = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .context("GetQueueAttributes")?;
        let hidden = out
            .attributes
            .unwrap_or_default()
            .values()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum::<u64>();
        if hidden == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            anyhow::bail!("{hidden} messages of {url} still hidden after two minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs a soak and checks it; the report says what was lost (nothing, we hope).
pub async fn run(config: SoakConfig) -> Result<SoakReport> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let deployed = crate::deploy_with(&config.endpoint, &[("WebhookRetrySchedule", RETRY_SCHEDULE.to_owned())]).await?;
    let sqs = morag_shared::adapters::aws::sqs(&deployed.sdk);
    let r = deployed.resources.clone();
    for url in [
        &r.status_events_queue_url,
        &r.webhook_queue_url,
        &r.processing_queue_url,
    ] {
        set_visibility(&sqs, url).await?;
    }
    stack::seed_local_key(&deployed.store).await?;
    let tenant = stack::LOCAL_DEV_TENANT.parse()?;
    morag_shared::ports::SecretStore::rotate_secret(
        deployed.store.as_ref(),
        &tenant,
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        None,
    )
    .await?;

    // receivers: four flaky, one down for the first third of the tasks
    let flakiness = Flakiness {
        server_error: 0.30,
        late: 0.05,
        too_many: 0.05,
        late_by: Duration::from_secs(3),
        retry_after_s: 2,
    };
    let mut receivers = Vec::new();
    for i in 0..4 {
        receivers.push(FlakyReceiver::start(flakiness, config.seed + i).await?);
    }
    let down = FlakyReceiver::down(flakiness, config.seed + 4)?;
    receivers.push(down.clone());

    // the functions
    let bin = |name: &str| config.binaries.join(name);
    let env = |logical_id: &str, extra: &[(&str, &str)]| -> Result<Vec<(String, String)>> {
        let mut env = deployed.function_env(logical_id, &config.endpoint)?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(env)
    };
    let memory = |logical_id: &str| deployed.stack.function(logical_id).map(|f| f.memory_mb);
    let ingest = Supervised::start(
        "ingest".into(),
        bin("morag-ingest"),
        env(stack::INGEST, &[])?,
        memory(stack::INGEST)?,
    )
    .await?;
    let mut recorders = Vec::new();
    let mut senders = Vec::new();
    for i in 0..2 {
        recorders.push(
            Supervised::start(
                format!("recorder-{i}"),
                bin("morag-recorder"),
                env(stack::RECORDER, &[])?,
                memory(stack::RECORDER)?,
            )
            .await?,
        );
        senders.push(
            Supervised::start(
                format!("webhook-sender-{i}"),
                bin("morag-webhook-sender"),
                env(stack::WEBHOOK_SENDER, &[("MORAG_WEBHOOK_TIMEOUT_SECONDS", "2")])?,
                memory(stack::WEBHOOK_SENDER)?,
            )
            .await?,
        );
    }
    let watchdog = Supervised::start(
        "watchdog".into(),
        bin("morag-watchdog"),
        env(stack::WATCHDOG, &[("MORAG_WATCHDOG_TIME_BUDGET_SECONDS", "10")])?,
        memory(stack::WATCHDOG)?,
    )
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(functions::Seen::default());
    let mut background = Vec::new();
    for (function, logical_id, url) in recorders
        .iter()
        .map(|f| (f, stack::RECORDER, &r.status_events_queue_url))
        .chain(senders.iter().map(|f| (f, stack::WEBHOOK_SENDER, &r.webhook_queue_url)))
    {
        let batch = deployed.stack.queue_event(logical_id)?.batch_size;
        background.push(tokio::spawn(functions::pump(
            sqs.clone(),
            url.clone(),
            batch,
            function.clone(),
            stop.clone(),
            seen.clone(),
        )));
    }
    let schedule = {
        // the schedule, faster than rate(1 minute)
        let (watchdog, stop) = (watchdog.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = watchdog
                    .invoke(br#"{"source":"aws.events","detail-type":"Scheduled Event"}"#.to_vec())
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let killing = Arc::new(AtomicBool::new(true));
    {
        let targets: Vec<Arc<Supervised>> = recorders.iter().chain(senders.iter()).cloned().collect();
        let (killing, every, seed) = (killing.clone(), config.kill_every, config.seed);
        background.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            loop {
                tokio::time::sleep(every.mul_f64(rng.gen_range(0.5..1.5))).await;
                if !killing.load(Ordering::Relaxed) {
                    return;
                }
                let target = &targets[rng.gen_range(0..targets.len())];
                let downtime = Duration::from_millis(rng.gen_range(200..1500));
                if let Err(e) = target.kill_and_restart(downtime).await {
                    tracing::error!(function = %target.name, error = %format!("{e:#}"), "restart failed");
                }
            }
        }));
    }

    // the pipeline: workers take jobs as ingest makes them
    let pipeline = Arc::new(Pipeline {
        sqs: sqs.clone(),
        processing_queue_url: r.processing_queue_url.clone(),
        status_queue_url: r.status_events_queue_url.clone(),
        behaviour: Behaviour {
            duplicate_share: 0.10,
            gap: (Duration::from_millis(20), Duration::from_millis(250)),
            duplicate_within: Duration::from_secs(10),
        },
        fates: Mutex::new(HashMap::new()),
        runs: Mutex::new(HashMap::new()),
        taken: Default::default(),
        finished: Default::default(),
        sends: Default::default(),
        duplicates_pending: Default::default(),
        total: config.tasks,
        backlog: Default::default(),
        max_backlog: 200,
    });
    {
        let (pipeline, sqs, stop, url) = (
            pipeline.clone(),
            sqs.clone(),
            stop.clone(),
            r.status_events_queue_url.clone(),
        );
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(depth) = queue_depth(&sqs, &url).await {
                    pipeline.backlog.store(depth as usize, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    let worker_handles: Vec<_> = (0..config.workers)
        .map(|i| tokio::spawn(pipeline.clone().work(config.seed + 100 + i as u64)))
        .collect();
    {
        // a line every 15 s on stderr, so a long soak shows where it is
        let (pipeline, sqs, stop, r) = (pipeline.clone(), sqs.clone(), stop.clone(), r.clone());
        let killed: Vec<Arc<Supervised>> = recorders.iter().chain(senders.iter()).cloned().collect();
        background.push(tokio::spawn(async move {
            let begun = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let status = queue_depth(&sqs, &r.status_events_queue_url).await.unwrap_or(0);
                let webhooks = queue_depth(&sqs, &r.webhook_queue_url).await.unwrap_or(0);
                eprintln!(
                    "soak {:>4.0} s: {} tasks created, {} taken, {} finished; {} events sent; queued: {status} status events, {webhooks} webhooks; {} kills",
                    begun.elapsed().as_secs_f64(),
                    pipeline.fates.lock().unwrap().len(),
                    pipeline.taken.load(Ordering::Relaxed),
                    pipeline.finished.load(Ordering::Relaxed),
                    pipeline.sends.load(Ordering::Relaxed),
                    killed.iter().map(|f| f.kills.load(Ordering::Relaxed)).sum::<usize>(),
                );
            }
        }));
    }
    let metered = cost::reset(&config.endpoint).await.unwrap_or(false);
    let first_event = Instant::now();
    let mut created = 0;
    let mut ingest_retries = 0;
    for i in 0..config.tasks {
        // 90 % complete, 5 % fail, 5 % die after 1 to 6 events
        let draw: f64 = rng.gen();
        let fate = if draw < 0.05 {
            Fate::Die {
                after: rng.gen_range(1..=6),
            }
        } else if draw < 0.10 {
            Fate::Fail
        } else {
            Fate::Complete
        };
        let body = json!({
            "source_type": "web",
            "url": format!("https://example.com/soak/{i}.html"),
            "webhook_url": receivers[i % receivers.len()].url(),
            "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
            "timeout_s": 7200,
        });
        // a client retries a 5xx with the same Idempotency-Key, as the API asks
        let mut tries = 0;
        let body = loop {
            tries += 1;
            let answer = ingest
                .invoke(ingest_request(&body, &format!("soak-{}-{i}", config.seed)))
                .await;
            let (status, answer) = match answer {
                Ok(bytes) => {
                    let response: Value = serde_json::from_slice(&bytes)?;
                    let answer: Value = serde_json::from_str(response["body"].as_str().unwrap_or("null"))?;
                    (response["statusCode"].as_u64().unwrap_or(0), answer)
                }
                Err(e) => (0, Value::String(String::from_utf8_lossy(&e).into_owned())),
            };
            match status {
                202 => break answer,
                // 409 `request_in_progress`: the first try is still in flight,
                // or died in it: a retry takes it over after the 60 s lease
                0 | 409 | 500..=599 if tries < 60 => {
                    ingest_retries += 1;
                    tracing::warn!(status, %answer, "ingest failed; retrying with the same Idempotency-Key");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                _ => bail!("ingest answered {status}: {answer}"),
            }
        };
        let task_id: TaskId = body["task_id"].as_str().unwrap_or("").parse()?;
        pipeline.fates.lock().unwrap().insert(task_id, fate);
        created += 1;
        if !down.is_up() && pipeline.finished.load(Ordering::Relaxed) * 3 >= config.tasks {
            down.start_listening().await?;
        }
    }
    // the down receiver comes back once a third of the tasks are done
    while pipeline.finished.load(Ordering::Relaxed) < config.tasks && started.elapsed() < config.time_limit {
        if !down.is_up() && pipeline.finished.load(Ordering::Relaxed) * 3 >= config.tasks {
            down.start_listening().await?;
        }
        if worker_handles.iter().all(|h| h.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !down.is_up() {
        down.start_listening().await?;
    }
    for h in worker_handles {
        let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
    }
    while pipeline.duplicates_pending.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_sent = Instant::now();
    killing.store(false, Ordering::Relaxed);

    // settle: past the heartbeat timeout of the last event sent, the due
    // index's granularity and two watchdog runs (every dying worker's task
    // is then stalled, every dead-lettered delivery marked), and the queues
    // empty for three checks 2 s apart
    let store = deployed.store.clone();
    let settle_from = last_sent
        + Duration::from_secs(HEARTBEAT_TIMEOUT_S)
        + Duration::from_secs(morag_shared::domain::watch::DUE_GRANULARITY_S as u64)
        + 2 * WATCHDOG_EVERY;
    let mut settled_after = None;
    let mut quiet_checks = 0;
    while started.elapsed() < config.time_limit {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let depth =
            queue_depth(&sqs, &r.status_events_queue_url).await? + queue_depth(&sqs, &r.webhook_queue_url).await?;
        if depth > 0 || Instant::now() < settle_from {
            quiet_checks = 0;
            continue;
        }
        quiet_checks += 1;
        if quiet_checks >= 3 {
            settled_after = Some(first_event.elapsed());
            break;
        }
    }
    let meter = if metered {
        cost::read(&config.endpoint).await?
    } else {
        None
    };
    stop.store(true, Ordering::Relaxed);
    // the watchdog's run in progress ends on its own: killed mid-run, it
    // would leave the DLQ messages it peeked hidden from the drain below
    if tokio::time::timeout(Duration::from_secs(90), schedule).await.is_err() {
        eprintln!("soak: the watchdog's last run did not end within 90 s");
    }
    for h in background {
        h.abort();
    }
    for f in recorders.iter().chain(senders.iter()).chain([&ingest, &watchdog]) {
        f.stop().await;
    }
    wait_until_visible(&sqs, &r.webhook_dlq_url).await?;

    let webhook_dlq: Vec<String> = crate::drain_queue(&sqs, &r.webhook_dlq_url)
        .await?
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let status_dlq = crate::drain_queue(&sqs, &r.status_events_dlq_url).await?;
    let mut arrivals: HashMap<String, Vec<receivers::Answer>> = HashMap::new();
    for receiver in &receivers {
        for (id, answers) in receiver.arrivals() {
            arrivals.entry(id).or_default().extend(answers);
        }
    }
    let runs = pipeline.runs.lock().unwrap().clone();
    let verdict = checks::check(
        &store,
        &runs,
        created,
        &seen.snapshot(),
        &arrivals,
        &webhook_dlq,
        &status_dlq,
    )
    .await?;
    let kills = recorders
        .iter()
        .chain(senders.iter())
        .map(|f| {
            (
                f.name.clone(),
                f.kills.load(Ordering::Relaxed),
                f.abandoned.load(Ordering::Relaxed),
            )
        })
        .collect();
    // the watchdog runs on a schedule, whatever the load: a fixed cost
    let uses: Vec<cost::FunctionUse> = recorders
        .iter()
        .chain(senders.iter())
        .chain([&ingest])
        .map(|f| cost::FunctionUse {
            name: f.name.clone(),
            invocations: f.invocations.load(Ordering::Relaxed),
            busy_s: f.busy_us.load(Ordering::Relaxed) as f64 / 1e6,
            memory_mb: f.memory_mb,
        })
        .collect();
    let cost = meter.map(|m| cost::Cost::compute(created, &m, &uses));
    Ok(SoakReport {
        cost,
        duration: started.elapsed(),
        settled_after,
        kills,
        failed_invocations: recorders
            .iter()
            .chain(senders.iter())
            .map(|f| f.failed_invocations.load(Ordering::Relaxed))
            .sum(),
        ingest_retries,
        receiver_requests: receivers.iter().map(|r| r.requests()).sum(),
        verdict,
        config,
    })
}
