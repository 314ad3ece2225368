#!/usr/bin/env bash
# Reproduces BENCHMARKS.md, section "admission: cost of a shed response": the server CPU
# time per response of a drawdown that is served (gateway.toml, drawdown.lua) against one
# that admission control sheds (shed.toml: a retry budget of zero; drawdown.lua with
# X-Retry-Attempt: 1, so every request is refused with 503 CAPACITY_SHED before its body is
# read). Two release gateways, both pinned to core 0, driven in turn by wrk pinned to core 1.
# For scale, the same run measures GET /healthz on the serving gateway (healthz.lua): the
# server layer, router and edge bookkeeping with no auth, limits or store, the floor of any
# answer from this process.
#
#   benches/wrk/shed.sh                    # 2 rounds of 10 s, 64 connections
#   ROUNDS=3 DURATION=15s benches/wrk/shed.sh
#   BUREAU=1 benches/wrk/shed.sh           # the served drawdown also consults a credit bureau
#
# With BUREAU=1 the serving gateway consults the loadtest's bureau simulator (pinned to the
# client core, 4096 slots, no service time, no cache: one real outbound HTTP call per
# drawdown), as every drawdown does in production when a bureau is configured; the shed
# gateway is unchanged (a shed request never reaches the bureau).
#
# Set CARGO_TARGET_DIR to build elsewhere than target/. Needs wrk, taskset, curl. Prints one
# line per round: responses per second of each, the share of non-2xx answers of each, the
# server CPU time per response of each, and shed / served.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVE_PORT=${SERVE_PORT:-18091}
SHED_PORT=${SHED_PORT:-18093}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$(mktemp -d /tmp/gateway-shed.XXXXXX)}
mkdir -p "$OUT"
source benches/wrk/common.sh

BUREAU=${BUREAU:-0}
BUREAU_PORT=${BUREAU_PORT:-18094}
cargo build --release -p gateway -p loadtest >&2
GW="$TARGET/release/gateway"
SERVE_CONFIG=benches/wrk/gateway.toml

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -f "benches/wrk/.gateway-bureau.$$.toml"
  wait 2>/dev/null || true
}
trap cleanup EXIT

start() {
  local config=$1 port=$2 log=$3
  GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
    taskset -c "$SERVER_CPU" "$GW" --config "$config" --listen "127.0.0.1:$port" >"$log" 2>&1 &
  echo "$!"
}
if [[ $BUREAU == 1 ]]; then
  taskset -c "$CLIENT_CPU" "$TARGET/release/loadtest" bureau --listen "127.0.0.1:$BUREAU_PORT" \
    --slots 4096 --service-ms 0 >"$OUT/bureau.log" 2>&1 &
  pids+=("$!")
  # Beside gateway.toml: its thresholds_file is relative to the configuration file.
  SERVE_CONFIG="benches/wrk/.gateway-bureau.$$.toml"
  cat benches/wrk/gateway.toml - >"$SERVE_CONFIG" <<TOML

[bureau]
url = "http://127.0.0.1:$BUREAU_PORT"
cache_ttl_ms = 0
stale_max_age_ms = 0
TOML
fi
serve_pid=$(start "$SERVE_CONFIG" "$SERVE_PORT" "$OUT/serve.log")
shed_pid=$(start benches/wrk/shed.toml "$SHED_PORT" "$OUT/shed.log")
pids+=("$serve_pid" "$shed_pid")

for port in "$SERVE_PORT" "$SHED_PORT"; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  seed_user "$port"
done
# The paths must be what they claim: an approval on one, a shed on the other.
check() {
  curl -sS -X POST "http://127.0.0.1:$1/v1/drawdowns" \
    -H "Authorization: Bearer $WRK_API_KEY" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: shed-sh-check-$$" -H "X-Retry-Attempt: $2" \
    -d "{\"user_id\":\"$WRK_USER\",\"amount_fen\":100,\"channel\":\"app\"}"
}
# With the bureau, u-bench's deterministic score may send it to review; either way the decision
# is committed after a bureau answer (checked on the bureau's counter below).
case $(check "$SERVE_PORT" 0) in
  *'"outcome":"approved"'*) ;;
  *'"outcome":"review"'*) [[ $BUREAU == 1 ]] || { echo "no approval" >&2; exit 1; } ;;
  *) echo "no approval" >&2; exit 1 ;;
esac
if [[ $BUREAU == 1 ]]; then
  served=$(curl -fsS "http://127.0.0.1:$BUREAU_PORT/stats" | grep -o '"served":[0-9]*' | cut -d: -f2)
  [[ ${served:-0} -ge 1 ]] || { echo "the bureau was not consulted" >&2; exit 1; }
fi
case $(check "$SHED_PORT" 1) in *'"CAPACITY_SHED"'*) ;; *) echo "no shed" >&2; exit 1 ;; esac

# Prints "responses/s non2xx_share server_cpu_us_per_response".
measure() {
  local name=$1 port=$2 pid=$3 script=$4 round=$5
  local t0 t1
  t0=$(ticks "$pid")
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" \
    -s "benches/wrk/$script" "http://127.0.0.1:$port" >"$OUT/$name-$round.txt"
  t1=$(ticks "$pid")
  local rps total non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/$name-$round.txt")
  total=$(awk '/requests in/ {print $1}' "$OUT/$name-$round.txt")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$OUT/$name-$round.txt")
  awk -v r="$rps" -v t="$((t1 - t0))" -v hz="$HZ" -v n="${total:-0}" -v x="${non2xx:-0}" \
    'BEGIN { if (n > 0) printf "%s %.3f %.1f\n", r, x / n, t / hz * 1e6 / n; else print r, "nan nan" }'
}

echo "round served_rps shed_rps served_non2xx shed_non2xx served_cpu_us/resp shed_cpu_us/resp shed/served healthz_cpu_us/resp shed/healthz"
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then
    read -r s_rps s_x s_cpu < <(measure serve "$SERVE_PORT" "$serve_pid" drawdown.lua "$round")
    read -r d_rps d_x d_cpu < <(WRK_RETRY_ATTEMPT=1 measure shed "$SHED_PORT" "$shed_pid" drawdown.lua "$round")
  else
    read -r d_rps d_x d_cpu < <(WRK_RETRY_ATTEMPT=1 measure shed "$SHED_PORT" "$shed_pid" drawdown.lua "$round")
    read -r s_rps s_x s_cpu < <(measure serve "$SERVE_PORT" "$serve_pid" drawdown.lua "$round")
  fi
  read -r _ _ h_cpu < <(measure healthz "$SERVE_PORT" "$serve_pid" healthz.lua "$round")
  ratio=$(awk -v d="$d_cpu" -v s="$s_cpu" 'BEGIN { printf "%.1f%%", 100 * d / s }')
  floor=$(awk -v d="$d_cpu" -v h="$h_cpu" 'BEGIN { printf "%.2f", d / h }')
  echo "$round $s_rps $d_rps $s_x $d_x $s_cpu $d_cpu $ratio $h_cpu $floor"
done
echo "wrk outputs and server logs: $OUT" >&2
