#!/usr/bin/env python3
"""Writes the API Gateway HTTP API (payload 2.0) fixtures in events/ for the
routes that have no hand-written one. Run from the repository root after a
route changes; `tests/tests/it/lambda.rs` runs every fixture through its
binary and checks each route has one."""
import base64
import json
import pathlib

TASK = "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b"
DELIVERY = "msg_0123456789abcdef01234567"
ENDPOINT = "ep_0123456789abcdef01234567"
UPLOAD = "upl_0123456789abcdef0123456789abcdef"
HOST = "abc123defg.execute-api.us-east-1.amazonaws.com"

# file, method, route (API Gateway's), path parameters, query, JSON body
ROUTES = [
    ("status-history", "GET", "/api/v1/status/{task_id}/history", {"task_id": TASK}, "limit=2", None),
    ("openapi-get", "GET", "/api/v1/openapi.json", {}, "", None),
    ("status-timeline", "GET", "/api/v1/status/{task_id}/timeline", {"task_id": TASK}, "after=0&wait=1", None),
    ("status-recent", "GET", "/api/v1/status/events/recent", {}, "hours=24", None),
    ("tasks-list", "GET", "/api/v1/tasks", {}, "status=pending&limit=10", None),
    ("status-webhooks", "GET", "/api/v1/status/{task_id}/webhooks", {"task_id": TASK}, "", None),
    ("status-webhooks-redeliver", "POST", "/api/v1/status/{task_id}/webhooks/{delivery_id}/redeliver",
     {"task_id": TASK, "delivery_id": DELIVERY}, "", None),
    ("webhooks-secret-get", "GET", "/api/v1/webhooks/secret", {}, "", None),
    ("webhooks-secret-rotate", "POST", "/api/v1/webhooks/secret/rotate", {}, "overlap_seconds=3600", None),
    ("webhooks-public-keys-get", "GET", "/api/v1/webhooks/public-keys", {}, "", None),
    ("webhooks-public-keys-rotate", "POST", "/api/v1/webhooks/public-keys/rotate", {}, "", None),
    ("webhooks-signing-put", "PUT", "/api/v1/webhooks/signing", {}, "", {"schemes": ["v1", "v1a"]}),
    ("endpoints-list", "GET", "/api/v1/webhooks/endpoints", {}, "", None),
    ("endpoints-create", "POST", "/api/v1/webhooks/endpoints", {}, "",
     {"url": "https://hooks.example.com/morag", "event_types": ["task_completed", "task_failed"],
      "description": "ends only", "rate_limit_per_s": 5}),
    ("endpoints-get", "GET", "/api/v1/webhooks/endpoints/{endpoint_id}", {"endpoint_id": ENDPOINT}, "", None),
    ("endpoints-patch", "PATCH", "/api/v1/webhooks/endpoints/{endpoint_id}", {"endpoint_id": ENDPOINT}, "",
     {"disabled": True, "description": "paused for maintenance"}),
    ("endpoints-deliveries", "GET", "/api/v1/webhooks/endpoints/{endpoint_id}/deliveries",
     {"endpoint_id": ENDPOINT}, "state=pending", None),
    ("endpoints-recover", "POST", "/api/v1/webhooks/endpoints/{endpoint_id}/recover",
     {"endpoint_id": ENDPOINT}, "since=2026-11-01T00:00:00Z", None),
    ("endpoints-delete", "DELETE", "/api/v1/webhooks/endpoints/{endpoint_id}", {"endpoint_id": ENDPOINT}, "", None),
    ("uploads-create", "POST", "/api/v1/uploads", {}, "",
     {"filename": "notes.md", "content_type": "text/markdown", "size_bytes": 71}),
    ("ingest-upload", "POST", "/api/v1/ingest/upload", {}, "",
     {"upload_id": UPLOAD, "source_type": "document", "metadata": {"via": "upload"}}),
]


def event(method, route, params, query, body):
    path = route
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    headers = {
        "accept": "application/json",
        "host": HOST,
        "user-agent": "curl/8.5.0",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "x-amzn-trace-id": "Root=1-6749f0a0-0a1b2c3d4e5f60718293a4b5",
        "authorization": "Bearer test-api-key",
    }
    if body is not None:
        headers["content-type"] = "application/json"
    e = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123defg",
            "domainName": HOST,
            "domainPrefix": "abc123defg",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "29/Nov/2026:20:00:00 +0000",
            "timeEpoch": 1796068800000,
        },
        "isBase64Encoded": False,
    }
    if query:
        e["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if params:
        e["pathParameters"] = params
    if body is not None:
        e["body"] = json.dumps(body)
    return e


def main():
    out = pathlib.Path("events")
    for name, method, route, params, query, body in ROUTES:
        (out / f"{name}.json").write_text(json.dumps(event(method, route, params, query, body), indent=2) + "\n")


if __name__ == "__main__":
    main()
