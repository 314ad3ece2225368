#!/usr/bin/env python3
"""Redis's cost of one drawdown commit (`scripts::COMMIT`), by itself (BENCHMARKS.md, "Redis
store"): the script as the gateway builds it (taken from gateway/src/store/redis/scripts.rs),
called N times over U users as approvals with fresh idempotency keys, pipelined 64 at a time,
on a redis-server of its own (free loopback port, pinned to REDIS_CPU, default 1).

    benches/redis/commit_cost.py [N] [U]            # 50,000 commits over 1,000 users
    CHECKED=1 benches/redis/commit_cost.py          # as the common case: a checked commit
    CALLGRIND=1 benches/redis/commit_cost.py 5000   # instructions per commit (valgrind)
    INPUTS=98 benches/redis/commit_cost.py          # with the decision-inputs XADD after each
    SCRIPT_BODY="return {'committed'}" CHECKED=1 CALLGRIND=1 benches/redis/commit_cost.py 3000
    REDIS_ARGS="--zset-max-listpack-entries 0" benches/redis/commit_cost.py  # server options

Before the N measured calls, each user holds AP approvals (default 300) and each slot's
expiry queue AP records, as after a few rounds of benches/wrk/redis.sh, and WARM commits
(default N/5) run. Prints the redis-server process's CPU time per commit, `INFO
commandstats` per commit (the commands the script ran, wall time), and with CALLGRIND=1 the
instructions Redis executed per commit (callgrind, started with instrumentation off): a
count that a busy machine does not move, unlike the times. The arguments follow the
script's ARGV list; keep them in step with it."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
U = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
AP = int(os.environ.get("AP", "300"))
WARM = int(os.environ.get("WARM", N // 5))
CHECKED = bool(os.environ.get("CHECKED"))
CALLGRIND = bool(os.environ.get("CALLGRIND"))
# INPUTS=98: each commit followed by the decision-inputs XADD the gateway queues after it
# (`MAXLEN 98`: the default `decision_inputs_kept` of 100,000 over 1,024 slots).
INPUTS = int(os.environ.get("INPUTS", "0"))

src = open(os.path.join(ROOT, "gateway/src/store/redis/scripts.rs")).read()
macros = {m.group(1): m.group(2) for m in re.finditer(
    r'macro_rules! (\w+) \{\s*\(\) => \{\s*r"(.*?)"\s*\};', src, re.S)}
body = re.search(r"pub\(super\) const COMMIT: &str = concat!\((.*?)\);\n", src, re.S).group(1)
script = "".join(macros[m.group(1)] if m.group(1) else m.group(2)
                 for m in re.finditer(r'(\w+)!\(\)|r"(.*?)"', body, re.S))

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
assert port != 6379
tmp = tempfile.mkdtemp()
valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/cg.out", f"--log-file={tmp}/vg.log"] if CALLGRIND else []
server = subprocess.Popen(
    ["taskset", "-c", os.environ.get("REDIS_CPU", "1")] + valgrind +
    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
     "--appendonly", "no", "--dir", tmp] + os.environ.get("REDIS_ARGS", "").split(),
    stdout=subprocess.DEVNULL)


def stop():
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


for _ in range(200):
    try:
        conn = socket.create_connection(("127.0.0.1", port))
        break
    except OSError:
        time.sleep(0.05)
else:
    stop()
    sys.exit("redis-server did not start")
f = conn.makefile("rb")


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read():
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-", b":"):
        return rest
    if kind == b"$":
        return None if int(rest) < 0 else f.read(int(rest) + 2)[:-2]
    if kind == b"*":
        return [read() for _ in range(max(int(rest), 0))]
    raise ValueError(line)


def call(*args):
    conn.sendall(enc(*args))
    return read()


# SCRIPT_BODY="return {'committed'}": the cost of the call itself, with the same arguments.
sha = call("SCRIPT", "LOAD", os.environ.get("SCRIPT_BODY", script)).decode()
users = [f"u-{i:06d}" for i in range(U)]
tag = ["{s%04d}" % (i % 1024) for i in range(U)]
now_s = int(time.time())
limit = 10**15
for i, u in enumerate(users):
    call("HSET", f"lg:{tag[i]}:u:{u}", "limit", limit, "used", 0, "grade", "A", "logins_30d", 12,
         "drawdowns_24h", 0, "applications_1h", 0, "account_age_days", 800, "new_device", 0,
         "days_overdue", 0, "blocklisted", 0, "v", 10**6, "up_until", (now_s + 86400) * 1000,
         "a0", now_s - 3600, "ax", now_s * 1000)
    if AP:
        members = []
        for j in range(AP):
            members += [now_s - 3600 + j * 10, j + 1]
        call("ZADD", f"lg:{tag[i]}:u-ap:{u}", *members)
        call("PEXPIRE", f"lg:{tag[i]}:u-ap:{u}", 93_600_000)
if AP:
    for slot in range(1024):
        call("RPUSH", "lg:{s%04d}:k-due" % slot,
             *["%d lg:{s%04d}:k:%032x" % ((now_s + 86400) * 1000 + j, slot, 10**15 + j)
               for j in range(AP)])

# A decision's JSON, its id and user filled in per commit (Lua interns every string: equal
# strings would cost less than the gateway's, each of which differs).
decision = json.dumps({
    "decision_id": "{did}", "user_id": "{user}",
    "outcome": "approved", "amount_fen": 100, "available_fen": 0, "drawable_now_fen": 100,
    "reasons": [], "threshold_version": 7, "policy": "default",
    "evaluated_at": "2026-12-05T19:00:00.000Z", "appealable": False, "guidance": "x" * 300})
state = [(10**6, 0)] * U
# A decision's inputs as the gateway keeps them (about 330 bytes of JSON).
inputs = json.dumps({
    "decision_id": "dd_0000_01JEXAMPLE0000000000000000", "user_id": "u-000000",
    "state": {"limit": limit, "used": 0, "grade": "A", "logins_30d": 12, "drawdowns_24h": 0,
              "applications_1h": 0, "account_age_days": 800, "new_device": False,
              "days_overdue": 0, "blocklisted": False},
    "amount_fen": 100, "channel": "app", "bureau": {"kind": "not_consulted"},
    "profile": "default", "window_ends_at": None, "threshold_version": 7,
    "outcome": "approved", "reason": None})
now0 = now_s * 1000


def netstrings(*values):
    return "".join(f"{len(str(v).encode())}:{v}," for v in values)


def commit(k):
    i = k % U
    u, t = users[i], tag[i]
    did = "dd_%04d_%020d" % (i % 1024, k)
    now = now0 + k // 20
    exp = now + 86_400_000
    keys = [f"lg:{t}:u:{u}", f"lg:{t}:k:{k:032x}", f"lg:{t}:k-due", f"lg:{t}:d:{did}",
            f"lg:{t}:audit", f"lg:{t}:u-ap:{u}"]
    version, used = state[i]
    state[i] = (version + 1, used + 100)
    value = decision.replace("{did}", did, 1).replace("{user}", u, 1) + "\n"
    tail = f"\n0\n{u}\n\nbench-caller"
    audit = netstrings(did, u, "bench-caller", f"key-{k}", "approved", 100, 7, "default",
                       "2026-12-05T19:00:00.000Z")
    argv = [None, now, f"{exp} {k:032x} {did}", f"{exp} {keys[1]}", 86_400_000, 604_800_000]
    if CHECKED:
        argv[0] = value + str(limit - used - 100) + tail
        argv += [audit + netstrings(used + 100, limit - used - 100), version, used + 100,
                 version + 1]
    else:
        argv[0] = value
        argv += [audit, "", tail, 100, limit]
    out = enc("EVALSHA", sha, len(keys), *keys, *argv)
    if INPUTS:
        # As `RedisStore::keep_inputs` sends it after the commit (its own command).
        out += enc("XADD", f"lg:{t}:din", "MAXLEN", INPUTS, "*", "i", inputs)
    return out


def run(n, base):
    for j in range(0, n, 64):
        batch = range(j, min(n, j + 64))
        conn.sendall(b"".join(commit(base + k) for k in batch))
        for _ in batch:
            r = read()
            if not (isinstance(r, list) and r[0] == b"committed"):
                stop()
                sys.exit(f"not committed: {r!r}")
            if INPUTS:
                read()


def ticks():
    st = open(f"/proc/{server.pid}/stat").read().split()
    return int(st[13]) + int(st[14])


run(WARM, 0)
call("CONFIG", "RESETSTAT")
if CALLGRIND:
    subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], stdout=subprocess.DEVNULL)
t0 = ticks()
run(N, WARM)
t1 = ticks()
if CALLGRIND:
    subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], stdout=subprocess.DEVNULL)
stats = call("INFO", "commandstats").decode()
print(f"redis-server CPU per commit: {(t1 - t0) / os.sysconf('SC_CLK_TCK') * 1e6 / N:.1f} us "
      f"({N} commits over {U} users, {'checked' if CHECKED else 'unchecked'})")
for line in stats.splitlines():
    if line.startswith("cmdstat_") and "config" not in line:
        name, rest = line[8:].split(":", 1)
        kv = dict(x.split("=") for x in rest.split(","))
        print(f"  {name:18s} {int(kv['calls']) / N:5.2f} calls, "
              f"{int(kv['usec']) / N:6.2f} us per commit")
stop()
if CALLGRIND:
    for line in open(f"{tmp}/vg.log"):
        if "Collected" in line:
            total = int(line.split(":")[1].replace(",", ""))
            print(f"  instructions per commit (callgrind): {total / N:,.0f}")
    # Redis's periodic work (`serverCron`: memory statistics, expiry sampling) runs by the
    # clock, so it grows with how long the run took under valgrind, not with the commits.
    tree = subprocess.run(["callgrind_annotate", "--inclusive=yes", f"{tmp}/cg.out"],
                          capture_output=True, text=True).stdout
    cron = sum(int(m.group(1).replace(",", "")) for m in
               re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S*:serverCron ", tree, re.M))
    print(f"  instructions per commit without serverCron: {(total - cron) / N:,.0f}")
