#!/usr/bin/env python3
"""What the load generator pays per message: smtp-source against smtp-sink, C Postfix and fastpost.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/client_cost.py \
        [--messages 5000] [--rounds 3] [--sessions 20] [--fs journal] [--strace]

Postfix counterpart: none (it measures Postfix's own smtp-source).

smtp-source shares the machine's two CPUs with the MTA under test, so every
millisecond it spends per message is one the MTA does not get. This runs the same
smtp-source command (1 KiB, one connection per message, as accept_pipeline.py) against
three servers, interleaved round by round: ``smtp-sink`` (the cheapest possible
server), C Postfix and fastpost, both as accept_pipeline.py builds them (no qmgr,
messages stay in incoming). Per message, for smtp-source only: user and system CPU
(``getrusage(RUSAGE_CHILDREN)`` around it), voluntary and involuntary context switches,
and the rate. ``--strace`` adds one run per server under ``strace -f -c`` (its counts
only: strace slows the client) and prints smtp-source's system calls per message by
name — more ``read`` calls per message mean replies that arrive in more pieces.

Must run as root (private Postfix instances; smtp-sink as nobody). Not part of the test
suite. Fails with the harness's errors when a tool is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from accept_pipeline import add_dir_argument, make, root_workdir  # noqa: E402
from harness.tools import Sink, which  # noqa: E402

STRACE_LINE = re.compile(r"^\s*[0-9.]+\s+[0-9.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def source_cmd(port: int, sessions: int, messages: int, size: int) -> list[str]:
    return [which("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", "bench@source.example", "-t", "rcpt@example.com", f"127.0.0.1:{port}"]


def timed(cmd: list[str]) -> dict:
    """Run cmd; its user/system seconds, context switches, wall seconds, return code."""
    import time

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
            "vcs": r1.ru_nvcsw - r0.ru_nvcsw, "ivcs": r1.ru_nivcsw - r0.ru_nivcsw,
            "wall": wall, "rc": rc}


def strace_counts(cmd: list[str], messages: int) -> dict[str, float]:
    """System calls per message of cmd (and its children), by name, from strace -c."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name] + cmd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        counts = {}
        for line in out.read().splitlines():
            m = STRACE_LINE.match(line)
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1)) / messages
        return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--strace", action="store_true", help="one more run each under strace -f -c")
    add_dir_argument(ap)
    args = ap.parse_args()
    base = root_workdir("fp-client-", args.dir, "private Postfix instances need it", args.fs)
    if base is None:
        return 1
    insts = {k: make(k, os.path.join(base, k)) for k in ("postfix", "fastpost")}
    sink = Sink(backlog=1024).start()
    ports = {"smtp-sink": sink.port}
    results: dict[str, list] = {}
    try:
        for kind, inst in insts.items():
            inst.start()
            ports[kind] = inst.port
        for port in ports.values():  # warm up: workers forked, caches filled
            timed(source_cmd(port, args.sessions, 200, args.size))
        for r in range(args.rounds):
            for kind, port in ports.items():
                if kind in insts:
                    insts[kind].purge()
                os.sync()
                res = timed(source_cmd(port, args.sessions, args.messages, args.size))
                results.setdefault(kind, []).append(res)
                n = args.messages
                print(f"round {r + 1} {kind:9} {n / res['wall']:7,.0f} msgs/s  smtp-source "
                      f"user {1000 * res['user'] / n:.3f} sys {1000 * res['sys'] / n:.3f} ms/msg, "
                      f"cs {res['vcs'] / n:.2f} vol {res['ivcs'] / n:.2f} invol"
                      f"{'' if res['rc'] == 0 else '  rc ' + str(res['rc'])}", file=sys.stderr)
        counts = {}
        if args.strace and shutil.which("strace"):
            for kind, port in ports.items():
                if kind in insts:
                    insts[kind].purge()
                counts[kind] = strace_counts(source_cmd(port, args.sessions, args.messages,
                                                        args.size), args.messages)
    finally:
        sink.stop()
        for inst in insts.values():
            inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    n = args.messages
    print(f"\nsmtp-source -s {args.sessions}, {args.size} bytes, {n} messages x {args.rounds} rounds; "
          "medians [ranges], per message")
    print(f"{'server':10} {'msgs/s':>16} {'user ms':>18} {'sys ms':>18} {'total ms':>18} {'vol cs':>7} {'invol cs':>8}")
    for kind, runs in results.items():
        def col(f, fmt):
            v = [f(x) for x in runs]
            return f"{format(statistics.median(v), fmt)} [{format(min(v), fmt)}-{format(max(v), fmt)}]"
        print(f"{kind:10} {col(lambda x: n / x['wall'], ',.0f'):>16} "
              f"{col(lambda x: 1000 * x['user'] / n, '.3f'):>18} {col(lambda x: 1000 * x['sys'] / n, '.3f'):>18} "
              f"{col(lambda x: 1000 * (x['user'] + x['sys']) / n, '.3f'):>18} "
              f"{statistics.median(x['vcs'] / n for x in runs):7.2f} {statistics.median(x['ivcs'] / n for x in runs):8.2f}")
    if counts:
        names = sorted({k for c in counts.values() for k, v in c.items() if v >= 0.05},
                       key=lambda k: -max(c.get(k, 0) for c in counts.values()))
        print("\nsmtp-source's system calls per message (strace -f -c, one run each)")
        print(f"{'call':16}" + "".join(f"{k:>11}" for k in counts))
        for name in names + ["total"]:
            vals = [sum(c.values()) if name == "total" else c.get(name, 0.0) for c in counts.values()]
            print(f"{name:16}" + "".join(f"{v:11.2f}" for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
