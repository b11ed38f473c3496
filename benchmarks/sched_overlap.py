#!/usr/bin/env python3
"""Who runs, who waits for a CPU, and who runs at the same time, during an accept run.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/sched_overlap.py \
        [--mta fastpost|postfix] [--sessions 20] [--messages 8000] [--seconds 2]
        [--dir DIR] [--fs here|journal]

Why: at -s 20 fastpost's two daemons together use about one CPU (msgs/s x CPU ms/msg
stays near 1.0 s/s from run to run, docs/accept.md "Session 8") while the 2-core machine
is not saturated. Either the stages wait for each other (they seldom run at the same
time) or they wait for a CPU (runnable, not running). The kernel's scheduler events
tell which: one instance (as accept_pipeline.py builds it) is loaded by smtp-source,
and ``perf sched record -a`` records ``--seconds`` in the middle of the run; ``perf
sched timehist`` then gives every run slice (task, CPU, when it ended, how long it ran,
how long it had waited for a CPU before).

Prints, per thread group (smtpd, cleanup's loop / other threads, smtp-source, the
kernel's workers, everything else): CPU time, time spent runnable but waiting for a CPU
("scheduling delay"), slices per message; the machine's idle time; and for pairs of
groups the time both ran at once. All per message and as shares of the window.

Must run as root (perf, private instances). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from accept_pipeline import add_dir_argument, make, root_workdir  # noqa: E402
from harness import procs  # noqa: E402
from harness.tools import run_source  # noqa: E402

# "  12345.678901 [0001]  smtpd[4736]  0.012  0.003  0.045" (or "cleanup[4760/4755]": tid/pid)
_LINE = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$")
_TASK = re.compile(r"^(.*)\[(\d+)(?:/(\d+))?\]$")


def classify(tid: int, comm: str, groups: dict) -> str:
    """The group a thread belongs to (see groups in main())."""
    if tid in groups:
        return groups[tid]
    if comm.startswith("<idle>"):
        return "idle"
    if comm.startswith(("kworker", "jbd2", "loop", "ksoftirqd", "rcu", "kswapd", "migration")):
        return "kernel"
    return "other"


def parse(path: str, groups: dict) -> list:
    """(group, cpu, start, end, delay) per run slice, seconds."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", path], capture_output=True,
                         text=True).stdout
    slices = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        end, cpu, task, _wait, delay, run = m.groups()
        t = _TASK.match(task.strip())
        if t:
            comm, tid = t.group(1), int(t.group(2))  # comm[tid] or comm[tid/pid]
        else:
            comm, tid = task.strip(), 0
        end_f, run_f = float(end), float(run) / 1000.0
        slices.append((classify(tid, comm, groups), int(cpu), end_f - run_f, end_f,
                       float(delay) / 1000.0))
    return slices




def overlap(a: list, b: list) -> float:
    """Seconds during which an interval of a and one of b both run (a, b: sorted)."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def merged(intervals: list) -> list:
    out: list = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mta", choices=("fastpost", "postfix"), default="fastpost")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=8000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=1024)
    add_dir_argument(ap)
    args = ap.parse_args()
    if shutil.which("perf") is None:
        print("perf not found: apt-get install linux-perf", file=sys.stderr)
        return 1
    base = root_workdir("fp-sched-", args.dir, "perf and private instances need it", args.fs)
    if base is None:
        return 1
    inst = make(args.mta, os.path.join(base, args.mta))
    data = os.path.join(base, "sched.data")  # perf record output, removed with base
    try:
        inst.start()
        run_source(inst.port, args.sessions, 300, args.size)  # workers forked, warm
        inst.purge()
        os.sync()
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(
            run_source(inst.port, args.sessions, args.messages, args.size)))
        t0 = time.monotonic()
        load.start()
        time.sleep(0.5)
        groups: dict = {}
        for pid, (comm, _ppid, *_rest) in procs.tree(inst.master_pid()).items():
            name = procs.daemon_name(pid, comm)
            groups[pid] = name
            try:  # threads now: the instance is gone when the record is read
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                tids = []
            for tid in tids:
                if tid != pid:
                    groups[tid] = name + "/thread"
        src = subprocess.run(["pgrep", "-x", "smtp-source"], capture_output=True, text=True)
        for pid in src.stdout.split():
            groups[int(pid)] = "smtp-source"
        rec = subprocess.run(["perf", "sched", "record", "-a", "-o", data, "--", "sleep",
                              str(args.seconds)], capture_output=True, text=True)
        load.join()
        elapsed = time.monotonic() - t0
        if rec.returncode != 0:
            print(f"perf sched record failed: {rec.stderr.strip()[:300]}", file=sys.stderr)
            return 1
        rate = args.messages / result["seconds"] if result.get("seconds") else 0
        slices = parse(data, groups)
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    if not slices:
        print("no scheduler events parsed", file=sys.stderr)
        return 1
    start = min(s[2] for s in slices)
    end = max(s[3] for s in slices)
    window = end - start
    msgs = rate * window
    by: dict = collections.defaultdict(lambda: [0.0, 0.0, 0])
    iv: dict = collections.defaultdict(list)
    for g, _cpu, s, e, d in slices:
        by[g][0] += e - s
        by[g][1] += d
        by[g][2] += 1
        iv[g].append((s, e))
    print(f"{args.mta} -s {args.sessions}: {rate:,.0f} msgs/s over {elapsed:.1f} s; "
          f"{window:.2f} s recorded, ~{msgs:,.0f} messages in it; {os.cpu_count()} CPUs")
    print(f"{'group':<22} {'CPU ms/msg':>10} {'share':>7} {'delay ms/msg':>12} "
          f"{'slices/msg':>10}")
    for g in sorted(by, key=lambda k: -by[k][0]):
        run, delay, n = by[g]
        print(f"{g:<22} {1000 * run / msgs:10.3f} {run / window:6.0%} "
              f"{1000 * delay / msgs:12.3f} {n / msgs:10.2f}")
    names = [g for g in ("smtpd", "cleanup", "cleanup/thread", "smtp-source") if g in iv]
    ivm = {g: merged(iv[g]) for g in names}
    print("run at the same time (share of the window):")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"  {a} + {b}: {overlap(ivm[a], ivm[b]) / window:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
