#!/usr/bin/env bash
# Overload where the gateway's own CPU is the bottleneck (issue 17; BENCHMARKS.md, "CPU-bound
# step overload"). One release build, then back to back on this machine:
#   1. capacity: `cpu-steady` (a connection per journey, a ramp 100 -> 4000 journeys/s)
#      against the gateway with admission out of the way; capacity = its best 3 s of answers
#      within the 1 s deadline, in journeys/s;
#   2. `cpu-step --capacity C` (0.5x, 1x, 2x, 5x, 10x of C, then 0.5x) once per
#      configuration named in $ONLY:
#        default  what ships (gateway/config/default.toml);
#        fixed    gateway/config/fixed.toml (fixed limit 64, queue 256, nothing else);
#        NAME     the default with benches/cpu-step/NAME.toml appended (a variant to compare);
#        haproxy  the default gateway behind HAProxy (benches/cpu-step/haproxy.cfg: maxconn
#                 per server and a queue timeout), HAProxy on core 1 beside the generator.
# The gateway runs as its own process: the memory store, rate limits lifted
# (benches/cpu-step/base.toml), pinned to core 0 (`taskset`) with a CPU quota of
# $QUOTA_PCT % of that core (cgroup v1: cpu.cfs_quota_us per cpu.cfs_period_us of 10 ms, in
# a cgroup made for the run and removed after it). Without root or without the cgroup v1
# cpu controller the quota is not applied (a warning says so) and the gateway has the whole
# of core 0: the figures are then of another machine. The generator runs on core 1.
#
#   benches/cpu-step.sh
#   CAPACITY=900 ONLY="default" benches/cpu-step.sh     # skip the probe / other configs
#   QUOTA_PCT=20 benches/cpu-step.sh
#   BIN=/tmp/build benches/cpu-step.sh                  # prebuilt gateway and loadtest in a dir
#
# Set CARGO_TARGET_DIR to build elsewhere than target/. Needs jq and taskset; HAProxy for
# `haproxy` (Debian's package). Loopback only; every process it starts is stopped by pid.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-loadtest-results/cpu-step-$(date -u +%Y%m%dT%H%M%SZ)}
ONLY=${ONLY:-"default fixed"}
QUOTA_PCT=${QUOTA_PCT:-10}
PORT=${PORT:-18480}
HAPROXY_PORT=${HAPROXY_PORT:-18481}
GW_CORE=${GW_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [[ -n "${BIN:-}" ]]; then
  LT="$BIN/loadtest" GW="$BIN/gateway"
else
  cargo build --release -p loadtest -p gateway >&2
  LT="$ROOT/$TARGET/release/loadtest" GW="$ROOT/$TARGET/release/gateway"
fi
export GATEWAY_API_KEYS=loadtest-api-key-0001 GATEWAY_ADMIN_TOKEN=loadtest-admin-token-0001
# A connection per journey: tens of thousands of descriptors at 10x.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

CG=""
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$CG" && -d "$CG" ]]; then rmdir "$CG" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The CPU quota: a cgroup v1 cpu controller of our own, when root may make one.
CPU_CG_ROOT=/sys/fs/cgroup/cpu
if [[ $(id -u) == 0 && -w $CPU_CG_ROOT && -e $CPU_CG_ROOT/cpu.cfs_quota_us ]]; then
  CG="$CPU_CG_ROOT/loan-gateway-cpu-step-$$"
  mkdir "$CG"
  echo 10000 >"$CG/cpu.cfs_period_us"
  echo $((10000 * QUOTA_PCT / 100)) >"$CG/cpu.cfs_quota_us"
  echo "gateway: core $GW_CORE, quota $(cat "$CG/cpu.cfs_quota_us") us per $(cat "$CG/cpu.cfs_period_us") us" >&2
else
  echo "WARNING: no cgroup v1 cpu controller we may write (not root?): no CPU quota;" \
    "the gateway gets all of core $GW_CORE" >&2
fi

# Starts the gateway with config file $1 (pinned, in the cgroup); sets GW_PID.
start_gateway() {
  local config=$1 log=$2
  # The shell enters the cgroup, then becomes the gateway: every thread is in it.
  GATEWAY_CONFIG="$config" GATEWAY_LISTEN="127.0.0.1:$PORT" CG="$CG" \
    sh -c '[ -n "$CG" ] && echo $$ >"$CG/cgroup.procs"; exec taskset -c '"$GW_CORE"' "$0"' \
    "$GW" >"$log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the gateway did not start: $(tail -5 "$log")" >&2
  return 1
}

stop_gateway() {
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
}

# The configuration file of run $1: benches/cpu-step/base.toml, then the configuration's
# own tables (none of them repeats a table of base.toml).
config_for() {
  local name=$1 file="$OUT/$1.toml"
  cp benches/cpu-step/base.toml "$file"
  case $name in
    default | haproxy) ;;
    fixed) grep -v '^store' gateway/config/fixed.toml >>"$file" ;;
    off) grep -v '^store' gateway/config/fixed.toml >>"$file"
      sed -i 's/^\[policy.normal\]$/[policy.normal]\nconcurrency = 100000\nqueue = 100000/' "$file" ;;
    *) if [[ -f benches/cpu-step/$name.toml ]]; then cat "benches/cpu-step/$name.toml" >>"$file"
       else echo "unknown configuration $name (nor benches/cpu-step/$name.toml)" >&2; exit 1; fi ;;
  esac
  echo "$file"
}

run_lt() {
  local target=$1
  shift
  taskset -c "$GEN_CORE" "$LT" run --target "$target" --no-progress "$@" >&2 || true
}

if [[ -z "${CAPACITY:-}" ]]; then
  start_gateway "$(config_for off)" "$OUT/steady-gateway.log"
  run_lt "http://127.0.0.1:$PORT" --scenario cpu-steady --out "$OUT/steady"
  stop_gateway
  CAPACITY=$(jq '[.seconds[] | ([.priorities[]?.ok] | add // 0)] as $g
    | [range(0; ($g | length) - 2) | ($g[.] + $g[. + 1] + $g[. + 2]) / 3] | max / 2
    | . * 10 | floor / 10' "$OUT/steady/results.json")
  echo "capacity (cpu-steady, admission off, $QUOTA_PCT % of a core): $CAPACITY journeys/s" |
    tee "$OUT/capacity.txt"
fi

for config in $ONLY; do
  start_gateway "$(config_for "$config")" "$OUT/$config-gateway.log"
  target="http://127.0.0.1:$PORT"
  HA_PID=""
  if [[ $config == haproxy ]]; then
    command -v haproxy >/dev/null || { echo "haproxy is not installed" >&2; exit 1; }
    sed -e "s/@FRONT@/$HAPROXY_PORT/" -e "s/@BACK@/$PORT/" benches/cpu-step/haproxy.cfg \
      >"$OUT/haproxy.cfg"
    taskset -c "$GEN_CORE" haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 &
    HA_PID=$!
    PIDS+=("$HA_PID")
    sleep 0.5
    target="http://127.0.0.1:$HAPROXY_PORT"
  fi
  curl -fsS "http://127.0.0.1:$PORT/metrics" >"$OUT/$config-metrics-before.txt" || true
  run_lt "$target" --scenario cpu-step --capacity "$CAPACITY" --out "$OUT/$config"
  curl -fsS "http://127.0.0.1:$PORT/metrics" >"$OUT/$config-metrics-after.txt" || true
  if [[ -n "$HA_PID" ]]; then kill "$HA_PID" 2>/dev/null || true; wait "$HA_PID" 2>/dev/null || true; fi
  stop_gateway
  echo "### $config"
  sed -n '/^\*\*Steps\*\*/,/^Goodput:/p' "$OUT/$config/summary.md"
done
