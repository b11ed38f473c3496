#!/usr/bin/env python3
"""Benchmark: how fast the master gives a waiting client a freshly forked worker.

    .venv/bin/python benchmarks/skeleton/bench_spawn.py [--sessions N]

A private master runs tests/testdaemons/single_echo.py with maxproc 1 and max_use 1,
chrooted and unprivileged when run as root: every session needs a new process (fork
from the master, main.cf parse, privilege drop, uvloop loop). Prints the time from
connect() to the greeting (median and 90th percentile) and sessions per second (each
also waits for the previous worker to exit, as maxproc is 1).
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from helpers.instance import Instance, read_line, talk  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="bench-spawn-")
    inst = Instance(top, master_cf="s unix - - y - 1 testdaemons.single_echo -o max_use=1\n")
    try:
        inst.start()
        latency = []
        start = time.perf_counter()
        for _ in range(args.sessions):
            t = time.perf_counter()
            sock = inst.connect_unix("s")
            read_line(sock)
            latency.append(time.perf_counter() - t)
            talk(sock, "QUIT")
            sock.close()
        total = time.perf_counter() - start
    finally:
        inst.cleanup()
        shutil.rmtree(top, ignore_errors=True)
    latency.sort()
    print(f"fresh worker per session: {args.sessions / total:,.0f} sessions/s; connect to "
          f"greeting median {statistics.median(latency) * 1000:.1f} ms, "
          f"p90 {latency[int(len(latency) * 0.9)] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
