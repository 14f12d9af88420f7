# The two commands of the README, plus benchmarks and a release build.
.PHONY: dev test bench soak build lint fmt

dev:  ## moto server + local resources + the API on http://127.0.0.1:3000 (Ctrl-C stops all)
	bash scripts/dev.sh

test: ## fmt, clippy, template lint, and every test against moto server
	bash scripts/test.sh

bench: ## release binaries through a Lambda Runtime API emulator; see docs/BENCHMARKS.md
	bash scripts/bench.sh

soak: ## the release binaries under load and faults (SOAK_TASKS=N, default 1000); see docs/RELIABILITY.md
	bash scripts/soak.sh

build: ## release binaries for the host (sam build cross-compiles for arm64 with cargo-lambda); default members: no test-support
	cargo build --release --bins

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
