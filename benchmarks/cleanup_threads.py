#!/usr/bin/env python3
"""CPU per message of fastpost's cleanup, thread by thread, under smtp-source load.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/cleanup_threads.py \
        [--messages 5000] [--runs 3] [--sessions 20] [--pyspy FILE [py-spy args...]]

Postfix counterpart: none (what accept_pipeline.py measures for the whole process,
split by thread). One fastpost instance without qmgr (as accept_pipeline.py builds it),
warmed up with 300 messages; then, per run, the queue is emptied and smtp-source sends
the messages (1 KiB, one connection per message). For the cleanup and smtpd processes,
utime/stime of every thread and its voluntary/involuntary context switches are read
from /proc/PID/task/TID/{stat,status} before and after the run; the figures are per
message. Threads are named by their offset from the process id: 0 is the event loop,
the next two cleanup's committer I/O and index threads (in the order they started).
CPU time from /proc stays meaningful on a loaded machine where msgs/s does not.

``--pyspy FILE`` records the cleanup worker with py-spy (raw format, 1000 Hz; extra
arguments such as --gil or --threads are passed on) during the last run; ``--strace FILE``
writes ``strace -c -f``'s system-call counts of the cleanup worker for the last run
(strace slows the process down: that run's CPU figures are not comparable).

Must run as root (the instance's daemons change user). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import accept_pipeline  # noqa: E402
from harness import procs  # noqa: E402
from harness.tools import run_source  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def snapshot(master: int) -> dict:
    """{(daemon, pid, tid): (user ticks, system ticks, voluntary cs, involuntary cs)}."""
    out = {}
    for pid, st in procs.tree(master).items():
        name = procs.daemon_name(pid, st[0])
        if name not in ("cleanup", "smtpd"):
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                    data = fh.read()
                with open(f"/proc/{pid}/task/{tid}/status") as fh:
                    status = fh.read()
            except OSError:
                continue
            f = data[data.rfind(")") + 2:].split()
            vol = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
            invol = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
            out[(name, pid, int(tid))] = (int(f[11]), int(f[12]), vol, invol)
    return out


def cleanup_pid(master: int) -> int | None:
    for pid, st in procs.tree(master).items():
        if procs.daemon_name(pid, st[0]) == "cleanup" and len(os.listdir(f"/proc/{pid}/task")) > 1:
            return pid
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--pyspy", help="py-spy raw output file for the last run")
    ap.add_argument("--strace", help="strace -c -f summary of the cleanup worker for the last run")
    accept_pipeline.add_dir_argument(ap)
    args, spy_args = ap.parse_known_args()
    base = accept_pipeline.root_workdir("fp-cleanup-threads-", args.dir, "the instance's daemons change user")
    if base is None:
        return 1
    inst = accept_pipeline.make("fastpost", os.path.join(base, "fastpost"))
    try:
        inst.start()
        run_source(inst.port, args.sessions, 300, 1024)
        master = inst.master_pid()
        for r in range(args.runs):
            inst.purge()
            spy = None
            if args.pyspy and r == args.runs - 1 and shutil.which("py-spy"):
                spy = subprocess.Popen(["py-spy", "record", "-p", str(cleanup_pid(master)), "-o", args.pyspy,
                                        "-f", "raw", "-r", "1000", "--nonblocking", *spy_args],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            tracer = None
            if args.strace and r == args.runs - 1 and shutil.which("strace"):
                tracer = subprocess.Popen(["strace", *(os.environ.get("STRACE_ARGS", "-c").split()), "-f", "-o", args.strace, "-p", str(cleanup_pid(master))],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            before = snapshot(master)
            src = run_source(inst.port, args.sessions, args.messages, 1024)
            after = snapshot(master)
            if spy is not None:
                spy.send_signal(2)
                spy.wait()
            if tracer is not None:
                tracer.send_signal(2)
                tracer.wait()
            n = args.messages
            threads = {}
            for key, (u, s, v, iv) in after.items():
                u0, s0, v0, iv0 = before.get(key, (0, 0, 0, 0))
                name, pid, tid = key
                agg = threads.setdefault((name, tid - pid), [0.0, 0.0, 0.0, 0.0])
                agg[0] += 1000 * (u - u0) / TICK / n
                agg[1] += 1000 * (s - s0) / TICK / n
                agg[2] += (v - v0) / n
                agg[3] += (iv - iv0) / n
            total = {d: sum(a[0] + a[1] for (name, _t), a in threads.items() if name == d)
                     for d in ("cleanup", "smtpd")}
            print(f"run {r + 1}: {n / src['seconds']:7,.0f} msgs/s  cleanup {total['cleanup']:.3f} ms/msg  "
                  f"smtpd {total['smtpd']:.3f} ms/msg")
            for (name, t), (u, s, v, iv) in sorted(threads.items()):
                if u + s > 0:
                    print(f"    {name} thread +{t}: user {u:.3f} sys {s:.3f} ms/msg, "
                          f"context switches {v:.2f} voluntary {iv:.2f} involuntary per msg")
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
