//! The README's operator commands, run as printed: each `cargo run -p
//! morag-cli --bin morag -- ...` line of the README, with its placeholders
//! filled from a test stack (`<TableName>`, `<id from list>`, the queue URLs;
//! `a|b|c` takes each alternative, `[...]` is run with the option), against
//! the emulator through `MORAG_AWS_ENDPOINT_URL`. `cargo run` is the `morag`
//! binary `make test` built.

use std::time::Duration;

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
    let out = tokio::process::Command::new(morag_tests::debug_binary("morag"))
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

/// The fenced `sh` lines of the README's "Try it" section.
fn try_it_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Try it")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Try it section");
    section
        .lines()
        .filter(|l| l.starts_with("python3 ") || l.starts_with("curl ") || l.starts_with("target/debug/morag "))
        .map(|l| l.split("   #").next().unwrap().trim().to_owned())
        .collect()
}

/// `make dev`'s walkthrough as the README prints it: `morag dev`, the bundled
/// receiver started with the printed secret, and every curl line run by the
/// shell from the repository root, the upload flow included. Only the ports
/// (3000, 8001: taken from free ones, so a developer's own `make dev` can run
/// alongside), `{task_id}` (the first answer's) and the upload's `{url}` and
/// `{upload_id}` are filled in. Each curl answers JSON
/// without an error, the task completes, and the receiver verifies the
/// signature of every webhook.
#[tokio::test]
async fn the_readme_walkthrough_runs_as_printed() {
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lines = try_it_lines();
    assert!(lines.len() >= 10, "{lines:?}");
    let (_dev, api_port) = morag_tests::spawn_morag_dev(SECRET).await;
    let hook_port = morag_tests::free_port();
    let fill = |line: &str, task_id: &str| {
        line.replace("127.0.0.1:3000", &format!("127.0.0.1:{api_port}"))
            .replace("127.0.0.1:8001", &format!("127.0.0.1:{hook_port}"))
            .replace("<the whsec_ secret make dev printed>", SECRET)
            .replace("{task_id}", task_id)
    };

    // the receiver line, as printed, plus the port the README leaves at its default
    let receiver_line = lines.iter().find(|l| l.starts_with("python3 ")).unwrap();
    let mut receiver = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} --port {hook_port}", fill(receiver_line, "")))
        .current_dir(&root)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", hook_port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the receiver did not start");

    let completes = |task_id: String| {
        let (client, status) = (
            client.clone(),
            format!("http://127.0.0.1:{api_port}/api/v1/status/{task_id}"),
        );
        async move {
            for _ in 0..300 {
                let s = morag_tests::get_local_json(&client, &status).await;
                if s["status"] == "completed" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("task {task_id} never completed");
        }
    };
    let (mut task_id, mut upload_id, mut upload_url) = (String::new(), String::new(), String::new());
    for line in lines.iter().filter(|l| l.starts_with("curl ")) {
        let command = fill(line, &task_id)
            .replace("{upload_id}", &upload_id)
            .replace("{url}", &upload_url);
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&root)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if command.starts_with("curl -X PUT") {
            // S3 answers a stored object with an empty 200; errors are XML
            assert!(
                out.stdout.is_empty(),
                "{command}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{command}: not JSON: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(body.get("error").is_none(), "{command}: {body}");
        if let Some(id) = body["upload_id"].as_str().filter(|_| body["url"].is_string()) {
            upload_id = id.to_owned();
            upload_url = body["url"].as_str().unwrap().to_owned();
        }
        let of_a_file = command.contains("/ingest/file") || command.contains("/ingest/upload");
        if let Some(id) = body["task_id"].as_str().filter(|_| of_a_file) {
            // the walkthrough reads its first task once it has run, and the
            // uploaded file completes too (the URL's task needs the internet)
            completes(id.to_owned()).await;
            if task_id.is_empty() {
                task_id = id.to_owned();
            }
        }
    }
    assert!(!upload_id.is_empty(), "the README shows the upload flow");

    // `morag ingest` and `morag watch`, as printed; only the API's address
    // comes from the environment, as the README says; `{task_id}` is the
    // last ingested task
    let mut last_task = String::new();
    for line in lines.iter().filter(|l| l.starts_with("target/debug/morag ")) {
        let line = line.replace("{task_id}", &last_task);
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env("MORAG_API_URL", format!("http://127.0.0.1:{api_port}"))
            .current_dir(&root)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        if line.contains(" ingest ") {
            // the task id first, then (with --watch) the task's lines
            last_task = stdout.lines().next().unwrap_or_default().trim().to_owned();
            completes(last_task.clone()).await;
        }
        if line.contains(" watch ") || line.contains(" --watch") {
            // exits 0 only at completed, saying so last
            assert!(
                stdout.trim_end().ends_with(&format!("{last_task} completed")),
                "{line}: {stdout}"
            );
        }
    }

    // the receiver printed one verified line per webhook, ending with task_completed
    use tokio::io::AsyncBufReadExt;
    let mut stdout = tokio::io::BufReader::new(receiver.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains("task_completed")) {
        let line = tokio::time::timeout_at(deadline, stdout.next_line())
            .await
            .expect("task_completed reached the receiver")
            .unwrap()
            .expect("receiver output");
        if line.starts_with("msg_") {
            assert!(line.ends_with("signature valid"), "{line}");
            seen.push(line);
        }
    }
    assert!(seen[0].contains("task_started"), "{seen:?}");
}
