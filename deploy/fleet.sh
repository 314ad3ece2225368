#!/usr/bin/env bash
# The production shape on one machine, from Debian's packages (no Docker):
#   a Redis Cluster of 3 primaries and 3 replicas (automatic failover), or, with
#   FLEET_TOPOLOGY=sentinel (`up --sentinel`), one primary, one replica and 3 Sentinels,
#   N gateway instances (release build, Redis store in cluster mode, shared global limit),
#   HAProxy in front, health-checking /readyz, and, when Debian's `prometheus` is installed,
#   Prometheus scraping every instance.
# Everything listens on 127.0.0.1; every process is started by this script, recorded by pid
# in $FLEET_DIR/pids, and stopped by that pid only.
#
#   deploy/fleet.sh up            start everything, print the addresses, stop it all on Ctrl-C
#   deploy/fleet.sh up -d         start everything and return (stop it with `down`)
#   deploy/fleet.sh up --sentinel the Sentinel topology (also `surge --sentinel`)
#   deploy/fleet.sh down          stop every process recorded in $FLEET_DIR/pids
#   deploy/fleet.sh status        what runs, the cluster's primaries, HAProxy's view
#   deploy/fleet.sh fault NAME    one fault (see `faults` below), for a schedule or by hand
#   deploy/fleet.sh surge [ARGS]  up -d, a loadtest against HAProxy with a fault schedule,
#                                 the auditor, then down (ARGS go to `loadtest run`)
#
# Settings (environment): FLEET_DIR (state, logs, pids; default /tmp/loan-gateway-fleet),
# FLEET_INSTANCES (3), FLEET_PORT (first port of a block of 200; 17000),
# FLEET_NODE_TIMEOUT_MS (cluster-node-timeout, or the Sentinels' down-after-milliseconds;
# 1000 on both), FLEET_TOPOLOGY (cluster or sentinel),
# FLEET_REPLICA_ACKS (the gateways' redis.replica_acks; unset: the default, 1 on both
# topologies), FLEET_GATEWAY_SET (more TOML
# appended at the end of the gateways' configuration, e.g. a `[server]` table), FLEET_BIN
# (folder of the release binaries; by default built with cargo into $CARGO_TARGET_DIR or
# target/), FLEET_FAULTS (surge's schedule, one AT=COMMAND a line; `none`: no fault).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${FLEET_DIR:-/tmp/loan-gateway-fleet}
N=${FLEET_INSTANCES:-3}
BASE=${FLEET_PORT:-17000}
TOPOLOGY=${FLEET_TOPOLOGY:-cluster}
NODE_TIMEOUT=${FLEET_NODE_TIMEOUT_MS:-}
MASTER=lg-primary
API_KEY=${LOADTEST_API_KEY:-loadtest-api-key-0001}
ADMIN=${LOADTEST_ADMIN_TOKEN:-loadtest-admin-token-0001}
# Ports of the Redis nodes and (Sentinel topology) of the Sentinels: set by topology().
REDIS_PORTS=()
SENTINEL_PORTS=()
LB_PORT=$((BASE + 80))
STATS_PORT=$((BASE + 81))
PROM_PORT=$((BASE + 90))
gw_port() { echo $((BASE + 100 + $1)); }

log() { printf 'fleet: %s %s\n' "$(date -u +%T.%3N)" "$*" >&2; }
die() { log "$*"; exit 1; }

topology() {
    case $TOPOLOGY in
    cluster)
        REDIS_PORTS=($((BASE + 1)) $((BASE + 2)) $((BASE + 3)) $((BASE + 4)) $((BASE + 5)) $((BASE + 6)))
        NODE_TIMEOUT=${NODE_TIMEOUT:-1000}
        ;;
    sentinel)
        REDIS_PORTS=($((BASE + 1)) $((BASE + 2)))
        SENTINEL_PORTS=($((BASE + 11)) $((BASE + 12)) $((BASE + 13)))
        NODE_TIMEOUT=${NODE_TIMEOUT:-1000}
        ;;
    *) die "FLEET_TOPOLOGY: cluster or sentinel, not $TOPOLOGY" ;;
    esac
}

need() {
    for c in "$@"; do
        command -v "$c" >/dev/null || die "$c not found: apt-get install -y redis-server haproxy"
    done
}

bin_dir() {
    if [[ -n ${FLEET_BIN:-} ]]; then echo "$FLEET_BIN"; return; fi
    local t=${CARGO_TARGET_DIR:-$ROOT/target}
    if [[ ${FLEET_NO_BUILD:-0} != 1 ]]; then
        log "building gateway and loadtest (release)"
        (cd "$ROOT" && cargo build --release -q -p gateway -p loadtest) >&2
    fi
    echo "$t/release"
}

# A pid recorded under $DIR/pids/NAME.pid, if that process still runs.
pid_of() {
    local f=$DIR/pids/$1.pid
    [[ -f $f ]] || return 1
    local p
    p=$(<"$f")
    kill -0 "$p" 2>/dev/null || return 1
    echo "$p"
}

# Starts "$@" in the background, its output in $DIR/logs/NAME.log, its pid recorded.
spawn() {
    local name=$1; shift
    "$@" >>"$DIR/logs/$name.log" 2>&1 &
    echo $! >"$DIR/pids/$name.pid"
}

stop() {
    local name=$1 p
    if p=$(pid_of "$name"); then
        kill -CONT "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    fi
    rm -f "$DIR/pids/$name.pid"
}

rcli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

# start_redis PORT [PRIMARY_PORT]: a node (with Sentinels, a replica of PRIMARY_PORT when
# given).
start_redis() {
    local port=$1 role=()
    mkdir -p "$DIR/redis-$port"
    if [[ $TOPOLOGY == cluster ]]; then
        # A primary found failing leaves its slots unserved until its replica is promoted
        # (about a second): without full coverage required, the other primaries go on
        # serving theirs meanwhile instead of the whole cluster answering CLUSTERDOWN.
        role=(--cluster-enabled yes --cluster-config-file nodes.conf
            --cluster-node-timeout "$NODE_TIMEOUT" --cluster-require-full-coverage no)
    elif [[ -n ${2:-} ]]; then
        role=(--replicaof 127.0.0.1 "$2")
    fi
    # A full sync starts at once rather than after Redis' 5 s wait for more replicas: a
    # primary without its replica answers approvals 503 until the sync is done.
    spawn "redis-$port" redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/redis-$port" \
        --daemonize no --save "" --appendonly yes --appendfsync everysec \
        --repl-diskless-sync-delay 0 --maxmemory-policy noeviction "${role[@]}"
    # PONG, not an error: while it loads its append-only file a node answers LOADING.
    for _ in $(seq 100); do
        [[ $(rcli "$port" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    die "redis-server on $port did not start (see $DIR/logs/redis-$port.log)"
}

# Waits until every node says cluster_state:ok and every primary has a replica in sync.
wait_cluster() {
    local deadline=$((SECONDS + ${1:-60}))
    while ((SECONDS < deadline)); do
        local ok=1 port
        for port in "${REDIS_PORTS[@]}"; do
            pid_of "redis-$port" >/dev/null || continue
            rcli "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
        done
        local primaries
        primaries=$(rcli "${REDIS_PORTS[0]}" cluster nodes 2>/dev/null | grep -c 'master' || true)
        local synced
        synced=$(for port in "${REDIS_PORTS[@]}"; do
            rcli "$port" info replication 2>/dev/null | grep -c 'master_link_status:up' || true
        done | paste -sd+ | bc)
        if ((ok && primaries >= 3 && synced >= 3)); then return 0; fi
        sleep 0.2
    done
    return 1
}

start_sentinel() {
    local port=$1 d=$DIR/sentinel-$1
    mkdir -p "$d"
    # Sentinels rewrite their file (the primary they follow, their peers): it is theirs.
    [[ -f $d/sentinel.conf ]] || cat >"$d/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $d
sentinel monitor $MASTER 127.0.0.1 ${REDIS_PORTS[0]} 2
sentinel down-after-milliseconds $MASTER $NODE_TIMEOUT
sentinel failover-timeout $MASTER 5000
EOF
    spawn "sentinel-$port" redis-server "$d/sentinel.conf" --sentinel
    for _ in $(seq 100); do
        rcli "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "sentinel on $port did not start (see $DIR/logs/sentinel-$port.log)"
}

# The port of the primary the Sentinels name (the first that answers).
sentinel_primary() {
    local s
    for s in "${SENTINEL_PORTS[@]}"; do
        rcli "$s" sentinel get-master-addr-by-name "$MASTER" 2>/dev/null | sed -n 2p | grep . && return 0
    done
    return 1
}

# Waits until a replica is in sync and every Sentinel knows it and the two other Sentinels.
wait_sentinels() {
    local deadline=$((SECONDS + ${1:-60})) s port
    while ((SECONDS < deadline)); do
        local ok=1 r p synced
        for s in "${SENTINEL_PORTS[@]}"; do
            r=$(rcli "$s" sentinel replicas "$MASTER" 2>/dev/null | grep -c '^name$' || true)
            p=$(rcli "$s" sentinel sentinels "$MASTER" 2>/dev/null | grep -c '^name$' || true)
            ((r >= 1 && p >= 2)) || ok=0
        done
        synced=$(for port in "${REDIS_PORTS[@]}"; do
            rcli "$port" info replication 2>/dev/null | grep -c 'master_link_status:up' || true
        done | paste -sd+ | bc)
        if ((ok && synced >= 1)); then return 0; fi
        sleep 0.2
    done
    return 1
}

write_gateway_config() {
    local nodes="" port
    if [[ $TOPOLOGY == sentinel ]]; then
        for port in "${SENTINEL_PORTS[@]}"; do nodes+="\"redis://127.0.0.1:$port\", "; done
        cat >"$DIR/gateway.toml" <<EOF
# Written by deploy/fleet.sh: one of $N instances on a primary found through 3 Sentinels.
# Behind Sentinels the store URL gives only the database: the Sentinels name the host.
store = "redis://$MASTER/0"

[redis]
sentinels = [${nodes%, }]
sentinel_master = "$MASTER"
shared_global_limit = true
global_limit_instances = $N
connect_timeout_ms = 300
command_timeout_ms = 500
health_check_interval_ms = 250
${FLEET_REPLICA_ACKS:+replica_acks = $FLEET_REPLICA_ACKS}

[log]
format = "json"
filter = "info"
${FLEET_GATEWAY_SET:-}
EOF
        return
    fi
    for port in "${REDIS_PORTS[@]:1}"; do nodes+="\"redis://127.0.0.1:$port\", "; done
    cat >"$DIR/gateway.toml" <<EOF
# Written by deploy/fleet.sh: one of $N instances on the Redis Cluster.
store = "redis://127.0.0.1:${REDIS_PORTS[0]}"

[redis]
cluster = true
cluster_nodes = [${nodes%, }]
shared_global_limit = true
global_limit_instances = $N
connect_timeout_ms = 300
command_timeout_ms = 500
health_check_interval_ms = 250
${FLEET_REPLICA_ACKS:+replica_acks = $FLEET_REPLICA_ACKS}

[log]
format = "json"
filter = "info"
${FLEET_GATEWAY_SET:-}
EOF
}

start_gateway() {
    local i=$1 port
    port=$(gw_port "$i")
    spawn "gateway-$i" env GATEWAY_CONFIG="$DIR/gateway.toml" GATEWAY_LISTEN="127.0.0.1:$port" \
        GATEWAY_API_KEYS="$API_KEY" GATEWAY_ADMIN_TOKEN="$ADMIN" "$BIN/gateway"
}

wait_ready() {
    local url=$1 deadline=$((SECONDS + ${2:-30}))
    while ((SECONDS < deadline)); do
        curl -sf -o /dev/null "$url/readyz" && return 0
        sleep 0.1
    done
    return 1
}

start_haproxy() {
    local servers="" i
    for i in $(seq "$N"); do
        servers+="    server gw$i 127.0.0.1:$(gw_port "$i") check"$'\n'
    done
    # The same instances unchecked, used only while every checked one is down: see
    # haproxy.cfg.
    for i in $(seq "$N"); do
        servers+="    server gw$i-any 127.0.0.1:$(gw_port "$i") backup"$'\n'
    done
    sed -e "s/@FRONT@/$LB_PORT/; s/@STATS@/$STATS_PORT/" "$ROOT/deploy/fleet/haproxy.cfg" |
        awk -v s="$servers" '{ if ($0 == "@SERVERS@") printf "%s", s; else print }' \
            >"$DIR/haproxy.cfg"
    haproxy -c -q -f "$DIR/haproxy.cfg" || die "haproxy.cfg does not validate"
    spawn haproxy haproxy -db -f "$DIR/haproxy.cfg"
}

# Prometheus (Debian's `prometheus` package) scraping every instance's /metrics, when it is
# installed; the fleet runs without it otherwise.
start_prometheus() {
    if ! command -v prometheus >/dev/null; then
        log "prometheus not installed (apt-get install -y prometheus): no scraping"
        return 0
    fi
    local targets="" i
    for i in $(seq "$N"); do targets+="'127.0.0.1:$(gw_port "$i")', "; done
    cat >"$DIR/prometheus.yml" <<EOF
# Written by deploy/fleet.sh: every gateway instance, scraped directly (not through HAProxy,
# which would give one instance's counters at a time).
global:
  scrape_interval: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: loan-gateway
    metrics_path: /metrics
    static_configs:
      - targets: [${targets%, }]
EOF
    spawn prometheus prometheus --config.file="$DIR/prometheus.yml" \
        --storage.tsdb.path="$DIR/prometheus" --web.listen-address="127.0.0.1:$PROM_PORT"
    local deadline=$((SECONDS + 30))
    until curl -sf -o /dev/null "http://127.0.0.1:$PROM_PORT/-/ready"; do
        ((SECONDS < deadline)) || die "prometheus not ready (see $DIR/logs/prometheus.log)"
        sleep 0.2
    done
}

all_names() {
    local p i
    echo prometheus
    echo haproxy
    for i in $(seq "$N"); do echo "gateway-$i"; done
    for p in "${REDIS_PORTS[@]}"; do echo "redis-$p"; done
    for p in "${SENTINEL_PORTS[@]}"; do echo "sentinel-$p"; done
}

cmd_down() {
    local name
    for name in $(all_names); do stop "$name"; done
    # Instances started by an earlier `up` with a larger N.
    for f in "$DIR"/pids/*.pid; do
        [[ -e $f ]] && stop "$(basename "$f" .pid)"
    done
    return 0
}

cmd_up() {
    need redis-server redis-cli haproxy curl bc
    if ls "$DIR"/pids/*.pid >/dev/null 2>&1; then
        for f in "$DIR"/pids/*.pid; do
            kill -0 "$(<"$f")" 2>/dev/null && die "a fleet already runs in $DIR (deploy/fleet.sh down)"
        done
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/pids" "$DIR/logs"
    echo "$TOPOLOGY" >"$DIR/topology"
    BIN=$(bin_dir)
    [[ -x $BIN/gateway ]] || die "no gateway binary in $BIN"
    local port addrs=()
    if [[ $TOPOLOGY == sentinel ]]; then
        start_redis "${REDIS_PORTS[0]}"
        start_redis "${REDIS_PORTS[1]}" "${REDIS_PORTS[0]}"
        for port in "${SENTINEL_PORTS[@]}"; do start_sentinel "$port"; done
        wait_sentinels 60 || die "the Sentinels did not settle within 60 s"
        addrs=("primary 127.0.0.1:${REDIS_PORTS[0]}, replica 127.0.0.1:${REDIS_PORTS[1]}," \
            "sentinels 127.0.0.1:${SENTINEL_PORTS[*]}")
    else
        for port in "${REDIS_PORTS[@]}"; do
            start_redis "$port"
            addrs+=("127.0.0.1:$port")
        done
        log "creating the cluster: ${addrs[*]} (3 primaries, 1 replica each)"
        redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/logs/cluster-create.log" 2>&1 ||
            die "redis-cli --cluster create failed (see $DIR/logs/cluster-create.log)"
        wait_cluster 60 || die "the cluster did not settle within 60 s"
    fi
    write_gateway_config
    local i
    for i in $(seq "$N"); do start_gateway "$i"; done
    for i in $(seq "$N"); do
        wait_ready "http://127.0.0.1:$(gw_port "$i")" 30 || die "gateway-$i not ready (see $DIR/logs/gateway-$i.log)"
    done
    start_haproxy
    wait_ready "http://127.0.0.1:$LB_PORT" 10 || die "HAProxy not ready (see $DIR/logs/haproxy.log)"
    start_prometheus
    echo "$BIN" >"$DIR/bin"
    log "up: http://127.0.0.1:$LB_PORT (HAProxy; stats http://127.0.0.1:$STATS_PORT/stats)"
    if pid_of prometheus >/dev/null; then
        log "    prometheus http://127.0.0.1:$PROM_PORT (job loan-gateway, every instance)"
    fi
    log "    gateways $(for i in $(seq "$N"); do printf '127.0.0.1:%s ' "$(gw_port "$i")"; done)"
    log "    redis $TOPOLOGY: ${addrs[*]}; state, logs and pids in $DIR"
}

# The port of the primary that owns slot 0 (the one a fault is aimed at); with Sentinels,
# the primary they name.
primary_port() {
    local port
    if [[ $TOPOLOGY == sentinel ]]; then
        sentinel_primary
        return
    fi
    for port in "${REDIS_PORTS[@]}"; do
        pid_of "redis-$port" >/dev/null || continue
        rcli "$port" cluster nodes 2>/dev/null |
            awk '$3 ~ /master/ && $3 !~ /fail/ && $9 ~ /^0-/ { split($2, a, "[:@]"); print a[2]; exit }' |
            grep . && return 0
    done
    return 1
}

cmd_fault() {
    BIN=$(<"$DIR/bin")
    local what=${1:?fault name}
    case $what in
    kill-gateway)
        # kill -9 one instance, then start it again after ${3:-1} s.
        local i=${2:-1} p
        p=$(pid_of "gateway-$i") || die "gateway-$i is not running"
        kill -KILL "$p"
        log "fault: gateway-$i (pid $p) killed"
        sleep "${3:-1}"
        start_gateway "$i"
        log "fault: gateway-$i restarted (pid $(pid_of "gateway-$i"))"
        ;;
    kill-primary)
        # kill -9 the primary of slot 0 (with Sentinels: the primary they name); its replica
        # is promoted. The old node is started again as soon as that promotion is seen, and
        # no sooner than ${2:-0} s after the kill, as a supervisor restarting a crashed node
        # would (see "Recovery from a primary kill" in README.md): on the cluster it rejoins
        # as the promoted node's replica by itself (gossip tells it its slots moved); with
        # Sentinels it is made the promoted primary's replica as soon as it answers (left a
        # primary, the Sentinels would demote it only 8 to 10 s later). Until it holds the
        # promoted primary's data, approvals on that primary wait for a replica and answer 503.
        local port p rport="" id floor
        port=$(primary_port) || die "no primary found"
        p=$(pid_of "redis-$port")
        if [[ $TOPOLOGY == cluster ]]; then
            id=$(rcli "$port" cluster myid)
            rport=$(rcli "$port" cluster nodes | awk -v id="$id" '$4 == id { split($2, a, "[:@]"); print a[2]; exit }')
            [[ -n $rport ]] || die "primary $port has no replica"
        fi
        sleep "${2:-0}" &
        floor=$!
        kill -KILL "$p"
        log "fault: redis primary $port (pid $p) killed"
        local now=""
        for _ in $(seq 300); do
            if [[ $TOPOLOGY == sentinel ]]; then
                now=$(sentinel_primary) && [[ $now != "$port" ]] && break
            elif rcli "$rport" role 2>/dev/null | head -1 | grep -qx master; then
                now=$rport
                break
            fi
            now=""
            sleep 0.05
        done
        [[ -n $now ]] || die "no replica of $port was promoted within 15 s"
        log "fault: redis $now promoted"
        wait "$floor"
        if [[ $TOPOLOGY == sentinel ]]; then
            # Started with --replicaof, a node connects to its primary on its next
            # replication tick (up to a second); REPLICAOF connects at once. Meanwhile it is a
            # primary no one writes to: the gateways connect only to the one the Sentinels
            # name, and they demote a stale primary only 8 s after it reports.
            start_redis "$port"
            local _
            for _ in $(seq 100); do
                [[ $(rcli "$port" replicaof 127.0.0.1 "$now" 2>/dev/null) == OK* ]] && break
                sleep 0.05
            done
            log "fault: redis $port restarted as the replica of $now"
        else
            start_redis "$port"
            log "fault: redis $port restarted"
        fi
        ;;
    unreplicated-kill-primary)
        [[ $TOPOLOGY == cluster ]] || die "unreplicated-kill-primary: on the cluster topology only"
        # A crash just after the replica link broke: the replica of slot 0's primary is
        # stopped, the primary drops the link (CLIENT KILL TYPE replica), takes writes alone
        # for ${2:-0.5} s, and is killed; then the replica continues and, the primary gone,
        # is promoted without those writes. The old primary is started again after 5 s.
        local port p rport rp id
        port=$(primary_port) || die "no primary found"
        p=$(pid_of "redis-$port")
        id=$(rcli "$port" cluster myid)
        rport=$(rcli "$port" cluster nodes | awk -v id="$id" '$4 == id { split($2, a, "[:@]"); print a[2]; exit }')
        [[ -n $rport ]] || die "primary $port has no replica"
        rp=$(pid_of "redis-$rport")
        kill -STOP "$rp"
        rcli "$port" client kill type replica >/dev/null
        sleep "${2:-0.5}"
        kill -KILL "$p"
        kill -CONT "$rp"
        log "fault: redis primary $port (pid $p) wrote ${2:-0.5} s without its replica $rport, then was killed"
        sleep 5
        start_redis "$port"
        log "fault: redis $port restarted"
        ;;
    stop-primary)
        # SIGSTOP the primary of slot 0 for ${2:-4} s (beyond the node timeout: its replica
        # is promoted), then SIGCONT: it comes back stale and is turned into a replica.
        local port p
        port=$(primary_port) || die "no primary found"
        p=$(pid_of "redis-$port")
        kill -STOP "$p"
        log "fault: redis primary $port (pid $p) stopped"
        sleep "${2:-4}"
        kill -CONT "$p"
        log "fault: redis $port continued"
        ;;
    restart-redis)
        # Every node killed, then started again on its append-only file and nodes.conf
        # (with Sentinels: the primary they name, and the other as its replica).
        local port primary
        primary=$(primary_port || true)
        for port in "${REDIS_PORTS[@]}"; do
            kill -KILL "$(pid_of "redis-$port")" 2>/dev/null || true
        done
        log "fault: every redis node killed"
        sleep "${2:-1}"
        for port in "${REDIS_PORTS[@]}"; do
            if [[ $TOPOLOGY == sentinel && -n $primary && $port != "$primary" ]]; then
                start_redis "$port" "$primary"
            else
                start_redis "$port"
            fi
        done
        log "fault: every redis node restarted"
        ;;
    *) die "unknown fault $what (kill-gateway [I [S]], kill-primary [S], unreplicated-kill-primary [S], stop-primary [S], restart-redis [S])" ;;
    esac
}

cmd_status() {
    local name p
    for name in $(all_names); do
        if p=$(pid_of "$name"); then echo "$name pid $p"; else echo "$name down"; fi
    done
    if [[ $TOPOLOGY == sentinel ]]; then
        echo "primary (as the Sentinels name it): $(sentinel_primary || echo none)"
    else
        echo "primaries (port slots):"
        for p in "${REDIS_PORTS[@]}"; do
            rcli "$p" cluster nodes 2>/dev/null | awk '$3 ~ /master/ && $3 !~ /fail/ { print "  " $2, $9 }' && break
        done
    fi
    curl -s "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null | awk -F, '$1 == "gateways" { print "  haproxy", $2, $18 }' || true
}

cmd_surge() {
    local out=${FLEET_OUT:-$ROOT/loadtest-results/fleet-$(date -u +%Y%m%dT%H%M%SZ)}
    trap cmd_down EXIT INT TERM
    cmd_up
    BIN=$(<"$DIR/bin")
    local self=$ROOT/deploy/fleet.sh
    local nodes=() port
    if [[ $TOPOLOGY == sentinel ]]; then
        for port in "${SENTINEL_PORTS[@]}"; do nodes+=(--sentinel "redis://127.0.0.1:$port"); done
        nodes+=(--sentinel-master "$MASTER")
    else
        for port in "${REDIS_PORTS[@]}"; do nodes+=(--redis-node "redis://127.0.0.1:$port"); done
    fi
    # The default schedule: an instance kill, a primary kill (the node started again once
    # its replica is promoted), a primary stopped beyond the failover timeout; each fault a
    # command run at its second of the run.
    local faults=(
        --fault "10=$self fault kill-gateway 1 1"
        --fault "25=$self fault kill-primary"
        --fault "45=$self fault stop-primary 4"
    )
    if [[ ${FLEET_FAULTS:-} == none ]]; then
        faults=()
    elif [[ -n ${FLEET_FAULTS:-} ]]; then
        # One AT=COMMAND a line.
        local line
        faults=()
        while IFS= read -r line; do
            [[ -n $line ]] && faults+=(--fault "$line")
        done <<<"$FLEET_FAULTS"
    fi
    local rc=0
    # The scenario is fleet-faults unless the arguments name one.
    local scenario=(--scenario fleet-faults)
    [[ " $* " == *" --scenario "* ]] && scenario=()
    FLEET_DIR=$DIR "$BIN/loadtest" run --target "http://127.0.0.1:$LB_PORT" --no-progress \
        --out "$out" "${scenario[@]}" ${faults[@]+"${faults[@]}"} "$@" || rc=$?
    "$BIN/loadtest" audit --run "$out" --target "http://127.0.0.1:$LB_PORT" "${nodes[@]}" || rc=$?
    log "results in $out (report.html, audit.json)"
    return "$rc"
}

# `--sentinel` anywhere after `up` or `surge` picks that topology; `fault`, `status` and
# `down` follow the one `up` recorded.
cmd=${1:-}
shift || true
args=()
for a in "$@"; do
    if [[ $a == --sentinel ]]; then TOPOLOGY=sentinel; else args+=("$a"); fi
done
set -- "$cmd" ${args[@]+"${args[@]}"}
if [[ $cmd != up && $cmd != surge && -f $DIR/topology ]]; then TOPOLOGY=$(<"$DIR/topology"); fi
topology

case ${1:-} in
up)
    if [[ ${2:-} == -d ]]; then
        cmd_up
    else
        trap cmd_down EXIT INT TERM
        cmd_up
        log "Ctrl-C stops everything"
        while true; do sleep 3600; done
    fi
    ;;
down) cmd_down ;;
status) cmd_status ;;
fault) shift; cmd_fault "$@" ;;
surge) shift; cmd_surge "$@" ;;
*) sed -n '2,28p' "$0" >&2; exit 2 ;;
esac
