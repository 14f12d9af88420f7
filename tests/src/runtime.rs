//! A Lambda Runtime API emulator: serves `/2018-06-01/runtime/...` on
//! 127.0.0.1 so the real release binaries run exactly as on Lambda (they
//! long-poll `invocation/next`, post `response` or `error`). Used by the
//! end-to-end tests and `make bench`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

/// The outcome of one invocation: the function's response or its error
/// document, as raw JSON bytes.
pub type Outcome = Result<Bytes, Bytes>;

struct Pending {
    id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    queue: AsyncMutex<mpsc::Receiver<Pending>>,
    /// To put back an invocation taken for a process that is gone.
    requeue: mpsc::Sender<Pending>,
    /// One more each time the process's invocations are abandoned.
    generation: std::sync::atomic::AtomicU64,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<Bytes>>,
    ready: tokio::sync::Notify,
}

/// One emulated Runtime API endpoint, serving one function process.
pub struct RuntimeEmulator {
    addr: SocketAddr,
    sender: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    counter: std::sync::atomic::AtomicU64,
}

impl RuntimeEmulator {
    pub async fn start() -> Self {
        let (sender, receiver) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            queue: AsyncMutex::new(receiver),
            requeue: sender.clone(),
            generation: Default::default(),
            in_flight: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            init_error: Mutex::new(None),
            ready: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            sender,
            shared,
            server,
            counter: Default::default(),
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for work (its cold start ended).
    pub fn first_next(&self) -> Option<Instant> {
        *self.shared.first_next.lock().unwrap()
    }

    pub fn init_error(&self) -> Option<Bytes> {
        self.shared.init_error.lock().unwrap().clone()
    }

    /// Waits until the function first polls for work, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.ready.notified();
            if let Some(at) = self.first_next() {
                return Some(at);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left.min(Duration::from_millis(20)), notified).await;
        }
    }

    /// Invokes the function with `payload` and waits for its answer.
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Outcome {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012}");
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Pending {
                id,
                payload: payload.into(),
                reply,
            })
            .await
            .expect("emulator running");
        // a reply dropped unanswered: the process died with it (see `abandon_in_flight`)
        answer
            .await
            .unwrap_or_else(|_| Err(Bytes::from_static(br#"{"errorType":"Runtime.ExitError"}"#)))
    }

    /// Fails every invocation the function has taken but not answered, as
    /// Lambda does when the process dies mid-invocation (`Runtime.ExitError`);
    /// what was not yet taken waits for the next process. Answers how many.
    pub fn abandon_in_flight(&self) -> usize {
        self.shared.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let taken: Vec<_> = self.shared.in_flight.lock().unwrap().drain().collect();
        taken.len()
    }

    /// Starts `binary` as Lambda would, pointed at this emulator, with the
    /// given environment on top of the variables Lambda always sets.
    pub fn spawn(&self, binary: &Path, env: &[(String, String)]) -> std::io::Result<Child> {
        self.spawn_logging(binary, env, Stdio::null())
    }

    /// `spawn`, with the function's log (its stdout) going to `log`.
    pub fn spawn_logging(&self, binary: &Path, env: &[(String, String)], log: Stdio) -> std::io::Result<Child> {
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", self.runtime_api())
            .env(
                "AWS_LAMBDA_FUNCTION_NAME",
                binary.file_name().and_then(|n| n.to_str()).unwrap_or("fn"),
            )
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            // a local emulator, as `sam local` says it is: local-only
            // settings (loopback webhooks, the endpoint override) are allowed
            .env("AWS_SAM_LOCAL", "true")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd.spawn()
    }
}

impl Drop for RuntimeEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    {
        let mut first = shared.first_next.lock().unwrap();
        if first.is_none() {
            *first = Some(Instant::now());
            shared.ready.notify_waiters();
        }
    }
    let generation = shared.generation.load(std::sync::atomic::Ordering::SeqCst);
    let pending = shared.queue.lock().await.recv().await;
    let Some(p) = pending else {
        return StatusCode::GONE.into_response();
    };
    // a `next` of a killed process still waiting here (the server does not
    // notice the closed connection): the invocation goes back for the new one
    if shared.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
        let _ = shared.requeue.send(p).await;
        return StatusCode::GONE.into_response();
    }
    shared.in_flight.lock().unwrap().insert(p.id.clone(), p.reply);
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 15_000;
    let mut headers = HeaderMap::new();
    let h = |v: String| HeaderValue::from_str(&v).expect("header");
    headers.insert("lambda-runtime-aws-request-id", h(p.id));
    headers.insert("lambda-runtime-deadline-ms", h(deadline.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:emulated"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (headers, p.payload).into_response()
}

fn complete(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.in_flight.lock().unwrap().remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    complete(&shared, &id, Ok(body))
}

async fn fail(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    complete(&shared, &id, Err(body))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(body);
    shared.ready.notify_waiters();
    StatusCode::ACCEPTED
}

/// Peak resident set size (`VmHWM`) of a process, in KiB (Linux only).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
