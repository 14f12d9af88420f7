#!/usr/bin/env bash
# make soak: the release binaries under load and faults on a fresh moto
# server with the request meter on; SOAK_TASKS=N sets the size (default
# 1,000). Prints the report (also saved to target/soak.md; docs/RELIABILITY.md
# records one) and exits non-zero on any loss.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
build_release
mkdir -p target
export MORAG_METER=1
start_moto target/moto-soak.log
trap stop_moto EXIT
echo "==> the meter counts as DynamoDB bills" >&2
"$VENV/bin/python" scripts/moto_meter_check.py "$MOTO_ENDPOINT"
echo "==> soak: ${SOAK_TASKS:-1000} tasks" >&2
MORAG_SOAK_ENDPOINT="$MOTO_ENDPOINT" ./target/release/morag-soak | tee target/soak.md
