#!/usr/bin/env bash
# The memory the gateway keeps per committed drawdown: VmRSS growth over N drawdowns (one
# wrk connection, stopped once the user's used_fen shows N more approvals; the count printed
# is exact), after a warm-up of W. Every drawdown is an approval that commits a decision and an idempotency
# record (a fresh key each), for one user, in benches/wrk/gateway.toml's memory store.
#
#   benches/wrk/memory.sh                 # N=120000 W=5000, builds the release gateway
#   BIN=/tmp/bin N=200000 benches/wrk/memory.sh
#
# Needs wrk and curl. Compare builds at the same N: the store's tables grow by doubling, so the growth over a
# window depends on whether a doubling falls inside it. Prints the bytes per decision.
set -euo pipefail

cd "$(dirname "$0")/../.."
N=${N:-120000}
W=${W:-5000}
PORT=${PORT:-18098}
source benches/wrk/common.sh
if ((WRK_USERS > 1)); then
  echo "memory.sh counts the drawdowns of one user (WRK_USER): unset WRK_USERS" >&2
  exit 2
fi
binaries

GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
  "$GW" --config benches/wrk/gateway.toml --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
seed_user "$PORT"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$gw/status"; }
# Approvals so far: the user's used_fen / 100 (every drawdown is 100 fen).
approvals() {
  curl -fsS "http://127.0.0.1:$PORT/v1/credit-lines/$WRK_USER" -H "Authorization: Bearer $WRK_API_KEY" |
    sed -E 's/.*"used_fen":([0-9]+).*/\1/' | awk '{print int($1 / 100)}'
}
# At least N drawdowns on one connection; prints how many.
run() {
  local start
  start=$(approvals)
  wrk -t1 -c1 -d3600s -s benches/wrk/drawdown.lua "http://127.0.0.1:$PORT" >/dev/null &
  local wrk_pid=$!
  while (($(approvals) - start < $1)); do sleep 0.1; done
  kill "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" 2>/dev/null || true
  echo $(($(approvals) - start))
}
run "$W" >/dev/null
before=$(rss)
n=$(run "$N")
after=$(rss)
echo "drawdowns=$n rss_kib=$before->$after bytes_per_drawdown=$(((after - before) * 1024 / n))"
