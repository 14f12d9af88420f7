#!/usr/bin/env bash
# Part of make test: `morag dev` (its own moto server, the seeded local key)
# on a free port, then schemathesis against its OpenAPI document with every
# check on (scripts/schemathesis.toml says what each check expects where a
# schema cannot). Fails on any failure or error.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
mkdir -p target
start_moto target/moto-schemathesis.log
port="$(free_port)"
MORAG_AWS_ENDPOINT_URL="$MOTO_ENDPOINT" ./target/debug/morag dev --addr "127.0.0.1:$port" >target/schemathesis-dev.log 2>&1 &
DEV_PID=$!
cleanup() {
    kill "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
    stop_moto
}
trap cleanup EXIT
api="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
    "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$api/api/v1/openapi.json', timeout=1)" 2>/dev/null && break
    if ! kill -0 "$DEV_PID" 2>/dev/null; then
        echo "morag dev exited; its log:" >&2
        cat target/schemathesis-dev.log >&2
        exit 1
    fi
    sleep 0.2
done
echo "==> schemathesis against morag dev at $api (every check)"
MORAG_API_URL="$api" MORAG_API_KEY=test-api-key "$VENV/bin/st" --config-file scripts/schemathesis.toml \
    run "$api/api/v1/openapi.json" --checks all --no-color "$@"
