#!/usr/bin/env bash
# The drawdown on each store, side by side in one run (BENCHMARKS.md, "Redis store"): a bare
# hyper handler (`loadtest serve-trivial`), a gateway on the memory store and a gateway (or
# INSTANCES gateways) on a redis-server of its own, all fresh, all with the same users
# (WRK_USERS, default 1,000), driven in turn by the same wrk script (drawdown.lua: a fresh
# Idempotency-Key per request) in alternating rounds.
#
#   benches/wrk/redis.sh                           # 5 rounds of 5 s, 1,000 users
#   ROUNDS=7 DURATION=8s WRK_USERS=10000 benches/wrk/redis.sh
#   INSTANCES=3 benches/wrk/redis.sh               # 3 gateways on one Redis, wrk on each
#   BIN=/tmp/bin benches/wrk/redis.sh              # binaries already built (copied) there
#   RUNTIME=multi_thread benches/wrk/redis.sh      # the gateways' server.runtime (default auto)
#
# The gateways and the bare handler are pinned to core SERVER_CPU, wrk to CLIENT_CPU, and
# redis-server to REDIS_CPU (default: CLIENT_CPU, since in production Redis runs on a
# machine of its own; REDIS_CPU=0 puts it beside the gateway). Per round and server it prints:
#   req/s, the share of the bare handler's req/s of the same round,
#   gateway CPU per drawdown (utime + stime of the gateway processes / requests),
#   Redis CPU per drawdown, two ways: the time spent in commands (`INFO commandstats`, reset
#     with `CONFIG RESETSTAT` before the round) and the redis-server process's CPU time,
#   round trips per drawdown (top-level commands Redis received / requests),
#   bytes sent to Redis per drawdown (`total_net_input_bytes`) and bytes Redis holds more per
#     decision (`used_memory`, the stored records).
# then the medians over the rounds; each round's `INFO commandstats` (the commands the scripts
# ran, with their times) is kept in $OUT. Needs wrk, taskset, curl, redis-server, redis-cli.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
INSTANCES=${INSTANCES:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REDIS_CPU=${REDIS_CPU:-$CLIENT_CPU}
BARE_PORT=${BARE_PORT:-18281}
MEM_PORT=${MEM_PORT:-18282}
RED_PORT=${RED_PORT:-18290} # instance i listens on RED_PORT + i
STORES=${STORES:-"bare memory redis"}
OUT=${OUT:-$(mktemp -d /tmp/gateway-redis.XXXXXX)}
mkdir -p "$OUT"
export WRK_USERS=${WRK_USERS:-1000}
source benches/wrk/common.sh
binaries

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$OUT/redis-data"
  rm -f "${CONFIG:-}"
}
trap cleanup EXIT

# A free loopback port for redis-server (never 6379): bind port 0 and read it back.
REDIS_PORT=${REDIS_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if ((REDIS_PORT == 6379)); then
  echo "refusing to use 6379" >&2
  exit 1
fi
mkdir -p "$OUT/redis-data"
taskset -c "$REDIS_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
  --appendonly no --dir "$OUT/redis-data" --logfile "$OUT/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.05; done

taskset -c "$SERVER_CPU" "$LT" serve-trivial --listen "127.0.0.1:$BARE_PORT" 2>"$OUT/bare.log" &
bare_pid=$!
pids+=("$bare_pid")

# gateway.toml with the fixed concurrency limit (ADMISSION=adaptive keeps the default): the
# adaptive limit sheds part of a Redis gateway's load, whose latency is a network round trip
# longer, and the figures would then mix answers with refusals. A copy beside it, so its
# relative thresholds_file still resolves; removed on exit, kept in $OUT.
CONFIG=$(mktemp benches/wrk/.gateway-redis.XXXXXX)
sed "s/^\[admission\]$/[admission]\nmode = \"${ADMISSION:-fixed}\"/" benches/wrk/gateway.toml >"$CONFIG"
# RUNTIME=multi_thread|current_thread overrides the binary's `server.runtime` ("auto").
if [[ -n ${RUNTIME:-} ]]; then printf '\n[server]\nruntime = "%s"\n' "$RUNTIME" >>"$CONFIG"; fi
cp "$CONFIG" "$OUT/gateway.toml"
start_gateway() { # port store
  GATEWAY_API_KEYS=$WRK_API_KEY GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN \
    taskset -c "$SERVER_CPU" "$GW" --config "$CONFIG" --store "$2" \
    --listen "127.0.0.1:$1" >"$OUT/gateway-$1.log" 2>&1 &
  pids+=($!)
}
start_gateway "$MEM_PORT" memory
mem_pid=$!
red_ports=()
red_pids=()
for ((i = 0; i < INSTANCES; i++)); do
  start_gateway "$((RED_PORT + i))" "redis://127.0.0.1:$REDIS_PORT/0"
  red_pids+=($!)
  red_ports+=($((RED_PORT + i)))
done

ready() {
  for _ in $(seq 200); do
    curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the server on port $1 is not ready" >&2
  exit 1
}
ready "$MEM_PORT"
for p in "${red_ports[@]}"; do ready "$p"; done

# Every user on both stores (one instance seeds Redis for all), as common.sh's seed_user
# does but with requests in parallel, so that a million users take a minute or two.
seed() {
  local line='{"limit_fen":1000000000000000,"used_fen":0,"risk_grade":"A","logins_30d":12,"account_age_days":800}'
  LINE=${line//\"/\\\"} awk -v n="$WRK_USERS" -v port="$1" -v user="$WRK_USER" -v token="$ADMIN_TOKEN" '
    BEGIN {
      for (i = 0; i < n; i++) {
        if (i > 0) print "next"
        u = n > 1 ? user "-" i : user
        printf "url = \"http://127.0.0.1:%s/admin/credit-lines/%s\"\n", port, u
        printf "request = \"PUT\"\noutput = \"/dev/null\"\nfail\n"
        printf "header = \"Authorization: Bearer %s\"\n", token
        printf "header = \"Content-Type: application/json\"\n"
        printf "data = \"%s\"\n", ENVIRON["LINE"]
      }
    }' | taskset -c "$CLIENT_CPU" curl -sS --no-progress-meter --parallel --parallel-max 32 -K -
}
if [[ " $STORES " == *" memory "* ]]; then seed "$MEM_PORT"; fi
seed "${red_ports[0]}"
# One drawdown by hand on each gateway: it must be an approval, or the run measures another
# path.
check_ports=("${red_ports[@]}")
if [[ " $STORES " == *" memory "* ]]; then check_ports+=("$MEM_PORT"); fi
for p in "${check_ports[@]}"; do
  u=$WRK_USER
  ((WRK_USERS > 1)) && u=$WRK_USER-0
  first=$(curl -fsS -X POST "http://127.0.0.1:$p/v1/drawdowns" \
    -H "Authorization: Bearer $WRK_API_KEY" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: redis-sh-check-$$" \
    -d "{\"user_id\":\"$u\",\"amount_fen\":100,\"channel\":\"app\"}")
  case $first in
  *'"outcome":"approved"'*) ;;
  *) echo "the check drawdown on port $p was not approved: $first" >&2; exit 1 ;;
  esac
done
echo "seeded $WRK_USERS users (redis used_memory $(rcli info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r') bytes)" >&2

# wrk against the servers on the given ports at once (one wrk each, CONNECTIONS split
# between them); prints "requests non2xx req/s" summed over them.
drive() {
  local p files=() wrks=()
  local c=$((CONNECTIONS / $#))
  for p in "$@"; do
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$c" -d"$DURATION" -s benches/wrk/drawdown.lua \
      "http://127.0.0.1:$p" >"$OUT/wrk-$p-$round.txt" &
    wrks+=($!)
    files+=("$OUT/wrk-$p-$round.txt")
  done
  wait "${wrks[@]}"
  awk '/requests in/ { n += $1 } /Non-2xx/ { bad += $5 } /^Requests\/sec:/ { rps += $2 }
    END { printf "%d %d %.0f\n", n, bad, rps }' "${files[@]}"
}

cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(ticks "$p"))); done; echo "$t"; }
info_field() { rcli info all | awk -F: -v f="$1" '$1 == f { gsub("\r", "", $2); print $2 }'; }
# The top-level commands of INFO commandstats: "calls usec". Redis counts the commands a
# script runs under their own names too, and an EVALSHA's time includes theirs, so only the
# commands a client sends count here; on the drawdown path the store sends nothing but
# scripts (tests/redis: a_drawdown_is_one_round_trip), and the health check a PING a second.
top_level() {
  rcli info commandstats | awk -F'[:,=]' '
    $1 ~ /^cmdstat_(evalsha|eval|evalsha_ro|eval_ro|fcall|fcall_ro|ping|script\|load)$/ { c += $3; u += $5 }
    END { print c + 0, u + 0 }'
}

measure() { # name
  local name=$1 ports pids_ t0 t1 n bad rps
  case $name in
  bare) ports=("$BARE_PORT") pids_=("$bare_pid") ;;
  memory) ports=("$MEM_PORT") pids_=("$mem_pid") ;;
  redis) ports=("${red_ports[@]}") pids_=("${red_pids[@]}") ;;
  esac
  if [[ $name == redis ]]; then
    rcli config resetstat >/dev/null
    local mem0 in0 r0
    mem0=$(info_field used_memory)
    in0=$(info_field total_net_input_bytes)
    r0=$(ticks "$redis_pid")
  fi
  t0=$(cpu_ticks "${pids_[@]}")
  read -r n bad rps < <(drive "${ports[@]}")
  t1=$(cpu_ticks "${pids_[@]}")
  local gw_us
  gw_us=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  if [[ $name == redis ]]; then
    local calls usec mem1 in1 r1
    rcli info commandstats >"$OUT/commandstats-$round.txt"
    read -r calls usec < <(top_level)
    mem1=$(info_field used_memory)
    in1=$(info_field total_net_input_bytes)
    r1=$(ticks "$redis_pid")
    awk -v name="$name" -v n="$n" -v bad="$bad" -v rps="$rps" -v gw="$gw_us" -v usec="$usec" \
      -v rt="$((r1 - r0))" -v hz="$HZ" -v calls="$calls" \
      -v net="$((in1 - in0))" -v mem="$((mem1 - mem0))" \
      'BEGIN { printf "%s %.0f %d %d %s %.1f %.1f %.2f %.0f %.0f\n", name, rps, n, bad, gw,
        usec / n, rt / hz * 1e6 / n, calls / n, net / n, mem / n }'
  else
    echo "$name $rps $n $bad $gw_us - - - - -"
  fi
}

echo "round server req/s requests non2xx gw_cpu_us redis_cmd_us redis_proc_us round_trips net_in_B mem_B"
for round in $(seq "$ROUNDS"); do
  # Rotate the order so no server always runs first after a quiet spell.
  read -ra order <<<"$STORES"
  shift_by=$(((round - 1) % ${#order[@]}))
  order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for who in "${order[@]}"; do
    echo "$round $(measure "$who")"
  done
done | tee "$OUT/rounds.txt"

awk '
  function median(s, k,   a, m, i, j, t) {
    m = split(s, a, " ")
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  $1 ~ /^[0-9]+$/ {
    rps[$2] = rps[$2] " " $3; bare_of[$1, $2] = $3; names[$2] = 1
    for (f = 6; f <= 11; f++) col[$2, f] = col[$2, f] " " $f
  }
  END {
    for (k in bare_of) { split(k, p, SUBSEP); if (p[2] != "bare" && ((p[1], "bare") in bare_of))
      share[p[2]] = share[p[2]] " " sprintf("%.1f", 100 * bare_of[k] / bare_of[p[1], "bare"]) }
    print "median over rounds:"
    for (s in names) {
      printf "  %-7s %7.0f req/s", s, median(rps[s])
      if (s != "bare") printf ", %5.1f %% of bare (rounds:%s)", median(share[s]), share[s]
      printf ", gateway %s us CPU/drawdown", median(col[s, 6])
      if (col[s, 7] !~ /-/) printf ", redis %s us in commands / %s us process CPU per drawdown, %s round trips, %s B sent, %s B stored per decision", median(col[s, 7]), median(col[s, 8]), median(col[s, 9]), median(col[s, 10]), median(col[s, 11])
      printf "\n"
    }
  }' "$OUT/rounds.txt"
echo "wrk outputs and server logs: $OUT" >&2
