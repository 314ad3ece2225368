#!/usr/bin/env bash
# User-space instructions per request of a server over loopback, counted by callgrind:
# repeatable whatever else the machine is doing, where the wall-clock rounds of run.sh are not
# (BENCHMARKS.md, "Machines and method").
# The server (the gateway on benches/wrk/gateway.toml, or the bare handler) runs under
# valgrind; wrk sends drawdowns (drawdown.lua) for 3 s of warm-up, the counters are zeroed,
# wrk sends for DURATION more, the counters are dumped and divided by wrk's request count.
# Kernel time is not counted (callgrind sees user space only).
#
#   benches/wrk/callgrind.sh gateway            # builds release binaries first
#   BIN=/tmp/bin benches/wrk/callgrind.sh bare  # saved binaries (gateway, loadtest) in /tmp/bin
#   TLS=1 benches/wrk/callgrind.sh gateway      # the gateway over HTTPS ([server.tls], a
#                                               # self-signed P-256 certificate made by openssl)
#   STORE=redis WRK_USERS=1000 benches/wrk/callgrind.sh gateway
#                                               # the gateway on a redis-server of its own (a
#                                               # free loopback port, never 6379); the gateway's
#                                               # instructions only, not Redis's
#
# wrk's connections are kept alive: with TLS, the handshakes (16, one per connection) are
# spread over every request, and what a request pays is the record layer's encryption.
#
# Needs valgrind, wrk, curl (and openssl with TLS=1). Prints "<server> requests=N instructions_per_request=I" and
# leaves the profile (callgrind_annotate it) in $OUT.
set -euo pipefail

cd "$(dirname "$0")/../.."
which=${1:?usage: callgrind.sh gateway|bare}
DURATION=${DURATION:-8s}
PORT=${PORT:-18096}
OUT=${OUT:-$(mktemp -d /tmp/gateway-callgrind.XXXXXX)}
mkdir -p "$OUT"
source benches/wrk/common.sh
binaries

profile="$OUT/callgrind.$which"
config=benches/wrk/gateway.toml
export SCHEME=http
if [[ ${TLS:-0} == 1 ]]; then
  [[ $which == gateway ]] || { echo "TLS=1 is for the gateway" >&2; exit 2; }
  SCHEME=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
  config="$OUT/gateway-tls.toml"
  # The copy's relative paths would be read from $OUT: the thresholds file's is made whole.
  sed "s|^thresholds_file = \"|thresholds_file = \"$PWD/benches/wrk/|" benches/wrk/gateway.toml >"$config"
  printf '\n[server.tls]\ncert_file = "%s"\nkey_file = "%s"\nwatch_interval_ms = 0\n' \
    "$OUT/cert.pem" "$OUT/key.pem" >>"$config"
fi
store=()
if [[ ${STORE:-memory} == redis ]]; then
  [[ $which == gateway ]] || { echo "STORE=redis is for the gateway" >&2; exit 2; }
  redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ((redis_port != 6379)) || { echo "refusing to use 6379" >&2; exit 1; }
  mkdir -p "$OUT/redis-data"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$OUT/redis-data" --logfile "$OUT/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  store=(--store "redis://127.0.0.1:$redis_port/0")
fi
case $which in
bare)
  valgrind --tool=callgrind --callgrind-out-file="$profile" \
    "$LT" serve-trivial --listen "127.0.0.1:$PORT" 2>"$OUT/valgrind.log" &
  ;;
gateway)
  GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
    valgrind --tool=callgrind --callgrind-out-file="$profile" \
    "$GW" --config "$config" --listen "127.0.0.1:$PORT" "${store[@]}" >"$OUT/valgrind.log" 2>&1 &
  ;;
*) echo "usage: callgrind.sh gateway|bare" >&2; exit 2 ;;
esac
server=$!
trap 'kill $server ${redis_pid:-} 2>/dev/null || true' EXIT
probe=/; [[ $which == gateway ]] && probe=/healthz
for _ in $(seq 300); do
  curl -kfsS "$SCHEME://127.0.0.1:$PORT$probe" >/dev/null 2>&1 && break
  sleep 0.2
done
if [[ $which == gateway ]]; then
  seed_user "$PORT"
fi
url="$SCHEME://127.0.0.1:$PORT"
wrk -t1 -c16 -d3s -s benches/wrk/drawdown.lua "$url" >/dev/null
callgrind_control -z "$server" >/dev/null
wrk -t1 -c16 -d"$DURATION" -s benches/wrk/drawdown.lua "$url" >"$OUT/wrk.txt"
callgrind_control -d "$server" >/dev/null
sleep 1
n=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
total=$(callgrind_annotate "$profile.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$which${TLS:+ tls=$TLS} store=${STORE:-memory} users=$WRK_USERS requests=$n instructions_per_request=$((total / n)) profile=$profile.1"
