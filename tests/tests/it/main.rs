//! Integration tests: the real routers and adapters against moto server
//! (started by `make test`), one set of resources per test.

mod auth;
mod bad_requests;
mod dev_server;
mod dlq;
mod endpoints;
mod failures;
mod fixtures;
mod iam;
mod idempotency;
mod ingest;
mod lambda;
mod lifecycle;
mod logs;
mod openapi;
mod python_worker;
mod readme;
mod signing;
mod soak;
mod stack;
mod status;
mod timeline;
mod uploads;
mod watch;
mod watchdog;
mod webhooks;

use axum::body::Body;
use http::Request;
use morag_tests::multipart::Form;
use serde_json::Value;

/// A small document with non-ASCII and a NUL byte: stored bytes must match.
pub const DOC: &[u8] = b"# Notes\n\nFirst paragraph.\n\nSecond paragraph, with \xe2\x9c\x93 and a NUL \x00 byte.\n";

pub fn file_request(key: &str, form: Form) -> Request<Body> {
    Request::post("/api/v1/ingest/file")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", Form::content_type())
        .body(Body::from(form.build()))
        .unwrap()
}

pub fn url_request(key: &str, body: &Value) -> Request<Body> {
    json_post("/api/v1/ingest/url", key, body)
}

/// A JSON POST with an API key.
pub fn json_post(path: &str, key: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub fn status_request(key: &str, task_id: &str) -> Request<Body> {
    Request::get(format!("/api/v1/status/{task_id}"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

pub fn doc_form() -> Form {
    Form::new()
        .text("source_type", "document")
        .file("file", "notes.md", "text/markdown", DOC)
}
