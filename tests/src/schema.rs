//! Webhook bodies checked against `docs/webhook.schema.json` by an
//! independent validator (Python's `jsonschema`, in the project venv).

use serde_json::Value;

use morag_cli::stack::{python, repo_root};

/// Every problem of every body, one line each (empty: all valid).
pub fn webhook_body_problems(bodies: &[Value]) -> Vec<String> {
    let root = repo_root();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
for i, body in enumerate(json.load(sys.stdin)):
    for e in v.iter_errors(body):
        print(f"body {i} ({body.get('event_type')}): {'/'.join(map(str, e.absolute_path))}: {e.message}")
"#;
    let mut child = std::process::Command::new(python())
        .args(["-c", script])
        .arg(root.join("docs/webhook.schema.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python from the project venv (make test installs it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::to_string(bodies).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the schema check itself failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
