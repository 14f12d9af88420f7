//! `morag dlq redrive` against the emulator (moto has no
//! StartMessageMoveTask, so this exercises the receive/send/delete path).

use serde_json::json;

use morag_tests::spawn_env;

#[tokio::test]
async fn parked_status_events_move_back_without_loss() {
    let env = spawn_env().await;
    for i in 0..23 {
        env.sqs
            .send_message()
            .queue_url(&env.resources.status_events_dlq_url)
            .message_body(format!("{{\"n\":{i}}}"))
            .message_attributes(
                "morag_reason",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("invalid_json")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let done = morag_cli::dlq::redrive_plain(
        &env.sqs,
        &env.resources.status_events_queue_url,
        &env.resources.status_events_dlq_url,
    )
    .await
    .unwrap();
    assert!(!done.move_task_started, "moto has no StartMessageMoveTask");
    assert_eq!(done.moved, 23);
    let mut bodies = Vec::new();
    loop {
        let out = env
            .sqs
            .receive_message()
            .queue_url(&env.resources.status_events_queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            assert!(
                m.message_attributes().is_none_or(|a| !a.contains_key("morag_reason")),
                "reason attributes stay behind"
            );
            bodies.push(m.body().unwrap().to_owned());
            env.sqs
                .delete_message()
                .queue_url(&env.resources.status_events_queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 23, "every message arrived");
    assert!(env.drain_dlq(&env.resources.status_events_dlq_url).await.is_empty());
}

#[tokio::test]
async fn parked_webhooks_get_a_fresh_cycle_and_foreign_bodies_stay() {
    use morag_shared::ports::DeliveryStore;
    let env = spawn_env().await;
    // a dead delivery, parked
    let delivery = env
        .insert_delivery(
            &uuid::Uuid::new_v4().to_string(),
            "acme",
            "msg_0123456789abcdef01234567",
            "https://hooks.example.com/h",
            morag_shared::domain::DeliveryState::Dead,
        )
        .await;
    let task_id = delivery.task_id;
    env.sqs
        .send_message()
        .queue_url(&env.resources.webhook_dlq_url)
        .message_body(json!({"task_id": task_id, "delivery_id": delivery.delivery_id, "cycle": 0}).to_string())
        .send()
        .await
        .unwrap();
    env.sqs
        .send_message()
        .queue_url(&env.resources.webhook_dlq_url)
        .message_body("garbage")
        .send()
        .await
        .unwrap();

    // a message of a delivery that succeeded since, and one whose delivery is gone
    let succeeded = env
        .insert_delivery(
            &uuid::Uuid::new_v4().to_string(),
            "acme",
            "msg_1123456789abcdef01234567",
            "https://hooks.example.com/h",
            morag_shared::domain::DeliveryState::Succeeded,
        )
        .await;
    let gone = json!({"task_id": uuid::Uuid::new_v4(), "delivery_id": "msg_2123456789abcdef01234567", "cycle": 0});
    env.send_messages(
        &env.resources.webhook_dlq_url,
        &[serde_json::to_string(&succeeded.message()).unwrap(), gone.to_string()],
    )
    .await;

    let queue = morag_shared::adapters::sqs::SqsQueue::new(env.sqs.clone(), env.resources.webhook_queue_url.clone());
    let done = morag_cli::dlq::redrive_webhooks(&env.sqs, &env.resources.webhook_dlq_url, env.store.as_ref(), &queue)
        .await
        .unwrap();
    assert_eq!((done.moved, done.dropped, done.stale, done.kept.len()), (1, 1, 1, 1));
    // the body that is not a delivery message is still there, visible at once
    let left = env.drain_dlq(&env.resources.webhook_dlq_url).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "garbage");
    let s = env
        .store
        .get_delivery(&succeeded.task_id, &succeeded.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.state, s.cycle),
        (morag_shared::domain::DeliveryState::Succeeded, 0),
        "not sent again"
    );
    let d = env
        .store
        .get_delivery(&task_id, &delivery.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.state, d.cycle, d.enqueued),
        (morag_shared::domain::DeliveryState::Pending, 1, true)
    );
    assert_eq!(env.webhook_queue_depth().await, 1);
}

#[tokio::test]
async fn the_cli_finds_a_local_stacks_queues_by_its_name() {
    let env = spawn_env().await;
    let bodies: Vec<String> = (0..3).map(|i| format!("job {i}")).collect();
    env.send_messages(&env.resources.processing_dlq_url, &bodies).await;
    let stack = env.stack.stack.clone();
    let out = tokio::process::Command::new(morag_tests::debug_binary("morag"))
        .args([
            "dlq",
            "redrive",
            "--queue",
            "processing",
            "--stack",
            &stack,
            "--endpoint",
            &morag_tests::endpoint(),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("moved 3 message(s)"), "{stdout}");
    assert_eq!(env.queued_jobs().await, 3);
}
