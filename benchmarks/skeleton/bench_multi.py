#!/usr/bin/env python3
"""Benchmark: the multi skeleton with a protocol factory vs with asyncio streams.

    .venv/bin/python benchmarks/skeleton/bench_multi.py [--sessions N] [--lines N]

Runs a private fastpost master (temp directory, 127.0.0.1, ephemeral port) with one
worker (maxproc 1) of tests/testdaemons/echo.py (protocol factory, what smtpd uses) or
stream_echo.py (async def service(reader, writer)), both speaking the same line
protocol, and drives it from a uvloop client in this process:

    sessions   connect, read the greeting, QUIT, read the reply, close
               (200 at a time)
    lines      200 open sessions, each sending --lines request lines one after the
               other and reading each reply

It prints operations per second and the worker's CPU time per operation (from
/proc/PID/stat; the client shares the two cores, so CPU per operation is the figure to
compare). Medians of 3 runs.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from helpers.instance import Instance, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def one_session(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"QUIT\n")
    await reader.readline()
    writer.close()


async def sessions(port: int, total: int, concurrency: int = 200) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def guarded():
        async with sem:
            await one_session(port)

    start = time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(total)))
    return time.perf_counter() - start


async def lines(port: int, clients: int, per_client: int) -> float:
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    for reader, _ in conns:
        await reader.readline()

    async def talk(reader, writer):
        for i in range(per_client):
            writer.write(b"line %d\n" % i)
            await reader.readline()

    start = time.perf_counter()
    await asyncio.gather(*(talk(r, w) for r, w in conns))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    return elapsed


def worker_pid(inst: Instance) -> int:
    pids = inst.workers()
    assert len(pids) == 1, pids
    return pids[0]


def measure(daemon: str, args) -> dict:
    port = free_port()
    top = tempfile.mkdtemp(prefix="bench-multi-")
    inst = Instance(top, master_cf=(f"127.0.0.1:{port} inet n - n - 1 {daemon} "
                                    "-o max_use=1000000 -o fastpost_multi_client_limit=100000\n"))
    results = {"sessions": [], "lines": []}
    try:
        inst.start()
        uvloop.run(one_session(port))  # fork the worker
        pid = worker_pid(inst)
        for _ in range(3):
            cpu0 = cpu_seconds(pid)
            elapsed = uvloop.run(sessions(port, args.sessions))
            results["sessions"].append((args.sessions / elapsed,
                                        (cpu_seconds(pid) - cpu0) / args.sessions * 1e6))
            cpu0 = cpu_seconds(pid)
            n = 200 * args.lines
            elapsed = uvloop.run(lines(port, 200, args.lines))
            results["lines"].append((n / elapsed, (cpu_seconds(pid) - cpu0) / n * 1e6))
        assert worker_pid(inst) == pid
    finally:
        inst.cleanup()
        shutil.rmtree(top, ignore_errors=True)
    return {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
            for k, v in results.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--lines", type=int, default=250)
    args = ap.parse_args()
    rows = {name: measure(daemon, args) for name, daemon in
            (("protocol factory", "testdaemons.echo"), ("streams", "testdaemons.stream_echo"))}
    print(f"{'one multi worker':18} {'sessions/s':>11} {'worker CPU-us/session':>22} "
          f"{'lines/s':>9} {'worker CPU-us/line':>19}")
    for name, r in rows.items():
        print(f"{name:18} {r['sessions'][0]:11,.0f} {r['sessions'][1]:22.1f} "
              f"{r['lines'][0]:9,.0f} {r['lines'][1]:19.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
