# Shared by dev.sh, test.sh, bench.sh and soak.sh: the project-local Python venv with
# the emulator and the template linters, and starting/stopping moto server.
# Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_REQUIREMENTS="$ROOT/scripts/requirements.txt"

ensure_venv() {
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)"
    if [ -x "$VENV/bin/moto_server" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "==> installing moto server and template linters into $VENV" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PY_REQUIREMENTS"
    echo "$want" > "$stamp"
}

# build_release: the function binaries as they ship (default members: without
# morag-shared's test-support feature), then the bench and soak harnesses
# (which need it) separately.
build_release() {
    echo "==> cargo build --release" >&2
    cargo build --release --quiet --bins
    cargo build --release --quiet -p morag-tests --bins
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_moto LOGFILE: starts moto server on a free port; sets MOTO_PID and MOTO_ENDPOINT.
start_moto() {
    local log="$1" port
    port="$(free_port)"
    "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    MOTO_ENDPOINT="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$MOTO_ENDPOINT/moto-api/', timeout=1)" 2>/dev/null; then
            echo "==> moto server ready at $MOTO_ENDPOINT (pid $MOTO_PID)" >&2
            return 0
        fi
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "moto server exited; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "moto server did not become ready in 10 s; its log:" >&2
    cat "$log" >&2
    return 1
}

stop_moto() {
    if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    MOTO_PID=""
}

# Test credentials for the emulator; never real ones.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
