#!/usr/bin/env bash
# make test: formatting, clippy, template lint (as written and after an
# offline SAM translation), then every test against a fresh moto server.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv
mkdir -p target

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cfn-lint template.yaml"
"$VENV/bin/cfn-lint" template.yaml
echo "==> aws-sam-translator + cfn-lint on the translated template"
"$VENV/bin/python" scripts/sam_translate.py template.yaml target/template.translated.json
"$VENV/bin/cfn-lint" target/template.translated.json

start_moto target/moto-test.log
trap stop_moto EXIT
echo "==> cargo test (emulator $MOTO_ENDPOINT)"
MORAG_TEST_ENDPOINT="$MOTO_ENDPOINT" cargo test --workspace --all-targets "$@"
