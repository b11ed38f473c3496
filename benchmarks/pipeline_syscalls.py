#!/usr/bin/env python3
"""System calls per message of fastpost's smtpd and cleanup in the accept pipeline, thread by thread.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/pipeline_syscalls.py \
        [--messages 5000] [--runs 2] [--sessions 20] [--fs journal] [--dir /var/tmp]
        [--record FILE]

Postfix counterpart: none (a fastpost measuring tool; docs/accept.md "Session 12: the
kernel's part"). One fastpost instance without qmgr, built and warmed up as
accept_pipeline.py --only fastpost builds it (300 messages); then, per run, the queue is
emptied and synced and smtp-source sends the messages (1 KiB, one connection per
message). During each run ``perf stat --per-thread`` counts, in the kernel (no stop per
call, unlike strace: the batches are as large as in a plain run), every
``syscalls:sys_enter_*`` tracepoint of every thread of the smtpd and cleanup workers;
/proc gives each thread's user and system CPU and its context switches. Printed per
message: each thread's CPU, switches and system calls by name (calls ≥ 0.005 per
message), and the total of system calls per process.

Threads are named by daemon and offset from the process id (``cleanup+0`` is the event
loop; the committer's I/O and index threads follow).

``--trace SECONDS`` records, for that long in the middle of the last run, every read,
write and epoll_pwait of those workers (``perf record`` of their tracepoints, with
their arguments) and prints them per message by what the descriptor is (the maillog,
the smtpd-cleanup socket, the loop's eventfd, a client connection: a descriptor not
open before the run) and, for epoll_pwait, whether it was a poll without waiting
(timeout 0: the loop had callbacks ready). Messages in the window = smtpd's close calls.

``--record FILE`` runs ``perf record -g`` (2,999 Hz) on the same workers during the last
run and prints the kernel symbols that take ≥ 0.5 % of each daemon's samples
(``perf report --sort sym``, kernel only), i.e. what the system calls cost.

Must run as root (the instance's daemons change user; perf on other users' processes).
Not part of the test suite. Fails with a message when perf is missing or smtp-source
reports errors.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import accept_pipeline  # noqa: E402
from harness import procs  # noqa: E402
from harness.tools import run_source  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
DAEMONS = ("smtpd", "cleanup")
#: The system calls counted by name (every tracepoint at once slows the pipeline ~4x);
#: ``raw_syscalls:sys_enter`` counts all of them, so "other" shows what is missing here.
CALLS = ("read", "write", "writev", "pwrite64", "pwritev2", "readv", "recvfrom", "sendto",
         "recvmsg", "sendmsg", "epoll_pwait", "epoll_wait", "epoll_ctl", "io_uring_enter",
         "futex", "accept4", "close", "shutdown", "setsockopt", "getsockname", "getpeername",
         "fdatasync", "fsync", "lseek", "statfs", "fstatfs", "newfstatat", "getpid", "openat",
         "fcntl", "ioctl", "clock_nanosleep", "nanosleep", "mmap", "munmap", "brk", "madvise",
         "sched_yield", "socket", "connect", "sched_setattr", "sched_getattr", "setpriority")


def workers(inst) -> dict[int, str]:
    """{pid: daemon} of the instance's smtpd and cleanup workers."""
    out = {}
    for pid, (comm, *_rest) in procs.tree(inst.master_pid()).items():
        name = procs.daemon_name(pid, comm)
        if name in DAEMONS:
            out[pid] = name
    return out


def thread_names(pids: dict[int, str]) -> dict[int, str]:
    """{tid: "daemon+offset"} for every thread of those processes."""
    names = {}
    for pid, name in pids.items():
        for tid in procs.thread_ids(pid):
            names[tid] = f"{name}+{tid - pid}"
    return names


def thread_cpu(pids: dict[int, str]) -> dict[int, tuple]:
    """{tid: (user ticks, system ticks, voluntary cs, involuntary cs)}."""
    out = {}
    for pid in pids:
        for tid in procs.thread_ids(pid):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
                    data = fh.read()
                f = data[data.rfind(b")") + 2:].split()
                vcs = ivcs = 0
                with open(f"/proc/{pid}/task/{tid}/status") as fh:
                    for line in fh:
                        if line.startswith("voluntary_ctxt_switches"):
                            vcs = int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            ivcs = int(line.split()[1])
                out[tid] = (int(f[11]), int(f[12]), vcs, ivcs)
            except OSError:
                pass
    return out


def perf_start(pids, out: str):
    exe = shutil.which("perf")
    if exe is None:
        raise SystemExit("perf not installed (apt-get install linux-perf)")
    # one counter per tracepoint and thread: several thousand descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return subprocess.Popen([exe, "stat", "-x,", "--per-thread", "-e",
                             ",".join(["raw_syscalls:sys_enter"]
                                      + [f"syscalls:sys_enter_{c}" for c in CALLS]),
                             "-p", ",".join(map(str, pids)), "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_read(out: str) -> dict:
    """{(tid, syscall): count} from perf stat -x, --per-thread output."""
    counts = {}
    with open(out) as fh:
        for line in fh:
            f = line.strip().split(",")
            if len(f) < 4 or not f[3].startswith(("syscalls:sys_enter_", "raw_syscalls:")):
                continue
            try:
                n = int(f[1])
                tid = int(f[0].rsplit("-", 1)[1])
            except (ValueError, IndexError):
                continue
            if n:
                counts[(tid, f[3].split("sys_enter_", 1)[-1] if "sys_enter_" in f[3] else "all")] = n
    return counts


def fd_kinds(pids: dict[int, str], inst) -> dict[tuple, str]:
    """{(pid, fd): kind} for the descriptors open now (before the run)."""
    kinds = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target == os.path.realpath(inst.maillog) or target.endswith("/maillog"):
                kind = "maillog"
            elif target.startswith("socket:"):
                kind = "unix socket"  # the smtpd-cleanup connection (clients come later)
            elif "eventfd" in target:
                kind = "eventfd"
            elif "eventpoll" in target:
                kind = "epoll"
            else:
                kind = target.rsplit("/", 1)[-1][:24]
            kinds[(pid, int(fd))] = kind
    return kinds


TRACED = ("read", "write", "epoll_pwait", "close")


def trace_start(pids, out: str, seconds: float):
    return subprocess.Popen(["perf", "record", "-q", "-o", out, "-e",
                             ",".join(f"syscalls:sys_enter_{c}" for c in TRACED),
                             "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def trace_report(out: str, pids: dict[int, str], names: dict[int, str], kinds: dict) -> None:
    """Reads, writes and polls per message by descriptor kind, from perf script."""
    script = subprocess.run(["perf", "script", "-i", out, "-F", "pid,tid,event,trace"],
                            capture_output=True, text=True).stdout
    counts = collections.Counter()
    closes = 0
    for line in script.splitlines():
        f = line.split()
        if len(f) < 3 or "/" not in f[0]:
            continue
        pid, tid = (int(x) for x in f[0].split("/"))
        call = f[1].rstrip(":").split("sys_enter_")[-1]
        args = dict(a.split(":", 1) for a in " ".join(f[2:]).replace(", ", ",").split(",")
                    if ":" in a)
        args = {k.strip(): v.strip() for k, v in args.items()}
        who = names.get(tid, pids.get(pid, "?"))
        if call == "close":
            if pids.get(pid) == "smtpd":
                closes += 1
            continue
        if call == "epoll_pwait":
            what = "no wait" if int(args.get("timeout", "0x1"), 16) == 0 else "may wait"
        else:
            fd = int(args.get("fd", "-1"), 16)
            what = kinds.get((pid, fd), "client connection")
        counts[(who, call, what)] += 1
    if not closes:
        print("  trace: no session ended in the window")
        return
    print(f"  trace ({closes} sessions in the window), per message:")
    for (who, call, what), v in sorted(counts.items()):
        if v / closes >= 0.005:
            print(f"    {who:12s} {call:12s} {what:18s} {v / closes:.3f}")


def record_report(data: str, pids: dict[int, str]) -> None:
    """Per daemon: the kernel symbols with >= 0.5 % of its samples."""
    for pid, name in sorted(pids.items()):
        rep = subprocess.run(["perf", "report", "-i", data, "--pid", str(pid), "--sort", "sym",
                              "--no-children", "--stdio", "-g", "none", "--percent-limit", "0.5"],
                             capture_output=True, text=True)
        lines = [ln for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        kernel = [ln for ln in lines if "[k]" in ln]
        share = sum(float(ln.split("%")[0]) for ln in kernel)
        print(f"\n{name} (pid {pid}): kernel symbols >= 0.5 % of its samples "
              f"({share:.1f} % together)")
        for ln in kernel:
            print("   " + ln.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--trace", type=float,
                    help="seconds of perf record of reads, writes and polls in the last run")
    ap.add_argument("--record", help="perf.data file: perf record -g of the workers in the last run")
    accept_pipeline.add_dir_argument(ap)
    args = ap.parse_args()
    base = accept_pipeline.root_workdir("fp-syscalls-", args.dir, "perf and the instance need it",
                                        args.fs)
    if base is None:
        return 1
    inst = accept_pipeline.make("fastpost", os.path.join(base, "fastpost"))
    try:
        accept_pipeline.start_warm(inst, args.sessions)
        n = args.messages
        for r in range(args.runs):
            inst.purge()
            os.sync()
            pids = workers(inst)
            names = thread_names(pids)
            out = os.path.join(base, f"perf-{r}.csv")
            perf = perf_start(pids, out)
            rec = None
            if args.record and r == args.runs - 1:
                rec = subprocess.Popen(["perf", "record", "-g", "-F", "2999", "-o", args.record,
                                        "-p", ",".join(map(str, pids))],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # perf attaches to every tracepoint of every thread
            c0 = thread_cpu(pids)
            la = os.getloadavg()[0]
            tracer = None
            if args.trace and r == args.runs - 1:
                kinds = fd_kinds(pids, inst)
                trace_out = os.path.join(base, "trace.data")
                tracer = threading.Timer(0.5, lambda: setattr(
                    tracer, "proc", trace_start(pids, trace_out, args.trace)))
                tracer.start()
            src = run_source(inst.port, args.sessions, n, 1024)
            if tracer is not None:
                tracer.join()
                tracer.proc.wait(timeout=120)
            c1 = thread_cpu(pids)
            for p in (perf, rec):
                if p is not None:
                    p.send_signal(signal.SIGINT)
                    p.wait(timeout=120)
            if src["rc"] != 0 or src["complaints"]:
                print(f"run {r + 1}: smtp-source: {src['complaints'][:3]}", file=sys.stderr)
                return 1
            counts = perf_read(out)
            print(f"\nrun {r + 1}: {n / src['seconds']:,.0f} msgs/s (perf counting), load {la:.1f}")
            by_thread = collections.defaultdict(dict)
            for (tid, call), v in counts.items():
                by_thread[tid][call] = v
            totals = collections.Counter()
            for tid in sorted(set(c1) | set(by_thread), key=lambda t: names.get(t, "?")):
                u0, s0, v0, i0 = c0.get(tid, (0, 0, 0, 0))
                u1, s1, v1, i1 = c1.get(tid, (u0, s0, v0, i0))
                calls = by_thread.get(tid, {})
                total = calls.pop("all", 0)
                if total > sum(calls.values()):
                    calls["other"] = total - sum(calls.values())
                name = names.get(tid, f"?{tid}")
                totals[name.split("+")[0]] += total
                if not total and u1 == u0 and s1 == s0:
                    continue
                print(f"  {name:12s} user {1000 * (u1 - u0) / TICK / n:.3f} sys "
                      f"{1000 * (s1 - s0) / TICK / n:.3f} ms/msg  cs {(v1 - v0) / n:.2f}/"
                      f"{(i1 - i0) / n:.2f}  system calls {total / n:.2f}: "
                      + ", ".join(f"{c} {v / n:.3f}" for c, v in
                                  sorted(calls.items(), key=lambda kv: -kv[1]) if v / n >= 0.005))
            if tracer is not None:
                trace_report(trace_out, pids, names, kinds)
            print("  per process: " + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(totals.items()))
                  + f", together {sum(totals.values()) / n:.2f} system calls per message")
        if args.record:
            record_report(args.record, workers(inst))
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
