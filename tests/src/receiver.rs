//! `TestReceiver`: a webhook receiver on 127.0.0.1 that records every
//! request and answers from a script (then a default).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with extra headers, e.g. `Retry-After`.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Wait, then answer (to trigger the sender's timeout).
    Slow(Duration, u16),
}

/// A request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path (endpoints can share one receiver by path).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

pub struct TestReceiver {
    pub addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

async fn receive(State(s): State<Shared>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    let reply = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| s.default.lock().unwrap().clone());
    let status = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply {
        Reply::Status(c) => (status(c), "ok").into_response(),
        Reply::WithHeaders(c, headers) => {
            let mut r = (status(c), "see headers").into_response();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        Reply::Slow(d, c) => {
            tokio::time::sleep(d).await;
            (status(c), "late").into_response()
        }
    }
}

impl TestReceiver {
    /// Answers `script` in order, then `default` forever.
    pub async fn start(script: Vec<Reply>, default: Reply) -> Self {
        let shared = Shared {
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            default: Arc::new(Mutex::new(default)),
        };
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, server }
    }

    pub async fn always(status: u16) -> Self {
        Self::start(Vec::new(), Reply::Status(status)).await
    }

    pub async fn always_with(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Self::start(Vec::new(), Reply::WithHeaders(status, headers)).await
    }

    /// From now on, answer `reply` (a receiver that comes back up).
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
