#!/usr/bin/env bash
# Reproduces BENCHMARKS.md, section "adaptive admission under step overload" (issue 7): one
# release build, then back to back on this machine:
#   1. capacity: `steady-bureau` (the step scenario's clients, deadline and bureau, a ramp
#      10 -> 100 journeys/s) with admission off; capacity = its best 3 s of answers within
#      the deadline, in journeys/s (a journey is a quote and a drawdown: answers / 2);
#   2. `step-overload --capacity C` (0.5x, 1x, 2x, 5x, 10x of C, then 0.5x) three times:
#      admission off (policy concurrency and queue 100000), the fixed limiter (the default
#      configuration: the policy's concurrency 64, queue 256) and the adaptive limiter
#      (gateway/config/adaptive.toml: adaptive limit, critical share 50 %, sojourn target
#      20 ms, retry budget 10 %, overload actions).
# Every run starts the bureau simulator and the gateway in-process (see the scenarios'
# [bureau] and [gateway] blocks). Prints each run's "Steps" table; everything is in $OUT.
#
#   benches/step-overload.sh
#   CAPACITY=48 ONLY="adaptive" benches/step-overload.sh     # skip the probe / other configs
#   ONLY="off fixed adaptive adaptive-q8" benches/step-overload.sh  # adaptive-qN: queue N
#
# Set CARGO_TARGET_DIR to build elsewhere than target/. Needs jq.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-loadtest-results/step-overload-$(date -u +%Y%m%dT%H%M%SZ)}
ONLY=${ONLY:-"off fixed adaptive"}
mkdir -p "$OUT"

cargo build --release -p loadtest >&2
LT="$TARGET/release/loadtest"
OFF=(--gateway-set policy.normal.concurrency=100000 --gateway-set policy.normal.queue=100000)

if [[ -z "${CAPACITY:-}" ]]; then
  "$LT" run --scenario steady-bureau "${OFF[@]}" --no-progress --out "$OUT/steady" >&2
  # Best 3-second mean of answers within the deadline, over 2 answers per journey.
  CAPACITY=$(jq '[.seconds[] | ([.priorities[]?.ok] | add // 0)] as $g
    | [range(0; ($g | length) - 2) | ($g[.] + $g[. + 1] + $g[. + 2]) / 3] | max / 2
    | . * 10 | floor / 10' "$OUT/steady/results.json")
  echo "capacity (steady-bureau, admission off): $CAPACITY journeys/s" | tee "$OUT/capacity.txt"
fi

for config in $ONLY; do
  case $config in
    off) args=("${OFF[@]}") ;;
    fixed) args=() ;;
    adaptive) args=(--gateway-config gateway/config/adaptive.toml) ;;
    # The same with the policy's queue (the admission queue, 256 by default) set to N.
    adaptive-q*) args=(--gateway-config gateway/config/adaptive.toml
      --gateway-set "policy.normal.queue=${config#adaptive-q}") ;;
    *) echo "unknown configuration $config" >&2; exit 1 ;;
  esac
  "$LT" run --scenario step-overload --capacity "$CAPACITY" "${args[@]}" --no-progress \
    --out "$OUT/$config" >&2 || true
  echo "### $config"
  sed -n '/^\*\*Steps\*\*/,/^Goodput:/p' "$OUT/$config/summary.md"
done
