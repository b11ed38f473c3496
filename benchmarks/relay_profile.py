#!/usr/bin/env python3
"""The relay path daemon by daemon: instructions, CPU and profiles per message.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/relay_profile.py \
        [--messages N] [--runs R] [--sessions 20] [--dir /var/tmp | --fs journal] \
        [--pyspy DIR] [--daemons qmgr,smtp] [--strace]

A private fastpost instance with the relay scenario's configuration (the benchmark
harness's: smtpd, cleanup, qmgr, trivial-rewrite, the smtp agent, relayhost = a
Postfix smtp-sink) gets 200 warm-up messages (every worker forked and warm, the
smtp agent's session to the sink cached), then ``smtp-source -s S -m N`` (1 KiB, one
connection per message) R times; each run is timed until the sink has counted every
message. Printed per daemon: CPU ms per message of its main threads (the event loop:
user and system) and of its other threads together (utime and stime of every worker
of the daemon from /proc/PID/task, before and after each run; medians over the runs). (This VM exposes no hardware counters to perf: count instructions with
callgrind in one process, e.g. benchmarks/smtp/agent_cpu.py.)

``--strace`` attaches ``strace -c -f`` to every daemon during the last run (which it
slows) and prints the system calls per message, by name: a count the machine's load
does not change.

``--pyspy DIR`` also records py-spy's raw stacks (``-f raw``, 200 Hz, nonblocking) of
the named ``--daemons`` during the last run, and prints each one's top frames by own
samples and the inclusive share of each function of fastpost's.

Root only (the harness's instances run as root, the workers as mail_owner). Fails
when the sink does not count every message within the time limit.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import loopfs, mta, procs, tools  # noqa: E402

WATCHED = ("smtpd", "cleanup", "qmgr", "trivial-rewrite", "smtp")


def daemons(master: int) -> dict[str, list[int]]:
    """The watched workers of the instance, by daemon name."""
    out: dict[str, list[int]] = {}
    for pid, (comm, *_rest) in procs.tree(master).items():
        name = procs.daemon_name(pid, comm)
        if name in WATCHED:
            out.setdefault(name, []).append(pid)
    return out


def cpu_ticks(pids: list[int]) -> tuple[int, int, int]:
    """(user, system, other threads' user+system) clock ticks of the processes: the
    first two of their main threads (the event loop), the last of every other thread
    (store, I/O and index threads) alive at the time (procs.thread_stats)."""
    user = system = others = 0
    for pid in pids:
        for tid, (_comm, u, s, _vol, _invol) in procs.thread_stats(pid).items():
            if tid == pid:
                user += u
                system += s
            else:
                others += u + s
    return user, system, others


def start_strace(pids: list[int], path: str) -> subprocess.Popen:
    """strace -c -f of the processes (all threads): system calls by name."""
    argv = ["strace", "-c", "-f", "-o", path]
    for pid in pids:
        argv += ["-p", str(pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_strace(path: str) -> dict[str, int]:
    """{system call: calls} from strace -c's table."""
    out = {}
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
                try:
                    out[parts[-1]] = int(parts[3])
                except ValueError:
                    pass
    return out


def summarize_raw(path: str, top: int = 25) -> str:
    """py-spy raw stacks: own samples by frame, and inclusive samples by fastpost function."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            frames = stack.split(";")
            total += n
            own[frames[-1]] += n
            for f in set(frames):
                if "fastpost" in f or "asyncio" in f or "uvloop" in f:
                    incl[f] += n
    lines = [f"  {total} samples; own:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive (fastpost, asyncio):")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--dir", default="/var/tmp")
    p.add_argument("--fs", choices=("here", "journal"), default="here")
    p.add_argument("--pyspy", help="directory for py-spy raw stacks of the last run")
    p.add_argument("--daemons", default="qmgr,smtp", help="daemons py-spy records")
    p.add_argument("--strace", action="store_true",
                   help="strace -c -f every daemon in the last run (system calls per message)")
    opts = p.parse_args()
    workdir = opts.dir
    if opts.fs == "journal":
        workdir = loopfs.journalled_ext4(workdir)
    print(f"file system under the instance: {loopfs.describe(workdir)}")
    base = tempfile.mkdtemp(prefix="relay-profile-", dir=workdir)
    os.chmod(base, 0o755)
    sink_port = tools.free_port()
    inst = mta.FastpostInstance(os.path.join(base, "fp"), sink_port=sink_port, name="bench-relayprof")
    inst.configure()
    per: dict[str, dict[str, list[float]]] = {}
    calls: dict[str, dict[str, int]] = {}
    rates = []
    try:
        with tools.Sink(port=sink_port) as sink:
            inst.start()
            sent = 200
            tools.run_source(inst.port, opts.sessions, sent, 1024)
            if not sink.wait_count(sent, timeout=60):
                raise RuntimeError(f"warm-up: sink counted {sink.count} of {sent}")
            time.sleep(1.0)
            for run in range(opts.runs):
                last = run == opts.runs - 1
                found = daemons(inst.master_pid())
                tracers = {}
                if opts.strace and last:
                    for name, pids in found.items():
                        path = os.path.join(base, f"strace-{name}.txt")
                        tracers[name] = (start_strace(pids, path), path)
                spies = []
                if opts.pyspy and last:
                    os.makedirs(opts.pyspy, exist_ok=True)
                    for name in opts.daemons.split(","):
                        for pid in found.get(name, []):
                            path = os.path.join(opts.pyspy, f"{name}-{pid}.txt")
                            spies.append(subprocess.Popen(
                                [shutil.which("py-spy") or "py-spy", "record", "-p", str(pid),
                                 "-o", path, "-r", "200", "--nonblocking", "-f", "raw"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                if tracers or spies:
                    time.sleep(0.5)  # attached before the load starts
                ticks0 = {name: cpu_ticks(pids) for name, pids in found.items()}
                t0 = time.monotonic()
                src = tools.run_source(inst.port, opts.sessions, opts.messages, 1024)
                sent += opts.messages
                if not sink.wait_count(sent, timeout=max(60.0, opts.messages / 20)):
                    raise RuntimeError(f"sink counted {sink.count} of {sent}; rc={src['rc']}")
                seconds = time.monotonic() - t0
                time.sleep(0.3)  # the removals after the last delivery
                ticks1 = {name: cpu_ticks(pids) for name, pids in found.items()}
                for proc in spies + [t[0] for t in tracers.values()]:
                    proc.send_signal(2)
                for proc in spies + [t[0] for t in tracers.values()]:
                    proc.wait(20)
                for name, (_proc, path) in tracers.items():
                    calls[name] = read_strace(path)
                scale = 1000 / procs.TICK / opts.messages
                for name in found:
                    d = per.setdefault(name, {"user": [], "sys": [], "threads": []})
                    d["user"].append((ticks1[name][0] - ticks0[name][0]) * scale)
                    d["sys"].append((ticks1[name][1] - ticks0[name][1]) * scale)
                    d["threads"].append((ticks1[name][2] - ticks0[name][2]) * scale)
                rates.append(opts.messages / seconds)
                print(f"run {run + 1}: {opts.messages / seconds:,.0f} msgs/s", file=sys.stderr)
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
        if opts.fs == "journal":
            loopfs.release(workdir)
    print(f"relay, smtp-source -s {opts.sessions} -m {opts.messages} (1 KiB) x {opts.runs}: "
          f"{statistics.median(rates):,.0f} msgs/s [{min(rates):,.0f}-{max(rates):,.0f}]")
    print(f"{'daemon':16} {'loop user':>10} {'loop sys':>9} {'threads':>8}  (CPU ms/msg, medians of the runs)"
          + ("; system calls per message in the last run" if calls else ""))
    for name in WATCHED:
        if name in per:
            d = per[name]
            line = (f"{name:16} {statistics.median(d['user']):10.3f} {statistics.median(d['sys']):9.3f} "
                    f"{statistics.median(d['threads']):8.3f}")
            if name in calls:
                c = calls[name]
                total = sum(c.values())
                top = ", ".join(f"{k} {v / opts.messages:.2f}" for k, v in
                                sorted(c.items(), key=lambda kv: -kv[1])[:8])
                line += f"  {total / opts.messages:.1f}: {top}"
            print(line)
    if opts.pyspy:
        for name in opts.daemons.split(","):
            for f in sorted(os.listdir(opts.pyspy)):
                if f.startswith(name + "-") and f.endswith(".txt"):
                    print(f"py-spy {f}:")
                    print(summarize_raw(os.path.join(opts.pyspy, f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
