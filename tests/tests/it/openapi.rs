//! The OpenAPI document: generated from the handlers' annotations and the
//! views they serialize (`morag openapi`), committed at docs/openapi.json,
//! served without a key at `GET /api/v1/openapi.json`. Schemathesis (run by
//! `make test` against `morag dev`) holds the API to it.

use std::collections::BTreeSet;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::Value;

use morag_tests::{call, spawn_env};

use crate::auth::{PUBLIC_ROUTES, ROUTES};

fn committed() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    std::fs::read_to_string(path).expect("docs/openapi.json")
}

#[test]
fn the_committed_document_is_what_the_code_declares() {
    assert!(
        morag_cli::openapi::document_text() == committed(),
        "docs/openapi.json is not what the code declares: run `cargo run -q -p morag-cli -- openapi > docs/openapi.json`"
    );
    // and what the status function serves is that file
    assert_eq!(morag_status::OPENAPI_DOCUMENT, committed());
    // and the README's command prints it
    let out = std::process::Command::new(morag_tests::debug_binary("morag"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8(out.stdout).unwrap() == committed());
}

/// Every link names an operation of the document (`operationId`, as
/// OpenAPI spells it) and only parameters that operation takes.
#[test]
fn the_documents_links_lead_to_its_operations() {
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let mut operations = std::collections::BTreeMap::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let params: BTreeSet<String> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            operations.insert(op["operationId"].as_str().unwrap().to_owned(), params);
        }
    }
    let mut op_bodies = std::collections::BTreeMap::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let schema = match schema["$ref"].as_str() {
                Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
                None => schema,
            };
            op_bodies.insert(op["operationId"].as_str().unwrap().to_owned(), schema.clone());
        }
    }
    let (mut links, mut body_links) = (0, 0);
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for response in op["responses"].as_object().unwrap().values() {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{name}: {link}"));
                    let params = &operations[target];
                    for param in link["parameters"].as_object().into_iter().flatten().map(|(k, _)| k) {
                        assert!(params.contains(param), "{name}: {target} takes no {param}");
                    }
                    if let Some(body) = link.get("requestBody") {
                        // fields of the target's body, from the answer
                        let schema = &op_bodies[target];
                        for (field, value) in body.as_object().unwrap() {
                            assert!(
                                schema["properties"].get(field).is_some(),
                                "{name}: {target}'s body has no {field}"
                            );
                            assert!(
                                value.as_str().unwrap().starts_with("$response.body#/"),
                                "{name}: {value}"
                            );
                        }
                        body_links += 1;
                    }
                    links += 1;
                }
            }
        }
    }
    assert_eq!((links, body_links), (19, 1), "the links of add_links");
}

/// Every `$ref` names a schema of the document's components (a response
/// type may refer to a schema without collecting it).
#[test]
fn every_reference_resolves() {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 100, "{} references", found.len());
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}: not a schema reference"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
    }
}

/// The timeline's `wait` bound in the document is the one the handler
/// enforces (the annotation writes the number; the handler reads
/// `MAX_WAIT_S`), and schemathesis's 25 s response-time limit for it
/// (scripts/schemathesis.toml) stays above that wait.
#[test]
fn the_documented_wait_is_the_enforced_one() {
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let params = doc["paths"]["/api/v1/status/{task_id}/timeline"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let wait = params.iter().find(|p| p["name"] == "wait").expect("wait");
    let max_wait = u64::from(morag_status::timeline::MAX_WAIT_S);
    assert_eq!(wait["schema"]["maximum"].as_u64(), Some(max_wait));
    let toml =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/schemathesis.toml"))
            .unwrap();
    let limit: f64 = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("checks.max_response_time = "))
        .expect("the timeline's response-time limit")
        .parse()
        .unwrap();
    assert!(
        limit >= max_wait as f64 + 5.0,
        "{limit} s leaves no room over a {max_wait} s wait"
    );
}

#[test]
fn the_document_describes_every_route_with_its_errors() {
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let route = path
                .replace("{task_id}", "{task}")
                .replace("{delivery_id}", "{delivery}")
                .replace("{endpoint_id}", "{endpoint}");
            documented.insert((method.to_uppercase(), route.clone()));
            let codes: BTreeSet<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let public = PUBLIC_ROUTES
                .iter()
                .any(|(m, p, _)| *m == method.to_uppercase() && *p == route);
            assert_eq!(
                public,
                !codes.contains("401"),
                "{method} {path}: 401 unless public: {codes:?}"
            );
            assert!(
                codes.contains("503") && codes.contains("500"),
                "{method} {path}: {codes:?}"
            );
            assert!(
                codes.iter().any(|c| c.starts_with('2')),
                "{method} {path}: no success: {codes:?}"
            );
            // every error answer is the error shape
            for (code, response) in op["responses"].as_object().unwrap() {
                if code.starts_with('4') || code.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {code}"
                    );
                }
            }
            let has_path_params = path.contains('{');
            if has_path_params {
                let params = op["parameters"].as_array().expect("parameters");
                for name in ["task_id", "delivery_id", "endpoint_id"] {
                    if path.contains(&format!("{{{name}}}")) {
                        assert!(
                            params.iter().any(|p| p["name"] == name && p["in"] == "path"),
                            "{method} {path}: {name}"
                        );
                    }
                }
            }
        }
    }
    let every: BTreeSet<(String, String)> = ROUTES
        .iter()
        .chain(PUBLIC_ROUTES.iter())
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, every, "the document names exactly the routes");
}

#[tokio::test]
async fn the_status_function_serves_the_document_without_a_key() {
    let env = spawn_env().await;
    let res = call(
        &env.status,
        Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, serde_json::from_str::<Value>(&committed()).unwrap());
}
