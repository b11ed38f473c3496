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

``--pin smtpd=0,cleanup=1`` pins those daemons' threads to those CPUs (``0+1``: a set)
in the even-numbered runs and unpins them in the odd ones: pinned and unpinned runs
alternate in one instance. Migrations per message (se.nr_migrations from
/proc/PID/task/TID/sched) are printed beside the context switches.

``--perf FILE`` records the cleanup worker with ``perf record -g`` (2,999 Hz) during the
last run and prints, per thread, its share of the samples, user and kernel, and the
samples in the scheduler's switch (finish_task_switch: the cost of sleeping and being
woken on this host) by the system call that slept: epoll_pwait (the loop waiting for
work), fdatasync (the syncs' I/O waits), futex (the GIL, locks and queue hand-offs),
clock_nanosleep (the index round's gather), preempted (at the return to user mode).
perf's own cost is in that run's CPU figures (as strace's and py-spy's are).

``--pyspy FILE`` records the cleanup worker with py-spy (raw format, 1000 Hz; extra
arguments such as --gil or --threads are passed on) during the last run; ``--strace FILE``
writes ``strace -c -f``'s system-call counts of the cleanup worker for the last run
(strace slows the process down: that run's CPU figures are not comparable).

Must run as root (the instance's daemons change user). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
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
        for tid, (_comm, user, system, vol, invol) in procs.thread_stats(pid).items():
            out[(name, pid, tid)] = (user, system, vol, invol, migrations(pid, tid))
    return out


def migrations(pid: int, tid) -> int:
    """se.nr_migrations of a thread (moves between CPUs), 0 when the kernel hides it."""
    try:
        with open(f"/proc/{pid}/task/{tid}/sched") as fh:
            for line in fh:
                if line.startswith("se.nr_migrations"):
                    return int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return 0


def pin(master: int, spec: dict | None) -> None:
    """Set the CPU affinity of every thread of the named daemons ({name: {cpus}});
    None: every CPU for all of them again."""
    every = set(range(os.cpu_count() or 1))
    for pid, st in procs.tree(master).items():
        name = procs.daemon_name(pid, st[0])
        if name not in ("cleanup", "smtpd"):
            continue
        cpus = every if spec is None else spec.get(name, every)
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass


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
    ap.add_argument("--perf", help="perf record -g data file of the cleanup worker for the last run "
                    "(a per-thread summary is printed)")
    ap.add_argument("--pin", help="e.g. smtpd=0,cleanup=1: CPU affinity of those daemons' "
                    "threads in the even-numbered runs (the odd ones run unpinned: A/B pairs "
                    "inside one instance)")
    accept_pipeline.add_dir_argument(ap)
    args, spy_args = ap.parse_known_args()
    base = accept_pipeline.root_workdir("fp-cleanup-threads-", args.dir, "the instance's daemons change user", args.fs)
    if base is None:
        return 1
    inst = accept_pipeline.make("fastpost", os.path.join(base, "fastpost"))
    try:
        inst.start()
        run_source(inst.port, args.sessions, 300, 1024)
        master = inst.master_pid()
        spec = None
        if args.pin:
            spec = {}
            for item in args.pin.split(","):
                name, _, cpus = item.partition("=")
                spec[name.strip()] = {int(c) for c in cpus.split("+")}
        for r in range(args.runs):
            inst.purge()
            pinned = spec is not None and r % 2 == 1
            if spec is not None:
                pin(master, spec if pinned else None)
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
            recorder = None
            if args.perf and r == args.runs - 1 and shutil.which("perf"):
                recorder = subprocess.Popen(["perf", "record", "-F", "2999", "-g", "-o", args.perf,
                                             "-p", str(cleanup_pid(master))],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            before = snapshot(master)
            src = run_source(inst.port, args.sessions, args.messages, 1024)
            after = snapshot(master)
            if recorder is not None:
                recorder.send_signal(2)
                recorder.wait()
            if spy is not None:
                spy.send_signal(2)
                spy.wait()
            if tracer is not None:
                tracer.send_signal(2)
                tracer.wait()
            n = args.messages
            threads = {}
            for key, (u, s, v, iv, mig) in after.items():
                u0, s0, v0, iv0, mig0 = before.get(key, (0, 0, 0, 0, 0))
                name, pid, tid = key
                agg = threads.setdefault((name, tid - pid), [0.0, 0.0, 0.0, 0.0, 0.0])
                agg[0] += 1000 * (u - u0) / TICK / n
                agg[1] += 1000 * (s - s0) / TICK / n
                agg[2] += (v - v0) / n
                agg[3] += (iv - iv0) / n
                agg[4] += (mig - mig0) / n
            total = {d: sum(a[0] + a[1] for (name, _t), a in threads.items() if name == d)
                     for d in ("cleanup", "smtpd")}
            print(f"run {r + 1}{' pinned' if pinned else ''}: {n / src['seconds']:7,.0f} msgs/s  "
                  f"cleanup {total['cleanup']:.3f} ms/msg  smtpd {total['smtpd']:.3f} ms/msg")
            for (name, t), (u, s, v, iv, mig) in sorted(threads.items()):
                if u + s > 0:
                    print(f"    {name} thread +{t}: user {u:.3f} sys {s:.3f} ms/msg, "
                          f"context switches {v:.2f} voluntary {iv:.2f} involuntary, "
                          f"migrations {mig:.3f} per msg")
            if recorder is not None:
                print_perf_summary(args.perf, cleanup_pid(master))
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


#: Kernel functions on a sleeping sample's call chain -> the system call that slept.
SLEEP_CAUSES = (("epoll_pwait", "epoll_pwait"), ("__x64_sys_fdatasync", "fdatasync"),
                ("__x64_sys_futex", "futex"), ("__x64_sys_clock_nanosleep", "clock_nanosleep"),
                ("exit_to_user_mode_loop", "preempted"), ("irqentry_exit", "preempted"))


def print_perf_summary(path: str, pid: int | None) -> None:
    """Per-thread shares of a ``perf record -g`` file of one process (see --perf)."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "tid,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    threads: dict = {}  # tid -> {"all", "user", "kernel", "switch", causes...}
    for block in out.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if len(lines) < 2 or not lines[0].strip().isdigit():
            continue
        tid = int(lines[0])
        leaf = lines[1]
        t = threads.setdefault(tid, collections.Counter())
        t["all"] += 1
        t["kernel" if "kernel" in leaf else "user"] += 1
        if "finish_task_switch" in leaf or "__schedule" in leaf:
            t["switch"] += 1
            chain = " ".join(lines[2:])
            t[next((c for key, c in SLEEP_CAUSES if key in chain), "other")] += 1
    total = sum(t["all"] for t in threads.values()) or 1
    print(f"perf: {total} samples of the cleanup worker; per thread, % of all samples")
    for tid, t in sorted(threads.items()):
        causes = ", ".join(f"{c} {100 * t[c] / total:.1f}" for c in
                           ("epoll_pwait", "fdatasync", "futex", "clock_nanosleep", "preempted", "other")
                           if t[c])
        print(f"    thread +{tid - (pid or tid)}: {100 * t['all'] / total:.1f} (user {100 * t['user'] / total:.1f}, "
              f"kernel {100 * t['kernel'] / total:.1f}, of which switching {100 * t['switch'] / total:.1f}: {causes})")


if __name__ == "__main__":
    sys.exit(main())
