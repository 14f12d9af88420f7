#!/usr/bin/env bash
# make bench: release binaries through the Runtime API emulator against moto.
# Prints Markdown (also saved to target/bench.md); docs/BENCHMARKS.md records it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
build_release
mkdir -p target
trap stop_moto EXIT
: > target/bench.md
# one fresh emulator per section: moto's cost grows with everything it holds
for section in ${@:-intake lifecycle webhooks endpoints latency documents}; do
    # the fan-out section reads the emulator's meter (requests, DynamoDB units)
    if [ "$section" = endpoints ]; then export MORAG_METER=1; else unset MORAG_METER; fi
    start_moto "target/moto-bench-$section.log"
    MORAG_BENCH_ENDPOINT="$MOTO_ENDPOINT" ./target/release/morag-bench "$section" | tee -a target/bench.md
    stop_moto
done
