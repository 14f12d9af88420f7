#!/usr/bin/env bash
# make test: formatting, clippy, template lint (as written and after an
# offline SAM translation), then every test against a fresh moto server,
# then schemathesis against `morag dev`'s API.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
mkdir -p target

# One feature set and no incremental caches: a clean clone's build takes
# 3 min 22 s and 2.0 GB instead of 4 min 55 s and 3.6 GB (in a fresh clone on
# 2 cores: `time (cargo build --workspace --all-targets && cargo test
# --workspace --all-targets --no-run)`, then `du -sh target`; the whole of
# `.ci/run` leaves 2.2 GB). `cargo build --bins` alone resolved the SDK crates with
# other features than the tests do, so they were compiled twice; the
# incremental caches only help a second build of the same crates. CI failed
# once with the linker killed by SIGBUS on a full disk.
export CARGO_INCREMENTAL=0
# Say so up front when the disk is short, rather than leave a linker's
# SIGBUS to explain it.
free_kb="$(df -Pk target | awk 'NR == 2 { print $4 }')"
if [ "${free_kb:-0}" -lt $((3 * 1024 * 1024)) ]; then
    echo "warning: $((free_kb / 1024)) MB free where target/ is; a clean build needs about 2.2 GB" >&2
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> no import cycles between the files of a crate"
"$VENV/bin/python" scripts/import_cycles.py shared/src functions/*/src cli/src tests/src

echo "==> cfn-lint template.yaml"
"$VENV/bin/cfn-lint" template.yaml
echo "==> aws-sam-translator + cfn-lint on the translated template"
"$VENV/bin/python" scripts/sam_translate.py template.yaml target/template.translated.json
"$VENV/bin/cfn-lint" target/template.translated.json

echo "==> cargo build (function binaries, run by the tests through the Runtime API emulator, and the tests)"
cargo build --workspace --all-targets --quiet

start_moto target/moto-test.log
trap stop_moto EXIT
echo "==> the launcher's TransactWriteItems answers as DynamoDB does"
"$VENV/bin/python" scripts/moto_txn_check.py "$MOTO_ENDPOINT"
echo "==> cargo test (emulator $MOTO_ENDPOINT)"
set -o pipefail
MORAG_TEST_ENDPOINT="$MOTO_ENDPOINT" cargo test --workspace --all-targets "$@" 2>&1 | tee target/test-output.log
stop_moto
trap - EXIT

# the API against its OpenAPI document (morag dev, its own moto server)
bash scripts/schemathesis.sh | tee target/schemathesis-output.log

# one closing line for the whole run
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } } END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log
