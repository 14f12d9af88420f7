//! The sender with in-memory stores: the send-time SSRF matrix, and the
//! retry bookkeeping without waiting on SQS.

use std::collections::HashMap;

use morag_shared::adapters::memory::{MemoryDeadLetters, MemorySecretStore, MemoryTaskStore, MemoryVisibility};
use morag_shared::domain::delivery::USER_AGENT;
use morag_shared::domain::{Attempt, DeliveryId, TaskId, WebhookEvent};

use super::*;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

struct Fixture {
    store: Arc<MemoryTaskStore>,
    secrets: Arc<MemorySecretStore>,
    visibility: Arc<MemoryVisibility>,
    parked: Arc<MemoryDeadLetters>,
    /// What the sender put back on the webhook queue.
    sender_queue: Arc<morag_shared::adapters::memory::MemoryWebhookQueue>,
    sender: Sender,
}

async fn fixture(policy: TargetPolicy) -> Fixture {
    let store = Arc::new(MemoryTaskStore::default());
    let secrets = Arc::new(MemorySecretStore::default());
    secrets
        .rotate_secret(&"acme".parse().unwrap(), SECRET, None)
        .await
        .unwrap();
    let visibility = Arc::new(MemoryVisibility::default());
    let parked = Arc::new(MemoryDeadLetters::default());
    let sender_queue = Arc::new(morag_shared::adapters::memory::MemoryWebhookQueue::default());
    let lookup = outbound::static_lookup(HashMap::from([
        ("internal.example.com".to_owned(), vec!["10.1.1.1".parse().unwrap()]),
        (
            "rebind.example.com".to_owned(),
            vec!["93.184.215.14".parse().unwrap(), "169.254.169.254".parse().unwrap()],
        ),
        ("v6local.example.com".to_owned(), vec!["fd00::1".parse().unwrap()]),
    ]));
    let sender = Sender::new(
        SenderPorts {
            deliveries: store.clone(),
            endpoints: store.clone(),
            webhooks: sender_queue.clone(),
            secrets: secrets.clone(),
            visibility: visibility.clone(),
            dead_letters: parked.clone(),
        },
        outbound::client(
            policy,
            lookup,
            Duration::from_secs(1),
            Duration::from_secs(2),
            USER_AGENT,
        )
        .unwrap(),
        SenderSettings {
            schedule: "1,1".parse().unwrap(),
            policy,
            endpoint_failure_window: morag_shared::domain::endpoint::DEFAULT_FAILURE_WINDOW,
            probe_lease: Duration::from_secs(5),
            history_ttl: Duration::from_secs(86_400),
        },
    );
    Fixture {
        store,
        secrets: secrets.clone(),
        visibility,
        parked,
        sender_queue,
        sender,
    }
}

fn delivery(url: &str) -> Delivery {
    Delivery {
        task_id: TaskId::new(),
        tenant: "acme".parse().unwrap(),
        delivery_id: DeliveryId::derive(&TaskId::new(), WebhookEvent::TaskStarted, "once"),
        event_type: WebhookEvent::TaskStarted,
        url: url.to_owned(),
        payload: r#"{"event_type":"task_started"}"#.to_owned(),
        sequence: 1,
        endpoint_id: None,
        state: DeliveryState::Pending,
        created_at: morag_shared::time::now(),
        enqueued: true,
        cycle: 0,
        attempts: Vec::new(),
        attempts_total: 0,
    }
}

impl Fixture {
    async fn attempt(&self, url: &str, attempt_no: u32) -> (Outcome, Delivery) {
        self.deliver(delivery(url), attempt_no).await
    }

    /// Stores `d`, delivers its message on receive `receive_count`, and
    /// returns the outcome and the delivery as stored afterwards.
    async fn deliver(&self, d: Delivery, receive_count: u32) -> (Outcome, Delivery) {
        let (outcome, after) = self.try_deliver(d, receive_count).await;
        (outcome.unwrap(), after)
    }

    async fn try_deliver(&self, d: Delivery, receive_count: u32) -> (Result<Outcome, StoreError>, Delivery) {
        self.store
            .deliveries
            .lock()
            .unwrap()
            .insert(d.delivery_id.clone(), d.clone());
        let outcome = self.sender.deliver(&received(d.message(), receive_count)).await;
        let after = self.store.deliveries.lock().unwrap()[&d.delivery_id].clone();
        (outcome, after)
    }

    fn parked(&self) -> Vec<(String, String, String, String)> {
        self.parked.parked.lock().unwrap().clone()
    }
}

fn received(message: DeliveryMessage, receive_count: u32) -> Received<DeliveryMessage> {
    Received {
        message_id: "m-1".to_owned(),
        receipt_handle: "receipt".to_owned(),
        receive_count,
        received_at: Instant::now(),
        message,
    }
}

/// A receiver on 127.0.0.1 answering every request with `response` (the
/// status line and headers), and how many requests it took.
async fn answering(response: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/h", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(format!("{response}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        }
    });
    (url, hits)
}

const LOCAL: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_loopback: true,
};

#[tokio::test]
async fn the_ssrf_matrix_is_refused_at_send_time() {
    let f = fixture(TargetPolicy::default()).await;
    let targets = [
        "https://127.0.0.1/h",
        "https://[::1]/h",
        "https://10.0.0.1/h",
        "https://172.16.5.4/h",
        "https://192.168.0.10/h",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/h",
        "https://[fc00::1]/h",
        "https://[fd00:ec2::254]/h",
        "https://[fe80::1]/h",
        "https://[::ffff:127.0.0.1]/h",
        "https://0.0.0.0/h",
        "https://2130706433/h",
        "https://0177.0.0.1/h",
        "https://0x7f000001/h",
        "https://localhost/h",
        "https://internal.example.com/h",
        "https://rebind.example.com/h",
        "https://v6local.example.com/h",
        "https://[ff02::1]/h",
        "http://93.184.215.14/h",
        "https://user:pass@93.184.215.14/h",
    ];
    assert!(targets.len() >= 20);
    for url in targets {
        let (outcome, after) = f.attempt(url, 1).await;
        assert_eq!(outcome, Outcome::Done, "{url}: never retried");
        assert_eq!(after.state, DeliveryState::Failed, "{url}");
        assert_eq!(after.attempts[0].error, Some(AttemptError::BlockedAddress), "{url}");
    }
    assert!(f.visibility.changes.lock().unwrap().is_empty());
}

/// A loopback URL nothing listens at (its port was free a moment ago).
fn nothing_listens() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/h")
}

#[tokio::test]
async fn retries_set_the_visibility_and_the_last_attempt_is_dead() {
    let f = fixture(TargetPolicy {
        allow_http: true,
        allow_loopback: true,
    })
    .await;
    let url = nothing_listens();
    let (outcome, after) = f.attempt(&url, 1).await;
    assert_eq!((outcome, after.state), (Outcome::Again, DeliveryState::Pending));
    let (delay, _) = (f.visibility.changes.lock().unwrap()[0].1, ());
    assert!(
        delay >= Duration::from_millis(800) && delay <= Duration::from_millis(1200),
        "{delay:?}"
    );
    // attempt 3 of 3: dead, and the sender parks the message itself
    let (outcome, after) = f.attempt(&url, 3).await;
    assert_eq!(
        (outcome, after.state, after.attempts.len()),
        (Outcome::Done, DeliveryState::Dead, 1)
    );
    assert_eq!(
        f.visibility.changes.lock().unwrap().len(),
        1,
        "no visibility change for the last attempt"
    );
    let parked = f.parked();
    assert_eq!(parked.len(), 1);
    let (body, reason, detail, source) = &parked[0];
    assert_eq!(serde_json::from_str::<DeliveryMessage>(body).unwrap(), after.message());
    assert_eq!((reason.as_str(), source.as_str()), ("attempts_exhausted", "m-1"));
    assert_eq!(detail, "1 attempts recorded in 3 receives");
}

/// Receives that recorded no attempt (a sender killed mid-batch, a write
/// that failed) count against the budget: a receive past it makes no
/// attempt, ends the delivery `dead` and parks the message, so the queue
/// never parks a message whose delivery still says `pending`.
#[tokio::test]
async fn a_receive_past_the_budget_ends_the_delivery_without_an_attempt() {
    let f = fixture(LOCAL).await;
    let (url, hits) = answering("HTTP/1.1 200 OK").await;
    let (outcome, after) = f.attempt(&url, 4).await;
    assert_eq!((outcome, after.state), (Outcome::Done, DeliveryState::Dead));
    assert_eq!(
        (after.attempts.len(), hits.load(std::sync::atomic::Ordering::SeqCst)),
        (0, 0)
    );
    assert_eq!(f.parked().len(), 1);

    // dead, and its message came back (the parking after the last attempt
    // was lost with its sender): parked again, nothing sent
    let (outcome, after) = f.deliver(after, 4).await;
    assert_eq!(
        (outcome, after.state, after.attempts.len()),
        (Outcome::Done, DeliveryState::Dead, 0)
    );
    assert_eq!(f.parked().len(), 2);
    // a finished delivery's late message within the budget: nothing
    let mut done = delivery(&url);
    done.state = DeliveryState::Succeeded;
    assert_eq!(f.deliver(done, 4).await.0, Outcome::Done);
    assert_eq!(
        (f.parked().len(), hits.load(std::sync::atomic::Ordering::SeqCst)),
        (2, 0)
    );
}

/// `Retry-After: 86400` (a day) asks for more than SQS allows: 12 h from
/// the receive, not from now. The delay is clamped below it and accepted by
/// a visibility adapter that enforces SQS's limit as SQS does.
#[tokio::test]
async fn a_retry_after_of_a_day_is_clamped_within_twelve_hours_of_the_receive() {
    let f = fixture(LOCAL).await;
    let (url, _) = answering("HTTP/1.1 429 Too Many Requests\r\nretry-after: 86400").await;
    let (outcome, after) = f.attempt(&url, 1).await;
    assert_eq!((outcome, after.state), (Outcome::Again, DeliveryState::Pending));
    let delay = f.visibility.changes.lock().unwrap()[0].1;
    assert!(
        delay < MAX_SQS_DELAY && delay >= MAX_SQS_DELAY - RECEIVE_SLACK - Duration::from_secs(5),
        "{delay:?}"
    );
    // what the clamp prevents: SQS refuses exactly 12 h once a second has passed
    assert!(f.visibility.delay("receipt", MAX_SQS_DELAY).await.is_err());
}

/// A refused visibility change is a failure to handle (logged as an error,
/// the record reported failed), not a warning: the attempt is recorded.
#[tokio::test]
async fn a_refused_visibility_change_fails_the_record() {
    let f = fixture(LOCAL).await;
    let (url, _) = answering("HTTP/1.1 503 Service Unavailable").await;
    f.visibility.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let (outcome, after) = f.try_deliver(delivery(&url), 1).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!((after.state, after.attempts.len()), (DeliveryState::Pending, 1));
}

/// A tenant that never set a secret gets one at its first delivery, which
/// is signed with it (no `no_signing_secret` failure any more).
#[tokio::test]
async fn a_tenant_without_a_secret_gets_one_and_a_signed_delivery() {
    let f = fixture(LOCAL).await;
    let (url, hits) = answering("HTTP/1.1 204 No Content").await;
    let mut d = delivery(&url);
    d.tenant = "newcomer".parse().unwrap();
    let (outcome, after) = f.deliver(d, 1).await;
    assert_eq!((outcome, after.state), (Outcome::Done, DeliveryState::Succeeded));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stored = f.secrets.secrets.lock().unwrap()[&"newcomer".parse::<TenantId>().unwrap()].clone();
    assert!(morag_shared::domain::delivery::SigningSecret::parse(&stored.secret.current).is_ok());
    // and a v1a key, should it turn v1a on
    assert!(morag_shared::domain::delivery::AsymmetricKey::parse(&stored.signing_key.unwrap().current).is_ok());
}

#[tokio::test]
async fn messages_of_old_cycles_or_finished_deliveries_do_nothing() {
    let f = fixture(TargetPolicy::default()).await;
    let mut d = delivery("https://93.184.215.14/h");
    d.state = DeliveryState::Succeeded;
    let (outcome, after) = f.deliver(d.clone(), 1).await;
    assert_eq!(outcome, Outcome::Done);
    assert!(after.attempts.is_empty());
    let missing = DeliveryMessage {
        task_id: d.task_id,
        delivery_id: DeliveryId::derive(&TaskId::new(), WebhookEvent::TaskFailed, "gone"),
        cycle: 0,
        slot: None,
    };
    assert_eq!(f.sender.deliver(&received(missing, 1)).await.unwrap(), Outcome::Done);
}

/// A tenant endpoint of acme's at `url`, stored, and a delivery to it.
fn endpoint_delivery(f: &Fixture, url: &str, shape: impl FnOnce(&mut Endpoint)) -> (Endpoint, Delivery) {
    let now = morag_shared::time::now();
    let mut e = Endpoint::new("acme".parse().unwrap(), url.to_owned(), WebhookEvent::ALL.to_vec(), now);
    shape(&mut e);
    f.store.endpoints.lock().unwrap().push(e.clone());
    let mut d = delivery("https://unused.example.com/h");
    d.endpoint_id = Some(e.endpoint_id.clone());
    d.delivery_id = DeliveryId::derive(&d.task_id, WebhookEvent::TaskStarted, e.endpoint_id.as_str());
    (e, d)
}

fn stored_endpoint(f: &Fixture, e: &Endpoint) -> Endpoint {
    f.store
        .endpoints
        .lock()
        .unwrap()
        .iter()
        .find(|x| x.endpoint_id == e.endpoint_id)
        .unwrap()
        .clone()
}

fn requeued(f: &Fixture) -> Vec<DeliveryMessage> {
    f.sender_queue.messages.lock().unwrap().clone()
}

/// While a failing endpoint's breaker is open, its deliveries are not
/// attempted: each goes back on the queue (a new message), unspent. When
/// the probe is due, one delivery claims it and is sent; its failure opens
/// the breaker for the schedule's next gap; a success closes it.
#[tokio::test]
async fn an_open_breaker_holds_deliveries_and_one_probe_goes_when_due() {
    let f = fixture(LOCAL).await;
    let (url, hits) = answering("HTTP/1.1 503 Service Unavailable").await;
    let now = morag_shared::time::now();
    let (e, d) = endpoint_delivery(&f, &url, |e| {
        e.failing_since = Some(now - chrono::Duration::seconds(30));
        e.probe_at = Some(now + chrono::Duration::seconds(60));
    });
    let (outcome, after) = f.deliver(d.clone(), 1).await;
    assert_eq!(
        (outcome, after.state, after.attempts.len()),
        (Outcome::Done, DeliveryState::Pending, 0)
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "not sent");
    assert_eq!(requeued(&f), vec![d.message()], "back on the queue, as it was");

    // the probe is due: this delivery claims it and is sent
    f.store.endpoints.lock().unwrap()[0].probe_at = Some(now - chrono::Duration::seconds(1));
    let (outcome, after) = f.deliver(d.clone(), 1).await;
    assert_eq!((outcome, after.attempts.len()), (Outcome::Again, 1));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let probed = stored_endpoint(&f, &e);
    assert_eq!(probed.probes_failed, 1);
    let wait = probed.probe_at.unwrap() - morag_shared::time::now();
    // the schedule "1,1": the next probe a second after the failure
    assert!(
        wait <= chrono::Duration::seconds(1) && wait > chrono::Duration::zero(),
        "{wait:?}"
    );

    // a probe claimed by another delivery (its lease) holds this one
    let mut other = delivery(&url);
    other.endpoint_id = Some(e.endpoint_id.clone());
    f.store.endpoints.lock().unwrap()[0].probe_at = Some(morag_shared::time::now() + chrono::Duration::seconds(30));
    let (outcome, after) = f.deliver(other, 1).await;
    assert_eq!((outcome, after.attempts.len()), (Outcome::Done, 0));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A success closes the breaker: the streak ends, and the next delivery
/// goes straight out.
#[tokio::test]
async fn a_successful_probe_closes_the_breaker() {
    let f = fixture(LOCAL).await;
    let (url, hits) = answering("HTTP/1.1 204 No Content").await;
    let since = morag_shared::time::now() - chrono::Duration::seconds(30);
    let (e, d) = endpoint_delivery(&f, &url, |e| {
        e.failing_since = Some(since);
        e.probe_at = Some(since);
        e.probes_failed = 3;
    });
    let (outcome, after) = f.deliver(d, 1).await;
    assert_eq!((outcome, after.state), (Outcome::Done, DeliveryState::Succeeded));
    let closed = stored_endpoint(&f, &e);
    assert_eq!(
        (closed.failing_since, closed.probe_at, closed.probes_failed),
        (None, None, 0)
    );
    let mut next = delivery(&url);
    next.endpoint_id = Some(e.endpoint_id.clone());
    let (_, after) = f.deliver(next, 1).await;
    assert_eq!(after.state, DeliveryState::Succeeded);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A rate-limited endpoint: each attempt takes a slot. A slot within 3 s
/// is waited for in the function; a later one sends the message back with
/// it, to return 2 s early and wait out the rest; a message back after its
/// slot has passed reserves anew (sending late would crowd the next slot).
#[tokio::test]
async fn a_rate_limited_endpoint_spaces_its_attempts() {
    use morag_shared::ports::EndpointStore;
    let f = fixture(LOCAL).await;
    let (url, hits) = answering("HTTP/1.1 204 No Content").await;
    let (e, first) = endpoint_delivery(&f, &url, |e| e.rate_limit_per_s = Some(1));
    let hit_count = || hits.load(std::sync::atomic::Ordering::SeqCst);
    let interval = e.send_interval().unwrap();
    let step = chrono::Duration::from_std(interval).unwrap();
    let to_endpoint = || {
        let mut d = delivery(&url);
        d.endpoint_id = Some(e.endpoint_id.clone());
        d
    };
    let t0 = morag_shared::time::now();
    assert_eq!(f.deliver(first, 1).await.1.state, DeliveryState::Succeeded);
    // others took the next three slots
    for _ in 0..3 {
        f.store
            .reserve_send(&e.tenant, &e.endpoint_id, interval, t0)
            .await
            .unwrap();
    }
    let (outcome, after) = f.deliver(to_endpoint(), 1).await;
    assert_eq!(
        (outcome, after.state, after.attempts.len()),
        (Outcome::Done, DeliveryState::Pending, 0)
    );
    let back = requeued(&f);
    let slot = back[0].slot.expect("sent back with its slot");
    assert_eq!(slot.attempt, 1);
    let ahead = (slot.at - t0).num_milliseconds();
    assert!((3900..=4250).contains(&ahead), "{ahead} ms");
    assert_eq!(hit_count(), 1);

    // back too early (more than 3 s ahead): sent back again, same slot
    f.sender.deliver(&received(back[0].clone(), 1)).await.unwrap();
    let again = requeued(&f);
    assert_eq!((again.len(), again[1].slot), (2, Some(slot)));
    // back 2 s early, as meant: waits in the function, sends at its slot
    tokio::time::sleep(
        (slot.at - morag_shared::time::now() - chrono::Duration::seconds(2))
            .to_std()
            .unwrap(),
    )
    .await;
    f.sender.deliver(&received(again[1].clone(), 1)).await.unwrap();
    assert!(morag_shared::time::now() >= slot.at);
    assert_eq!(hit_count(), 2);
    let tat = f.store.send_slots.lock().unwrap()[&e.endpoint_id];
    assert_eq!(tat, slot.at + step, "no new slot for it");

    // back after its slot passed: a new slot, not the stale one
    let late = DeliveryMessage {
        slot: Some(SendSlot {
            at: morag_shared::time::now() - chrono::Duration::milliseconds(500),
            attempt: 1,
        }),
        ..to_endpoint().message()
    };
    let mut d = to_endpoint();
    d.delivery_id = late.delivery_id.clone();
    d.task_id = late.task_id;
    f.store.deliveries.lock().unwrap().insert(d.delivery_id.clone(), d);
    f.sender.deliver(&received(late, 1)).await.unwrap();
    assert_eq!(hit_count(), 3);
    assert!(morag_shared::time::now() >= tat, "it waited for the next free slot");
    assert_eq!(f.store.send_slots.lock().unwrap()[&e.endpoint_id], tat + step);
}

/// The budget is per cycle and counts recorded attempts, not only
/// receives: a delivery whose cycle already made every attempt is spent on
/// a fresh message's first receive (a message a wait put back), and a new
/// cycle starts a fresh budget whatever the earlier cycles made.
#[tokio::test]
async fn the_budget_counts_the_cycles_recorded_attempts() {
    let f = fixture(LOCAL).await;
    let (url, hits) = answering("HTTP/1.1 503 Service Unavailable").await;
    let failed = |cycle: u32| Attempt {
        at: morag_shared::time::now(),
        status_code: Some(503),
        error: None,
        latency_ms: 1,
        excerpt: None,
        cycle: Some(cycle),
    };
    // schedule "1,1": three attempts a cycle, all made in cycle 0
    let mut spent = delivery(&url);
    spent.attempts = vec![failed(0), failed(0), failed(0)];
    spent.attempts_total = 3;
    let (outcome, after) = f.deliver(spent, 1).await;
    assert_eq!(
        (outcome, after.state, after.attempts.len()),
        (Outcome::Done, DeliveryState::Dead, 3)
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no fourth attempt");

    // redelivered: cycle 1 has its own three
    let mut again = delivery(&url);
    again.cycle = 1;
    again.attempts = vec![failed(0), failed(0), failed(0)];
    again.attempts_total = 3;
    let (outcome, after) = f.deliver(again, 1).await;
    assert_eq!(
        (outcome, after.state, after.attempts_in_cycle()),
        (Outcome::Again, DeliveryState::Pending, 1)
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // its second attempt waits the schedule's second gap, however few
    // receives its message had
    let mut second = after.clone();
    second.attempts.push(failed(1));
    let (_, after) = f.deliver(second, 1).await;
    assert_eq!(
        (after.state, after.attempts_in_cycle()),
        (DeliveryState::Dead, 3),
        "third attempt of the cycle was its last"
    );
}

/// Every recorded attempt gets an entry on its task's timeline, numbered,
/// with the delivery's state after it; a message that makes no attempt
/// adds none.
#[tokio::test]
async fn each_recorded_attempt_is_on_its_tasks_timeline() {
    let f = fixture(TargetPolicy {
        allow_http: true,
        allow_loopback: true,
    })
    .await;
    let url = nothing_listens();
    let d = delivery(&url);
    let entries = |task: &TaskId| {
        f.store
            .attempt_entries
            .lock()
            .unwrap()
            .get(task)
            .cloned()
            .unwrap_or_default()
    };
    let (_, after) = f.deliver(d.clone(), 1).await;
    let (_, after) = f.deliver(after, 3).await;
    let got: Vec<(u64, DeliveryState, u32, u64, bool)> = entries(&d.task_id)
        .iter()
        .map(|e| {
            (
                e.n,
                e.record.state,
                e.record.attempt_no,
                e.record.sequence,
                e.record.attempt.error.is_some(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, DeliveryState::Pending, 1, 1, true),
            (2, DeliveryState::Dead, 3, 1, true)
        ]
    );
    assert!(entries(&d.task_id)
        .iter()
        .all(|e| e.record.delivery_id == d.delivery_id));
    // a finished delivery's message: no attempt, no entry
    f.deliver(after, 4).await;
    assert_eq!(entries(&d.task_id).len(), 2);
}
