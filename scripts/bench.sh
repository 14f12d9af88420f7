#!/usr/bin/env bash
# make bench: release binaries through the Runtime API emulator against moto.
# Prints Markdown (also saved to target/bench.md); docs/BENCHMARKS.md records it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
echo "==> cargo build --release" >&2
cargo build --release --quiet -p morag-ingest -p morag-status -p morag-recorder -p morag-processor -p morag-webhook-sender -p morag-tests --bins
mkdir -p target
start_moto target/moto-bench.log
trap stop_moto EXIT
MORAG_BENCH_ENDPOINT="$MOTO_ENDPOINT" ./target/release/morag-bench "$@" | tee target/bench.md
