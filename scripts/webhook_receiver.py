#!/usr/bin/env python3
"""A local webhook receiver for `make dev`: listens on 127.0.0.1:8001, prints
every webhook and checks its Standard Webhooks signature.

    python3 scripts/webhook_receiver.py --secret whsec_...   # the secret make dev prints
    python3 scripts/webhook_receiver.py --fail 2             # answer 500 twice, then 200
    python3 scripts/webhook_receiver.py --status 500         # always fail (see retries, then the DLQ)
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> str:
    if not secret:
        return "not checked (no --secret)"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
    if abs(time.time() - int(ts)) > tolerance:
        return "REJECTED: timestamp outside the tolerance"
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    for sig in headers.get("webhook-signature", "").split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return "valid"
    return "REJECTED: no signature matches"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--secret", default=os.environ.get("MORAG_LOCAL_WEBHOOK_SECRET", ""))
    p.add_argument("--status", type=int, default=200, help="status to answer")
    p.add_argument("--fail", type=int, default=0, help="answer 500 this many times first")
    args = p.parse_args()
    state = {"fail": args.fail}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
            print(f"{self.headers.get('webhook-id')} {event.get('event_type')} "
                  f"progress={event.get('data', {}).get('progress')} "
                  f"signature {verify(args.secret, self.headers, body)}", flush=True)
            status = args.status
            if state["fail"] > 0:
                state["fail"] -= 1
                status = 500
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_):
            pass

    print(f"listening on http://127.0.0.1:{args.port}/webhook", flush=True)
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
