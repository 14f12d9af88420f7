//! The README's operator commands, run as printed: each `cargo run -p
//! morag-cli --bin morag -- ...` line of the README, with its placeholders
//! filled from a test stack (`<TableName>`, `<id from list>`, the queue URLs;
//! `a|b|c` takes each alternative, `[...]` is run with the option), against
//! the emulator through `MORAG_AWS_ENDPOINT_URL`. `cargo run` is the `morag`
//! binary `make test` built.

use morag_tests::{endpoint, spawn_env, TestEnv};

const PREFIX: &str = "cargo run -p morag-cli --bin morag -- ";

fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix(PREFIX))
        .map(|l| l.split("   #").next().unwrap().trim().to_owned())
        .collect()
}

async fn morag(args: &[String]) -> (bool, String, String) {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("morag");
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env("MORAG_AWS_ENDPOINT_URL", endpoint())
        .env_remove("MORAG_TABLE_NAME")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line's words with placeholders filled; one variant per `a|b|c`.
fn fill(line: &str, env: &TestEnv, key_id: &str) -> Vec<Vec<String>> {
    let r = &env.resources;
    let line = line
        .replace("<TableName>", &r.names.table)
        .replace("<id from list>", key_id)
        .replace(['[', ']'], "");
    let words: Vec<&str> = line.split_whitespace().collect();
    let alternatives = words
        .iter()
        .find(|w| w.contains('|'))
        .map(|w| w.split('|').collect::<Vec<_>>());
    let variants: Vec<Option<&str>> = match &alternatives {
        Some(a) => a.iter().map(|v| Some(*v)).collect(),
        None => vec![None],
    };
    variants
        .into_iter()
        .map(|choice| {
            let (queue, dlq) = match choice {
                Some("webhook") => (&r.webhook_queue_url, &r.webhook_dlq_url),
                Some("status-events") => (&r.status_events_queue_url, &r.status_events_dlq_url),
                _ => (&r.processing_queue_url, &r.processing_dlq_url),
            };
            words
                .iter()
                .map(|w| match *w {
                    w if w.contains('|') => choice.unwrap().to_owned(),
                    "<...QueueUrl>" => queue.clone(),
                    "<...DLQUrl>" => dlq.clone(),
                    w => w.to_owned(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_readme_operator_commands_work_as_printed() {
    let commands = readme_commands();
    assert!(commands.len() >= 5, "README commands: {commands:?}");
    let env = spawn_env().await;
    let mut key_id = String::new();
    let mut ran = 0;
    for line in &commands {
        for args in fill(line, &env, &key_id) {
            assert!(
                !args.iter().any(|a| a.contains('<')),
                "unfilled placeholder in {args:?}"
            );
            let (ok, stdout, stderr) = morag(&args).await;
            assert!(ok, "`morag {}` failed: {stderr}", args.join(" "));
            ran += 1;
            match args[..2].join(" ").as_str() {
                "keys create" => assert!(stdout.trim().starts_with("mrg_"), "{stdout}"),
                "keys list" => {
                    // acme's test key and the one just created
                    let ids: Vec<&str> = stdout.lines().filter_map(|l| l.split('\t').next()).collect();
                    assert_eq!(ids.len(), 2, "{stdout}");
                    key_id = ids[0].to_owned();
                }
                "keys revoke" => assert!(stdout.contains("revoked"), "{stdout}"),
                "webhooks secret" => assert!(stdout.trim().starts_with("whsec_"), "{stdout}"),
                "dlq redrive" => assert!(stdout.contains("moved 0 message(s)"), "{stdout}"),
                other => panic!("a README command this test does not know: {other}"),
            }
        }
    }
    // create, list, revoke, secret, and redrive for each of the three queues
    assert_eq!(ran, 7);
    let keys = morag_shared::ports::KeyStore::list_keys(env.store.as_ref(), &"acme".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one of acme's two keys was revoked");
}
