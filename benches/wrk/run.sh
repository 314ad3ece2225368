#!/usr/bin/env bash
# Reproduces the loopback figures of BENCHMARKS.md, section "gateway request path":
# a release gateway (memory store, limits high: gateway.toml) and a bare hyper handler
# (`loadtest serve-trivial`), both pinned to core 0, driven in turn by the same wrk script
# (drawdown.lua: POST /v1/drawdowns, a fresh Idempotency-Key per request) pinned to core 1.
#
#   benches/wrk/run.sh                  # 2 rounds of 10 s, 64 connections
#   ROUNDS=3 DURATION=15s CONNECTIONS=32 benches/wrk/run.sh
#   PERF=1 benches/wrk/run.sh           # also record a perf profile of the gateway
#   SERVER_HTTP=http1 SERVER_RUNTIME=current_thread benches/wrk/run.sh   # server.* A/B
#   BIN=/tmp/bin benches/wrk/run.sh     # binaries already built (copied) there, no build
#   WRK_USERS=1000 benches/wrk/run.sh   # drawdowns spread over 1,000 users (common.sh)
#
# Set CARGO_TARGET_DIR to build elsewhere than target/. Needs wrk, taskset, curl (and perf
# for PERF=1). Prints one line per round: requests per second of each server and their
# ratio, and the server CPU time per request of each and their ratio (bare / gateway: the
# share of the bare handler's throughput the gateway would reach on a core of its own).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
GW_PORT=${GW_PORT:-18081}
BARE_PORT=${BARE_PORT:-18082}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-$(mktemp -d /tmp/gateway-wrk.XXXXXX)}
mkdir -p "$OUT"
source benches/wrk/common.sh

binaries

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ ${CONFIG:-} == benches/wrk/.gateway-ab.* ]]; then rm -f "$CONFIG"; fi
  wait 2>/dev/null || true
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$LT" serve-trivial --listen "127.0.0.1:$BARE_PORT" 2>"$OUT/bare.log" &
bare_pid=$!
pids+=("$bare_pid")
# gateway.toml, with `server.http` / `server.runtime` set when asked (a copy beside it, so
# its relative thresholds_file still resolves; removed on exit, kept in $OUT).
CONFIG=benches/wrk/gateway.toml
if [[ -n ${SERVER_HTTP:-}${SERVER_RUNTIME:-} ]]; then
  CONFIG=$(mktemp benches/wrk/.gateway-ab.XXXXXX)
  {
    cat benches/wrk/gateway.toml
    printf '\n[server]\n'
    if [[ -n ${SERVER_HTTP:-} ]]; then echo "http = \"$SERVER_HTTP\""; fi
    if [[ -n ${SERVER_RUNTIME:-} ]]; then echo "runtime = \"$SERVER_RUNTIME\""; fi
  } >"$CONFIG"
  cp "$CONFIG" "$OUT/gateway.toml"
fi
GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
  taskset -c "$SERVER_CPU" "$GW" --config "$CONFIG" \
  --listen "127.0.0.1:$GW_PORT" >"$OUT/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")

# Wait until both answer (bounded).
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$GW_PORT/healthz" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:$BARE_PORT/" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done

seed_user "$GW_PORT"
# One drawdown by hand: it must be an approval, or the run measures a different path.
first=$(curl -fsS -X POST "http://127.0.0.1:$GW_PORT/v1/drawdowns" \
  -H "Authorization: Bearer $WRK_API_KEY" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: run-sh-check-$$" \
  -d "{\"user_id\":\"$WRK_USER\",\"amount_fen\":100,\"channel\":\"app\"}")
case $first in
*'"outcome":"approved"'*) ;;
*) echo "the check drawdown was not approved: $first" >&2; exit 1 ;;
esac

# Approvals so far (the gateway's own counter: the drawdowns may go to several users).
approved() {
  curl -fsS "http://127.0.0.1:$GW_PORT/metrics" -H "Authorization: Bearer $ADMIN_TOKEN" |
    awk '/^gateway_risk_decisions_total\{outcome="approved"\}/ { print $2 }'
}

# wrk against one server; prints "req/s total_requests non2xx server_cpu_us_per_request".
# CPU per request is what the server spent, whatever share of its core the rest of a busy
# machine left it; req/s depends on that share.
measure() {
  local name=$1 port=$2 pid=$3 round=$4
  local t0 t1
  t0=$(ticks "$pid")
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s benches/wrk/drawdown.lua "http://127.0.0.1:$port" >"$OUT/$name-$round.txt"
  t1=$(ticks "$pid")
  local rps total non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/$name-$round.txt")
  total=$(awk '/requests in/ {print $1}' "$OUT/$name-$round.txt")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$OUT/$name-$round.txt")
  local cpu
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="${total:-0}" \
    'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan" }')
  echo "$rps ${total:-0} ${non2xx:-0} $cpu"
}

perf_pid=
if [[ ${PERF:-0} == 1 ]]; then
  perf record -F 499 --call-graph dwarf,16384 -p "$gw_pid" -o "$OUT/perf.data" 2>"$OUT/perf.log" &
  perf_pid=$!
fi

echo "round bare_rps gateway_rps rps_ratio bare_cpu_us/req gateway_cpu_us/req cpu_ratio gateway_requests gateway_non2xx approvals"
for round in $(seq "$ROUNDS"); do
  before=$(approved)
  # Alternate the order so neither server always runs first after a quiet spell.
  if ((round % 2)); then
    read -r bare _ _ bare_cpu < <(measure bare "$BARE_PORT" "$bare_pid" "$round")
    read -r gw total non2xx gw_cpu < <(measure gateway "$GW_PORT" "$gw_pid" "$round")
  else
    read -r gw total non2xx gw_cpu < <(measure gateway "$GW_PORT" "$gw_pid" "$round")
    read -r bare _ _ bare_cpu < <(measure bare "$BARE_PORT" "$bare_pid" "$round")
  fi
  after=$(approved)
  approvals=$((after - before))
  ratio=$(awk -v g="$gw" -v b="$bare" 'BEGIN { printf "%.1f%%", 100 * g / b }')
  cpu_ratio=$(awk -v g="$gw_cpu" -v b="$bare_cpu" 'BEGIN { printf "%.1f%%", 100 * b / g }')
  echo "$round $bare $gw $ratio $bare_cpu $gw_cpu $cpu_ratio $total $non2xx $approvals"
done

if [[ -n $perf_pid ]]; then
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  echo "perf profile: perf report -i $OUT/perf.data --no-children" >&2
fi
echo "wrk outputs and server logs: $OUT" >&2
