#!/usr/bin/env bash
# Reproduces BENCHMARKS.md, section "adaptive admission under step overload" (issue 7): one
# release build, then back to back on this machine:
#   1. capacity: `steady-bureau` (the step scenario's clients, deadline and bureau, a ramp
#      10 -> 100 journeys/s) with admission off; capacity = its best 3 s of answers within
#      the deadline, in journeys/s (a journey is a quote and a drawdown: answers / 2);
#   2. `step-overload --capacity C` (0.5x, 1x, 2x, 5x, 10x of C, then 0.5x) once per
#      configuration named in $ONLY:
#        default  what ships (no file: adaptive limit with the queue following it, critical
#                 share 50 %, sojourn target 20 ms, retry budget 10 %, overload actions);
#        fixed    gateway/config/fixed.toml (the policy's fixed concurrency 64 and queue 256,
#                 every other protection off);
#        off      fixed.toml with the policy's concurrency and queue at 100000 (no admission);
#        default-qN  the default with the policy's queue capped at N.
# Every run starts the bureau simulator and the gateway in-process (see the scenarios'
# [bureau] and [gateway] blocks). Prints each run's "Steps" table; everything is in $OUT.
#
#   benches/step-overload.sh
#   CAPACITY=48 ONLY="default" benches/step-overload.sh     # skip the probe / other configs
#   ONLY="off fixed default default-q8" benches/step-overload.sh
#   BIN=/tmp/build benches/step-overload.sh      # a prebuilt loadtest in a dir (to compare builds)
#
# Set CARGO_TARGET_DIR to build elsewhere than target/. Needs jq.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-loadtest-results/step-overload-$(date -u +%Y%m%dT%H%M%SZ)}
ONLY=${ONLY:-"default fixed off"}
mkdir -p "$OUT"

if [[ -n "${BIN:-}" ]]; then
  LT="$BIN/loadtest"
else
  cargo build --release -p loadtest >&2
  LT="$TARGET/release/loadtest"
fi
# Admission out of the way: the fixed limit (every other protection off) set past any load.
OFF=(--gateway-config gateway/config/fixed.toml --gateway-set policy.normal.concurrency=100000
  --gateway-set policy.normal.queue=100000)

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
    default) args=() ;;
    fixed) args=(--gateway-config gateway/config/fixed.toml) ;;
    default-q*) args=(--gateway-set "policy.normal.queue=${config#default-q}") ;;
    *) echo "unknown configuration $config" >&2; exit 1 ;;
  esac
  "$LT" run --scenario step-overload --capacity "$CAPACITY" "${args[@]}" --no-progress \
    --out "$OUT/$config" >&2 || true
  echo "### $config"
  sed -n '/^\*\*Steps\*\*/,/^Goodput:/p' "$OUT/$config/summary.md"
done
