#!/usr/bin/env bash
# Two gateway builds side by side, measured in turn against the same bare handler: for a change
# that claims speed. Both gateways start fresh at once (gateway.toml), get the same users, and
# take the same drawdowns (drawdown.lua) in alternating rounds, so each round of one has a round
# of the other next to it, at the same store size and about the same moment of a noisy machine.
#
#   benches/wrk/ab.sh /tmp/before /tmp/after          # each dir holds gateway (and loadtest)
#   ROUNDS=6 DURATION=5s WRK_USERS=1000 benches/wrk/ab.sh /tmp/before /tmp/after
#
# The servers are pinned to core SERVER_CPU, wrk to CLIENT_CPU; the bare handler is the first
# directory's `loadtest serve-trivial`. Prints one line per round and server (req/s, CPU time per
# request), then each server's means and the after/before ratios. Needs wrk, taskset, curl.
set -euo pipefail

cd "$(dirname "$0")/../.."
A=${1:?usage: ab.sh BEFORE_DIR AFTER_DIR}
B=${2:?usage: ab.sh BEFORE_DIR AFTER_DIR}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
A_PORT=${A_PORT:-18181}
B_PORT=${B_PORT:-18183}
BARE_PORT=${BARE_PORT:-18182}
OUT=${OUT:-$(mktemp -d /tmp/gateway-ab.XXXXXX)}
mkdir -p "$OUT"
source benches/wrk/common.sh

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# taskset runs the server in its own process: $! is the server's pid.
start_gateway() {
  GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
    taskset -c "$SERVER_CPU" "$1/gateway" --config benches/wrk/gateway.toml \
    --listen "127.0.0.1:$2" >"$OUT/gateway-$2.log" 2>&1 &
  pids+=($!)
}
start_gateway "$A" "$A_PORT"
a_pid=$!
start_gateway "$B" "$B_PORT"
b_pid=$!
taskset -c "$SERVER_CPU" "$A/loadtest" serve-trivial --listen "127.0.0.1:$BARE_PORT" \
  2>"$OUT/bare.log" &
bare_pid=$!
pids+=("$bare_pid")

for port in "$A_PORT" "$B_PORT"; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  seed_user "$port"
done

# One wrk run against a server: prints "name req/s cpu_us_per_request non2xx".
measure() {
  local name=$1 port=$2 pid=$3 round=$4 t0 t1
  t0=$(ticks "$pid")
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" \
    -s benches/wrk/drawdown.lua "http://127.0.0.1:$port" >"$OUT/$name-$round.txt"
  t1=$(ticks "$pid")
  awk -v name="$name" -v t="$((t1 - t0))" -v hz="$HZ" '
    /^Requests\/sec:/ { rps = $2 }
    /requests in/ { n = $1 }
    /Non-2xx/ { bad = $5 }
    END { printf "%s %.0f %.1f %d\n", name, rps, t / hz * 1e6 / n, bad }' "$OUT/$name-$round.txt"
}

echo "round server req/s cpu_us/req non2xx"
for round in $(seq "$ROUNDS"); do
  # Alternate who goes first.
  if ((round % 2)); then order="before after bare"; else order="after before bare"; fi
  for who in $order; do
    case $who in
    before) port=$A_PORT pid=$a_pid ;;
    after) port=$B_PORT pid=$b_pid ;;
    bare) port=$BARE_PORT pid=$bare_pid ;;
    esac
    echo "$round $(measure "$who" "$port" "$pid" "$round")"
  done
done | tee "$OUT/rounds.txt"

awk '
  $1 ~ /^[0-9]+$/ { rps[$2] += $3; cpu[$2] += $4; n[$2]++ }
  END {
    for (s in n) printf "mean %s: %.0f req/s, %.1f us CPU per request\n", s, rps[s] / n[s], cpu[s] / n[s]
    printf "after / before: req/s %.3f, CPU per request %.3f\n", \
      (rps["after"] / n["after"]) / (rps["before"] / n["before"]), \
      (cpu["after"] / n["after"]) / (cpu["before"] / n["before"])
    printf "share of bare req/s: before %.1f %%, after %.1f %%\n", \
      100 * rps["before"] / rps["bare"], 100 * rps["after"] / rps["bare"]
  }' "$OUT/rounds.txt"
echo "wrk outputs and server logs: $OUT" >&2
