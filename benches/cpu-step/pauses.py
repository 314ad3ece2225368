#!/usr/bin/env python3
"""How the kernel enforces a CPU quota on a thread that never blocks (BENCHMARKS.md,
"CPU-bound step overload"): the pauses a gateway at its quota sits through.

A thread spins in a cgroup v1 CPU quota of QUOTA_US per PERIOD_US (default 1,000 per 10,000:
10 % of a core) on core CORE, reading the clock; a gap of more than 0.2 ms between two reads
is a pause (throttled, or another task ran). Once without yielding, then yielding
(`sched_yield`) every 0.5, 0.2 ms of running. Prints, per run, the runs between pauses and
the pauses (p50 / p90 / p99 / max, ms) and the share of the core the thread got.

    benches/cpu-step/pauses.py            # 4 s per run
    SECONDS_PER_RUN=10 YIELD_MS="0 0.5" benches/cpu-step/pauses.py

Needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu (as benches/cpu-step.sh).
The cgroup is made for the run and removed after it; each run stops by itself.
"""

import json
import os
import sys
import time

ROOT = "/sys/fs/cgroup/cpu"
QUOTA_US = int(os.environ.get("QUOTA_US", "1000"))
PERIOD_US = int(os.environ.get("PERIOD_US", "10000"))
CORE = int(os.environ.get("CORE", "0"))
SECONDS = float(os.environ.get("SECONDS_PER_RUN", "4"))
YIELDS = [float(y) for y in os.environ.get("YIELD_MS", "0 0.5 0.2").split()]
GAP_S = 0.0002


def spin(seconds, yield_s):
    """Runs in the child: spins, yielding every yield_s of running (0: never); returns
    (runs, gaps) in seconds."""
    clock = time.perf_counter
    t0 = last = run_start = last_yield = clock()
    runs, gaps = [], []
    while True:
        t = clock()
        if t - last > GAP_S:
            runs.append(last - run_start)
            gaps.append(t - last)
            run_start = last_yield = t
        last = t
        if t - t0 > seconds:
            return runs, gaps
        if yield_s and t - last_yield >= yield_s:
            # A pause inside the yield (the quota spent) shows as the next read's gap.
            os.sched_yield()
            last_yield = clock()


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def main():
    if not os.path.exists(f"{ROOT}/cpu.cfs_quota_us"):
        sys.exit(f"no cgroup v1 cpu controller at {ROOT}")
    print(f"quota {QUOTA_US} us per {PERIOD_US} us, core {CORE}, {SECONDS} s per run")
    print("yield every | runs ms p50 / p90 / p99 / max | pauses ms p50 / p90 / p99 / max | share")
    for y in YIELDS:
        cg = f"{ROOT}/pauses-{os.getpid()}"
        os.mkdir(cg)
        try:
            with open(f"{cg}/cpu.cfs_period_us", "w") as f:
                f.write(str(PERIOD_US))
            with open(f"{cg}/cpu.cfs_quota_us", "w") as f:
                f.write(str(QUOTA_US))
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                with open(f"{cg}/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
                os.sched_setaffinity(0, {CORE})
                runs, gaps = spin(SECONDS, y / 1000)
                with os.fdopen(w, "w") as out:
                    json.dump([runs, gaps], out)
                os._exit(0)
            os.close(w)
            with os.fdopen(r) as inp:
                runs, gaps = json.load(inp)
            os.waitpid(pid, 0)
        finally:
            os.rmdir(cg)
        share = sum(runs) / SECONDS
        label = f"{y} ms" if y else "never"
        print(
            f"{label:>11} | "
            + " / ".join(f"{q(runs, p):.2f}" for p in (0.5, 0.9, 0.99, 1.0))
            + " | "
            + " / ".join(f"{q(gaps, p):.2f}" for p in (0.5, 0.9, 0.99, 1.0))
            + f" | {share:.3f}"
        )


if __name__ == "__main__":
    main()
