//! The sender with in-memory stores: the send-time SSRF matrix, and the
//! retry bookkeeping without waiting on SQS.

use std::collections::HashMap;

use morag_shared::adapters::memory::{MemoryDeadLetters, MemorySecretStore, MemoryTaskStore, MemoryVisibility};
use morag_shared::domain::delivery::USER_AGENT;
use morag_shared::domain::{DeliveryId, TaskId, WebhookEvent};

use super::*;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

struct Fixture {
    store: Arc<MemoryTaskStore>,
    visibility: Arc<MemoryVisibility>,
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
            secrets,
            visibility: visibility.clone(),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
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
        },
    );
    Fixture {
        store,
        visibility,
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
        state: DeliveryState::Pending,
        created_at: morag_shared::time::now(),
        enqueued: true,
        cycle: 0,
        attempts: Vec::new(),
    }
}

impl Fixture {
    async fn attempt(&self, url: &str, attempt_no: u32) -> (Outcome, Delivery) {
        self.deliver(delivery(url), attempt_no).await
    }

    /// Stores `d`, delivers its cycle-0 message as attempt `attempt_no`, and
    /// returns the outcome and the delivery as stored afterwards.
    async fn deliver(&self, d: Delivery, attempt_no: u32) -> (Outcome, Delivery) {
        self.store
            .deliveries
            .lock()
            .unwrap()
            .insert(d.delivery_id.clone(), d.clone());
        let outcome = self.sender.deliver(&d.message(), attempt_no, "receipt").await.unwrap();
        let after = self.store.deliveries.lock().unwrap()[&d.delivery_id].clone();
        (outcome, after)
    }
}

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

#[tokio::test]
async fn retries_set_the_visibility_and_the_last_attempt_is_dead() {
    let f = fixture(TargetPolicy {
        allow_http: true,
        allow_loopback: true,
    })
    .await;
    // nothing listens here
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/h");
    let (outcome, after) = f.attempt(&url, 1).await;
    assert_eq!((outcome, after.state), (Outcome::Again, DeliveryState::Pending));
    let (delay, _) = (f.visibility.changes.lock().unwrap()[0].1, ());
    assert!(
        delay >= Duration::from_millis(800) && delay <= Duration::from_millis(1200),
        "{delay:?}"
    );
    // attempt 3 of 3: dead, visible again at once so SQS moves it to the DLQ
    let (outcome, after) = f.attempt(&url, 3).await;
    assert_eq!((outcome, after.state), (Outcome::Again, DeliveryState::Dead));
    assert_eq!(f.visibility.changes.lock().unwrap().last().unwrap().1, Duration::ZERO);
}

#[tokio::test]
async fn a_tenant_without_a_secret_fails_the_delivery_clearly() {
    let f = fixture(TargetPolicy::default()).await;
    let mut d = delivery("https://93.184.215.14/h");
    d.tenant = "nosecret".parse().unwrap();
    let (outcome, after) = f.deliver(d, 1).await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(after.state, DeliveryState::Failed);
    assert_eq!(after.attempts[0].error, Some(AttemptError::NoSigningSecret));
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
    };
    assert_eq!(f.sender.deliver(&missing, 1, "r").await.unwrap(), Outcome::Done);
}
