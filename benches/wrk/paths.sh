#!/usr/bin/env bash
# Where the gateway's time per request goes, over loopback: the server CPU time per request
# of the bare hyper handler and of four gateway paths of increasing depth, each driven by wrk
# (one core each, as in run.sh). CPU time per request does not depend on the share of its
# core a busy machine leaves the server, so the rows compare even when req/s do not.
#
#   benches/wrk/paths.sh                # 2 rounds of 6 s
#   ROUNDS=3 DURATION=10s benches/wrk/paths.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-6s}
CONNECTIONS=${CONNECTIONS:-64}
GW_PORT=${GW_PORT:-18091}
BARE_PORT=${BARE_PORT:-18092}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET=${CARGO_TARGET_DIR:-target}
source benches/wrk/common.sh

cargo build --release -p gateway -p loadtest >&2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$TARGET/release/loadtest" serve-trivial \
  --listen "127.0.0.1:$BARE_PORT" 2>/dev/null &
bare_pid=$!
pids+=("$bare_pid")
GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
  taskset -c "$SERVER_CPU" "$TARGET/release/gateway" --config benches/wrk/gateway.toml \
  --listen "127.0.0.1:$GW_PORT" >/dev/null 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$GW_PORT/healthz" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:$BARE_PORT/" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
seed_user "$GW_PORT"

run() {
  local name=$1 pid=$2 port=$3 script=$4 t0 t1 n non2xx rps
  t0=$(ticks "$pid")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$script" \
    "http://127.0.0.1:$port")
  t1=$(ticks "$pid")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  awk -v n="$n" -v t="$((t1 - t0))" -v hz="$HZ" -v name="$name" -v bad="${non2xx:-0}" -v rps="$rps" \
    'BEGIN { printf "%-22s %8d requests %6d non-2xx %8.0f req/s %7.1f us CPU/request\n", name, n, bad, rps, t / hz * 1e6 / n }'
}

for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run "bare (same POST)" "$bare_pid" "$BARE_PORT" benches/wrk/drawdown.lua
  run "gateway /healthz" "$gw_pid" "$GW_PORT" benches/wrk/healthz.lua
  run "gateway credit line" "$gw_pid" "$GW_PORT" benches/wrk/credit_line.lua
  run "gateway replay" "$gw_pid" "$GW_PORT" benches/wrk/replay.lua
  run "gateway drawdown" "$gw_pid" "$GW_PORT" benches/wrk/drawdown.lua
done
