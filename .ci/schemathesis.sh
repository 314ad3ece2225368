#!/usr/bin/env bash
# OpenAPI conformance fuzzing: schemathesis (pinned, from PyPI, in a venv) runs every check of
# the document the gateway serves at /openapi.json against a live gateway, with a caller key
# and with the admin token, on the memory store and on a Redis store (a redis-server started
# here on a free port). Any finding fails the script. Bounded: SCHEMATHESIS_MAX_TIME seconds
# per run (four runs).
#
#   .ci/schemathesis.sh            # debug build of the gateway
#   PROFILE=release .ci/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-40}
PROFILE=${PROFILE:-debug}
SEED=${SCHEMATHESIS_SEED:-14}
CALLER_KEY=fuzz-caller-key-000001
ADMIN_TOKEN=fuzz-admin-token-00001
REPORTS=target/schemathesis-report

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi
"$VENV/bin/schemathesis" --version

if [ "$PROFILE" = release ]; then
    cargo build --release -p gateway --bin gateway
else
    cargo build -p gateway --bin gateway
fi
BIN=target/$PROFILE/gateway

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Every run goes on; the script fails at the end if any found something.
FAILED=()

# Started here, stopped here, by pid.
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_all EXIT

wait_ready() { # url
    for _ in $(seq 1 100); do
        if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "not ready: $1" >&2
    return 1
}

fuzz() { # store-label store-url
    local label=$1 store=$2 port
    port=$(free_port)
    GATEWAY_API_KEYS=$CALLER_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
        "$BIN" --config .ci/schemathesis/gateway.toml --listen "127.0.0.1:$port" --store "$store" &
    local gateway=$!
    PIDS+=("$gateway")
    wait_ready "http://127.0.0.1:$port/readyz"
    for cred in caller admin; do
        local token=$CALLER_KEY
        [ "$cred" = admin ] && token=$ADMIN_TOKEN
        printf '\n==> schemathesis: %s store, %s credential\n' "$label" "$cred"
        "$VENV/bin/schemathesis" --config-file .ci/schemathesis/schemathesis.toml run \
            "http://127.0.0.1:$port/openapi.json" \
            --checks all \
            --header "Authorization: Bearer $token" \
            --max-time "$MAX_TIME" \
            --seed "$SEED" \
            --workers 1 \
            --request-timeout 10 \
            --report junit --report-dir "$REPORTS/$label-$cred" ||
            FAILED+=("$label store, $cred credential")
    done
    kill "$gateway"
    wait "$gateway" 2>/dev/null || true
}

fuzz memory memory

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --loglevel warning &
PIDS+=("$!")
for _ in $(seq 1 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
fuzz redis "redis://127.0.0.1:$redis_port/0"
stop_all
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf 'schemathesis found failures: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "schemathesis: no finding"
