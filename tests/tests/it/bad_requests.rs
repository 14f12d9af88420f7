//! Bad input gets a clear JSON error with the right 4xx status, and nothing
//! is written: no item, no object, no message.

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{json, Value};

use morag_tests::multipart::{Form, BOUNDARY};
use morag_tests::{call, spawn_env_with};

use crate::{file_request, status_request, url_request, DOC};

struct Case {
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    code: &'static str,
}

fn url_case(name: &'static str, key: &str, body: Value, status: StatusCode, code: &'static str) -> Case {
    Case {
        name,
        request: url_request(key, &body),
        status,
        code,
    }
}

fn file_case(name: &'static str, key: &str, form: Form, status: StatusCode, code: &'static str) -> Case {
    Case {
        name,
        request: file_request(key, form),
        status,
        code,
    }
}

fn raw(
    name: &'static str,
    key: &str,
    path: &str,
    content_type: &str,
    body: impl Into<Body>,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        request: Request::post(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", content_type)
            .body(body.into())
            .unwrap(),
        status,
        code,
    }
}

const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

fn web(extra: Value) -> Value {
    let mut body = json!({"source_type": "web", "url": "https://example.com/page"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_right_status_and_code_and_write_nothing() {
    // a small limit keeps the over-limit case cheap
    let env = spawn_env_with(|cfg| cfg.max_upload_bytes = 4096).await;
    let k = env.key_a.clone();
    let doc = || {
        Form::new()
            .text("source_type", "document")
            .file("file", "a.md", "text/markdown", DOC)
    };
    let long_hook = format!("https://example.com/{}", "a".repeat(2048));
    let big_metadata = json!({"blob": "x".repeat(17 * 1024)});
    let mp = Form::content_type();

    let cases = vec![
        // --- JSON route
        url_case(
            "missing source_type",
            &k,
            json!({"url": "https://example.com/"}),
            UNPROCESSABLE,
            "missing_field",
        ),
        url_case(
            "missing url",
            &k,
            json!({"source_type": "web"}),
            UNPROCESSABLE,
            "missing_field",
        ),
        url_case(
            "unknown source_type",
            &k,
            web(json!({"source_type": "pdf"})),
            UNPROCESSABLE,
            "invalid_source_type",
        ),
        url_case(
            "source_type wrong case",
            &k,
            web(json!({"source_type": "WEB"})),
            UNPROCESSABLE,
            "invalid_source_type",
        ),
        url_case(
            "source_type not a string",
            &k,
            web(json!({"source_type": 3})),
            UNPROCESSABLE,
            "invalid_field_type",
        ),
        url_case(
            "relative url",
            &k,
            web(json!({"url": "/docs/a.html"})),
            UNPROCESSABLE,
            "invalid_url",
        ),
        url_case(
            "ftp url",
            &k,
            web(json!({"url": "ftp://example.com/a"})),
            UNPROCESSABLE,
            "invalid_url",
        ),
        url_case(
            "javascript url",
            &k,
            web(json!({"url": "javascript:alert(1)"})),
            UNPROCESSABLE,
            "invalid_url",
        ),
        url_case(
            "url with credentials",
            &k,
            web(json!({"url": "https://user:pw@example.com/"})),
            UNPROCESSABLE,
            "invalid_url",
        ),
        url_case(
            "http webhook in production",
            &k,
            web(json!({"webhook_url": "http://hooks.example.com/"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook with user-info",
            &k,
            web(json!({"webhook_url": "https://u:p@hooks.example.com/"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to loopback",
            &k,
            web(json!({"webhook_url": "https://127.0.0.1/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to ::1",
            &k,
            web(json!({"webhook_url": "https://[::1]/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to 10/8",
            &k,
            web(json!({"webhook_url": "https://10.0.0.8/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to cloud metadata",
            &k,
            web(json!({"webhook_url": "https://169.254.169.254/latest"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to CGNAT",
            &k,
            web(json!({"webhook_url": "https://100.64.1.1/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to unique-local v6",
            &k,
            web(json!({"webhook_url": "https://[fd00::1]/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to mapped loopback",
            &k,
            web(json!({"webhook_url": "https://[::ffff:127.0.0.1]/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to decimal loopback",
            &k,
            web(json!({"webhook_url": "https://2130706433/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook to localhost",
            &k,
            web(json!({"webhook_url": "https://localhost:8443/h"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook too long",
            &k,
            web(json!({"webhook_url": long_hook})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "webhook not a URL",
            &k,
            web(json!({"webhook_url": "not a url"})),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        url_case(
            "metadata is an array",
            &k,
            web(json!({"metadata": [1, 2]})),
            UNPROCESSABLE,
            "invalid_metadata",
        ),
        url_case(
            "metadata is a string",
            &k,
            web(json!({"metadata": "{}"})),
            UNPROCESSABLE,
            "invalid_metadata",
        ),
        url_case(
            "metadata too large",
            &k,
            web(json!({"metadata": big_metadata})),
            UNPROCESSABLE,
            "invalid_metadata",
        ),
        url_case(
            "unknown field",
            &k,
            web(json!({"webhookUrl": "https://hooks.example.com/"})),
            UNPROCESSABLE,
            "unknown_field",
        ),
        raw(
            "malformed JSON",
            &k,
            "/api/v1/ingest/url",
            "application/json",
            "{\"source_type\": \"web\",",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        raw(
            "JSON array body",
            &k,
            "/api/v1/ingest/url",
            "application/json",
            "[]",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        raw(
            "empty JSON body",
            &k,
            "/api/v1/ingest/url",
            "application/json",
            "",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        raw(
            "form-encoded body to the JSON route",
            &k,
            "/api/v1/ingest/url",
            "application/x-www-form-urlencoded",
            "source_type=web",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        raw(
            "JSON body over 64 KiB",
            &k,
            "/api/v1/ingest/url",
            "application/json",
            web(json!({"metadata": {"x": "y".repeat(70_000)}})).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        // --- multipart route
        file_case(
            "missing file",
            &k,
            Form::new().text("source_type", "document"),
            UNPROCESSABLE,
            "missing_field",
        ),
        file_case(
            "missing source_type",
            &k,
            Form::new().file("file", "a.md", "text/markdown", DOC),
            UNPROCESSABLE,
            "missing_field",
        ),
        file_case(
            "empty file",
            &k,
            Form::new()
                .text("source_type", "document")
                .file("file", "a.md", "text/markdown", b""),
            UNPROCESSABLE,
            "empty_file",
        ),
        file_case(
            "unknown source_type",
            &k,
            Form::new()
                .text("source_type", "spreadsheet")
                .file("file", "a.md", "text/markdown", DOC),
            UNPROCESSABLE,
            "invalid_source_type",
        ),
        file_case(
            "metadata not JSON",
            &k,
            doc().text("metadata", "{project: docs}"),
            UNPROCESSABLE,
            "invalid_metadata",
        ),
        file_case(
            "metadata not an object",
            &k,
            doc().text("metadata", "[\"a\"]"),
            UNPROCESSABLE,
            "invalid_metadata",
        ),
        file_case(
            "private webhook",
            &k,
            doc().text("webhook_url", "https://192.168.1.20/hook"),
            UNPROCESSABLE,
            "invalid_webhook_url",
        ),
        file_case(
            "unknown form field",
            &k,
            doc().text("priority", "high"),
            UNPROCESSABLE,
            "unknown_field",
        ),
        file_case(
            "file given twice",
            &k,
            doc().file("file", "b.md", "text/markdown", DOC),
            UNPROCESSABLE,
            "duplicate_field",
        ),
        file_case(
            "file over the limit",
            &k,
            Form::new()
                .text("source_type", "document")
                .file("file", "big.md", "text/markdown", &[b'x'; 4097]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        raw(
            "multipart without boundary",
            &k,
            "/api/v1/ingest/file",
            "multipart/form-data",
            doc().build(),
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
        ),
        raw(
            "truncated multipart",
            &k,
            "/api/v1/ingest/file",
            &mp,
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"source_type\"\r\n\r\ndoc"),
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
        ),
        raw(
            "JSON to the file route",
            &k,
            "/api/v1/ingest/file",
            "application/json",
            web(json!({})).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        Case {
            name: "no content type",
            request: Request::post("/api/v1/ingest/file")
                .header("authorization", format!("Bearer {k}"))
                .body(Body::from(doc().build()))
                .unwrap(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
        },
        Case {
            name: "idempotency key too long",
            request: {
                let mut r = url_request(&k, &web(json!({})));
                r.headers_mut()
                    .insert("idempotency-key", "k".repeat(256).parse().unwrap());
                r
            },
            status: StatusCode::BAD_REQUEST,
            code: "invalid_idempotency_key",
        },
        Case {
            name: "GET on an ingest route",
            request: Request::get("/api/v1/ingest/url")
                .header("authorization", format!("Bearer {k}"))
                .body(Body::empty())
                .unwrap(),
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
        },
        Case {
            name: "unknown ingest route",
            request: Request::post("/api/v1/ingest/pdf")
                .header("authorization", format!("Bearer {k}"))
                .body(Body::empty())
                .unwrap(),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
    ];
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for case in cases {
        let res = call(&env.ingest, case.request).await;
        if res.status != case.status || res.error_code() != case.code {
            failures.push(format!(
                "{}: got {} {:?}, want {} {}",
                case.name, res.status, res.body, case.status, case.code
            ));
        }
        let message = res.body["error"]["message"].as_str().unwrap_or("");
        if message.is_empty() {
            failures.push(format!("{}: no error message", case.name));
        }
        env.assert_nothing_written(case.name).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // the status route too
    let res = call(&env.status, status_request(&k, "not-a-task")).await;
    assert_eq!(
        (res.status, res.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_task_id")
    );
}
