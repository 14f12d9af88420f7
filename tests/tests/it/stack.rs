//! The local stack is `template.yaml`: what the code expects of its
//! resources and configuration is checked against the stack the template
//! creates, so the two cannot drift apart unnoticed.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use morag_cli::stack::{self, LocalStack, INGEST, PROCESSOR, RECORDER, STATUS, WATCHDOG, WEBHOOK_SENDER};
use morag_shared::config::{IngestConfig, ProcessorConfig, RecorderConfig, SenderConfig, StatusConfig, WatchdogConfig};
use morag_shared::domain::delivery::{RetrySchedule, WEBHOOK_MAX_RECEIVES};
use morag_tests::{endpoint, spawn_env_configured, TEST_CURSOR_SECRET};

#[tokio::test]
async fn the_table_has_the_keys_and_indexes_the_adapter_queries() {
    let env = morag_tests::spawn_env().await;
    let table = env
        .ddb
        .describe_table()
        .table_name(&env.resources.names.table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<String> {
        schema.iter().map(|k| k.attribute_name().to_owned()).collect()
    };
    assert_eq!(keys(table.key_schema()), ["pk", "sk"]);
    let indexes: HashMap<String, Vec<String>> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| (g.index_name().unwrap().to_owned(), keys(g.key_schema())))
        .collect();
    // the GSIs `adapters::dynamodb::tasks` queries, with the attribute names it writes
    for (index, pk, sk) in [
        ("GSI1", "gsi1pk", "gsi1sk"),
        ("GSI2", "gsi2pk", "gsi2sk"),
        ("GSI3", "gsi3pk", "gsi3sk"),
        ("DueIndex", "due_pk", "due_sk"),
    ] {
        assert_eq!(indexes.get(index), Some(&vec![pk.to_owned(), sk.to_owned()]), "{index}");
    }
    let ttl = env
        .ddb
        .describe_time_to_live()
        .table_name(&env.resources.names.table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(
        ttl.attribute_name(),
        Some("expires_at"),
        "the TTL attribute the adapter writes"
    );
}

#[tokio::test]
async fn every_function_starts_from_the_templates_environment_alone() {
    let schedule: RetrySchedule = "1,1".parse().unwrap();
    let env = spawn_env_configured(&schedule, |_| {}).await;
    let local = stack::local_overrides(&endpoint(), false);
    let mut status = local.clone();
    status.push(("MORAG_CURSOR_SECRET", TEST_CURSOR_SECRET.to_owned()));
    let s = &env.stack;
    let ingest: IngestConfig = s.config(INGEST, &local).unwrap();
    let _: StatusConfig = s.config(STATUS, &status).unwrap();
    let recorder: RecorderConfig = s.config(RECORDER, &local).unwrap();
    let processor: ProcessorConfig = s.config(PROCESSOR, &local).unwrap();
    let sender: SenderConfig = s.config(WEBHOOK_SENDER, &local).unwrap();
    let watchdog: WatchdogConfig = s.config(WATCHDOG, &local).unwrap();
    // the template wires each function to the resources the others use
    let r = &env.resources;
    assert_eq!(ingest.processing_queue_url, r.processing_queue_url);
    assert_eq!(ingest.uploads_bucket, r.names.bucket);
    assert_eq!(recorder.webhook_queue_url, r.webhook_queue_url);
    assert_eq!(recorder.status_events_dlq_url, r.status_events_dlq_url);
    assert_eq!(processor.status_events_queue_url, r.status_events_queue_url);
    assert_eq!(processor.processing_dlq_url, r.processing_dlq_url);
    assert_eq!(sender.webhook_queue_url, r.webhook_queue_url);
    assert_eq!(sender.webhook_dlq_url, r.webhook_dlq_url);
    assert_eq!(sender.schedule, schedule, "WebhookRetrySchedule reaches the sender");
    assert_eq!(watchdog.processing_queue_url, r.processing_queue_url);
    assert_eq!(watchdog.processing_dlq_url, r.processing_dlq_url);
    assert_eq!(watchdog.webhook_queue_url, r.webhook_queue_url);
    assert!(processor.max_source_bytes >= ingest.max_upload_bytes);
    // the template's MaxUploadBytes default is the ceiling the code computes
    assert_eq!(ingest.max_upload_bytes, morag_ingest::MAX_DIRECT_FILE);

    // the status function's cursor secret is a Secrets Manager reference:
    // without an override it does not start, rather than start with it as text
    let err = s.config::<StatusConfig>(STATUS, &local).unwrap_err();
    assert!(format!("{err:#}").contains("MORAG_CURSOR_SECRET"), "{err:#}");

    // a variable the template stopped giving is named at start-up
    let mut broken: LocalStack = s.clone();
    broken
        .functions
        .get_mut(RECORDER)
        .unwrap()
        .env
        .remove("MORAG_WEBHOOK_QUEUE_URL");
    let err = broken.config::<RecorderConfig>(RECORDER, &local).unwrap_err();
    assert!(
        format!("{err:#}").contains("MORAG_WEBHOOK_QUEUE_URL is required"),
        "{err:#}"
    );
}

#[tokio::test]
async fn queues_dead_letter_and_functions_consume_them_as_the_template_says() {
    let env = spawn_env_configured(&"1,1".parse().unwrap(), |_| {}).await;
    let r = &env.resources;
    for (queue, dlq, receives) in [
        (&r.processing_queue_url, &r.processing_dlq_url, 5),
        (&r.status_events_queue_url, &r.status_events_dlq_url, 5),
        // a ceiling above every schedule's attempts: the sender ends a
        // delivery whose budget is spent and parks its message itself
        (&r.webhook_queue_url, &r.webhook_dlq_url, WEBHOOK_MAX_RECEIVES),
    ] {
        let attrs = env
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let policy: serde_json::Value = serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
        let dlq_name = dlq.rsplit('/').next().unwrap();
        assert!(
            policy["deadLetterTargetArn"].as_str().unwrap().ends_with(dlq_name),
            "{queue}: {policy}"
        );
        assert_eq!(policy["maxReceiveCount"].to_string(), receives.to_string(), "{queue}");
    }
    for (function, queue) in [
        (PROCESSOR, &r.processing_queue_url),
        (RECORDER, &r.status_events_queue_url),
        (WEBHOOK_SENDER, &r.webhook_queue_url),
    ] {
        let event = env.stack.queue_event(function).unwrap();
        assert_eq!(&event.queue_url, queue, "{function}");
        assert!(
            event
                .function_response_types
                .iter()
                .any(|t| t == "ReportBatchItemFailures"),
            "{function} reports partial batch failures"
        );
        assert!((1..=10).contains(&event.batch_size), "{function}");
    }
    for http_function in [INGEST, STATUS] {
        assert!(env.stack.function(http_function).unwrap().events.is_empty());
    }
}

/// Every HttpApi route of the template reaches a handler of its function's
/// router with that method (an unauthenticated call is 401, not 404/405;
/// 200 for the public OpenAPI document),
/// and every function with routes is one of the two HTTP functions.
#[tokio::test]
async fn every_template_route_is_served_by_its_function() {
    let env = morag_tests::spawn_env().await;
    let mut checked = 0;
    for (function, spec) in &env.stack.functions {
        let router = match function.as_str() {
            INGEST => &env.ingest,
            STATUS => &env.status,
            other => {
                assert!(spec.routes.is_empty(), "{other} has HTTP routes but no router");
                continue;
            }
        };
        assert!(!spec.routes.is_empty(), "{function} has no HttpApi route");
        for route in &spec.routes {
            let path = route
                .path
                .replace("{task_id}", "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b")
                .replace("{delivery_id}", "msg_0123456789abcdef01234567");
            let request = http::Request::builder()
                .method(route.method.as_str())
                .uri(&path)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = morag_tests::call(router, request).await;
            let public = crate::auth::PUBLIC_ROUTES
                .iter()
                .any(|(m, p, _)| *m == route.method && *p == route.path);
            let expected = if public {
                http::StatusCode::OK
            } else {
                http::StatusCode::UNAUTHORIZED
            };
            assert_eq!(res.status, expected, "{} {path}: {:?}", route.method, res.body);
            assert_eq!(env.stack.function_for_path(&path), Some(function.as_str()));
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} routes");
}
