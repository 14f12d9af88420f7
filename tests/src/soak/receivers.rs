//! The soak's webhook receivers: loopback HTTP servers that answer at random
//! the way unreliable receivers do (500s, hangs past the sender's timeout,
//! 429 with `Retry-After`) and log every arrival with their own answer, so
//! the checks count what arrived rather than what the sender says it sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How a receiver answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 within the sender's timeout: delivered.
    Ok,
    ServerError,
    /// 200 only after the sender's timeout: the sender saw a timeout.
    Late,
    TooMany,
}

/// The share of requests answered each way (the rest get 200 at once).
#[derive(Debug, Clone, Copy)]
pub struct Flakiness {
    pub server_error: f64,
    pub late: f64,
    pub too_many: f64,
    /// How long a late answer takes (longer than the sender's timeout).
    pub late_by: Duration,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after_s: u64,
}

#[derive(Default)]
struct Log {
    /// webhook-id → the answers it got, in arrival order
    by_id: HashMap<String, Vec<Answer>>,
    requests: usize,
}

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Log>>,
    rng: Arc<Mutex<StdRng>>,
    flakiness: Flakiness,
}

/// One receiver; `url()` is its webhook URL from the start, though a
/// receiver made with `down_until_started` refuses connections until
/// `start` is called.
pub struct FlakyReceiver {
    addr: SocketAddr,
    shared: Shared,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

async fn receive(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let draw: f64 = s.rng.lock().unwrap().gen();
    let f = s.flakiness;
    let answer = if draw < f.server_error {
        Answer::ServerError
    } else if draw < f.server_error + f.late {
        Answer::Late
    } else if draw < f.server_error + f.late + f.too_many {
        Answer::TooMany
    } else {
        Answer::Ok
    };
    {
        let mut log = s.log.lock().unwrap();
        log.requests += 1;
        log.by_id.entry(id).or_default().push(answer);
    }
    match answer {
        Answer::Ok => (StatusCode::OK, "ok").into_response(),
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "soak: failing").into_response(),
        Answer::Late => {
            tokio::time::sleep(f.late_by).await;
            (StatusCode::OK, "late").into_response()
        }
        Answer::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", f.retry_after_s.to_string())],
            "slow down",
        )
            .into_response(),
    }
}

impl FlakyReceiver {
    /// A receiver listening now.
    pub async fn start(flakiness: Flakiness, seed: u64) -> std::io::Result<Arc<Self>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let receiver = Self::new(listener.local_addr()?, flakiness, seed);
        receiver.serve(listener);
        Ok(Arc::new(receiver))
    }

    /// A receiver that is down (connections refused) until `start_listening`.
    pub fn down(flakiness: Flakiness, seed: u64) -> std::io::Result<Arc<Self>> {
        // a port free now; nothing listens on it until start_listening
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        Ok(Arc::new(Self::new(addr, flakiness, seed)))
    }

    fn new(addr: SocketAddr, flakiness: Flakiness, seed: u64) -> Self {
        Self {
            addr,
            shared: Shared {
                log: Arc::default(),
                rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
                flakiness,
            },
            server: Mutex::new(None),
        }
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new().fallback(receive).with_state(self.shared.clone());
        *self.server.lock().unwrap() = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Brings a `down` receiver up on its port.
    pub async fn start_listening(&self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    pub fn is_up(&self) -> bool {
        self.server.lock().unwrap().is_some()
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Every webhook-id seen, with the answers it got.
    pub fn arrivals(&self) -> HashMap<String, Vec<Answer>> {
        self.shared.log.lock().unwrap().by_id.clone()
    }

    pub fn requests(&self) -> usize {
        self.shared.log.lock().unwrap().requests
    }
}

impl Drop for FlakyReceiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }
}
