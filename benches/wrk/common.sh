# Shared by the wrk scripts (sourced, from the workspace root): the benchmark's credentials
# and user, the binaries, and the seeding of the user.

export WRK_API_KEY=bench-caller-key-0001
export WRK_USER=u-bench
ADMIN_TOKEN=bench-admin-token-0001

# CPU time (user + system) process $1 has used, in clock ticks of HZ per second.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# Sets GW and LT: the gateway and loadtest binaries in $BIN as they are (e.g. copies kept
# while the sources change), else a release build in ${CARGO_TARGET_DIR:-target}.
binaries() {
  if [[ -n ${BIN:-} ]]; then
    GW="$BIN/gateway"
    LT="$BIN/loadtest"
  else
    cargo build --release -p gateway -p loadtest >&2
    GW="${CARGO_TARGET_DIR:-target}/release/gateway"
    LT="${CARGO_TARGET_DIR:-target}/release/loadtest"
  fi
}

# The benchmark user on the gateway at port $1: a grade-A line of Fen::MAX (10^15 fen),
# nothing drawn. With WRK_USERS=N (N > 1), also the N users "$WRK_USER-0" .. "$WRK_USER-<N-1>"
# that drawdown.lua then spreads its drawdowns over (one curl, one connection).
export WRK_USERS=${WRK_USERS:-1}
seed_user() {
  local line='{"limit_fen":1000000000000000,"used_fen":0,"risk_grade":"A","logins_30d":12,"account_age_days":800}'
  # SCHEME=https for a gateway on TLS (callgrind.sh TLS=1; its certificate is self-signed).
  curl -kfsS -X PUT "${SCHEME:-http}://127.0.0.1:$1/admin/credit-lines/$WRK_USER" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "$line" >/dev/null
  if ((WRK_USERS > 1)); then
    local i
    for ((i = 0; i < WRK_USERS; i++)); do
      ((i > 0)) && echo next
      printf 'url = "%s://127.0.0.1:%s/admin/credit-lines/%s-%s"\n' "${SCHEME:-http}" "$1" "$WRK_USER" "$i"
      printf 'request = "PUT"\noutput = "/dev/null"\n'
      printf 'header = "Authorization: Bearer %s"\n' "$ADMIN_TOKEN"
      printf 'header = "Content-Type: application/json"\n'
      printf 'data = "%s"\n' "${line//\"/\\\"}"
    done | curl -kfsS -K -
  fi
}
