#!/usr/bin/env bash
# make dev: moto server + local resources + the HTTP functions on
# http://127.0.0.1:3000. Ctrl-C stops everything this script started.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
cargo build --quiet -p morag-cli --bin morag
mkdir -p target
start_moto target/moto-dev.log
trap stop_moto EXIT
trap 'exit 130' INT TERM
MORAG_AWS_ENDPOINT_URL="$MOTO_ENDPOINT" ./target/debug/morag dev --addr "${MORAG_DEV_ADDR:-127.0.0.1:3000}"
