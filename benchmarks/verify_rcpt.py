"""Address verification cost: fastpost vs C Postfix 3.7, same remote, same sessions.

Two measurements, each run on both gateways (tests/verify/mtas.py: a fastpost instance
and a private C Postfix, both with ``smtpd_recipient_restrictions =
reject_unverified_recipient`` and address_verify_poll_count = 1, relaying remote.test to
one remote C Postfix that knows two addresses):

* **cached**: sessions of --rcpts RCPT (50) for addresses already in the cache (half deliverable,
  half undeliverable), C sessions at once, for S seconds: RCPT decisions/s, and the
  gateway's CPU per RCPT (utime+stime of every process of the instance, from /proc);
* **probes**: N new addresses (the remote refuses them: 550), one RCPT each (which
  answers "in progress" and starts a probe); the time until N probe status lines are in
  the gateway's log, probes/s, and the gateway's CPU per probe.

Runs are interleaved (fastpost, Postfix, Postfix, fastpost, ...); the median and range
of each figure over --runs are printed, with the ratio of medians.

    .venv/bin/python benchmarks/verify_rcpt.py [--runs 3] [--seconds 5] [--sessions 10]
                                               [--rcpts 50] [--probes 200]

Needs root and Debian's postfix (as the tests in tests/verify).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from helpers.instance import free_port  # noqa: E402
from helpers.peers import PrivatePostfix  # noqa: E402
from verify import mtas as site  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root_pid: int) -> float:
    """CPU seconds (user+system, children reaped included) of root_pid and descendants."""
    kids: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(name)
        stats[pid] = fields
        kids.setdefault(int(fields[1]), []).append(pid)
    total = 0.0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is not None:
            total += sum(int(x) for x in f[11:15]) / TICK  # utime stime cutime cstime
        todo += kids.get(pid, [])
    return total


async def _session(port: int, rcpts: list[str]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line or line[3:4] != b"-":
                return line

    async def cmd(text: str) -> bytes:
        writer.write(text.encode() + b"\r\n")
        return await reply()

    await reply()
    await cmd("HELO bench.test")
    await cmd("MAIL FROM:<sender@remote.test>")
    n = 0
    for r in rcpts:
        line = await cmd(f"RCPT TO:<{r}>")
        n += line[:1] in (b"2", b"4", b"5")
    await cmd("QUIT")
    writer.close()
    return n


async def _cached(port: int, seconds: float, concurrency: int,
                  per_session: int) -> tuple[int, float]:
    rcpts = (["known@remote.test", "unknown@remote.test"] * per_session)[:per_session]
    deadline = time.monotonic() + seconds
    done = 0

    async def worker():
        nonlocal done
        while time.monotonic() < deadline:
            done += await _session(port, rcpts)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.monotonic() - t0


async def _probes(port: int, addresses: list[str], concurrency: int) -> None:
    chunks = [addresses[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(_session(port, c) for c in chunks if c))


def _count_probes(text: str) -> int:
    return len(re.findall(r"to=<p\d+-\d+@remote\.test>, .*status=undeliverable", text))


class Gw:
    def __init__(self, name, port, log_text, pid_fn):
        self.name, self.port, self.log_text, self.pid = name, port, log_text, pid_fn


def measure_cached(gw: Gw, args) -> tuple[float, float]:
    asyncio.run(_cached(gw.port, 1, args.sessions, args.rcpts))  # warm-up: processes, clients
    cpu0 = tree_cpu(gw.pid())
    n, elapsed = asyncio.run(_cached(gw.port, args.seconds, args.sessions, args.rcpts))
    cpu = tree_cpu(gw.pid()) - cpu0
    return n / elapsed, cpu * 1000 / n


def measure_probes(gw: Gw, args, run: int) -> tuple[float, float]:
    addresses = [f"p{run}-{i}@remote.test" for i in range(args.probes)]
    before = _count_probes(gw.log_text())
    cpu0 = tree_cpu(gw.pid())
    t0 = time.monotonic()
    asyncio.run(_probes(gw.port, addresses, args.sessions))
    deadline = t0 + 300
    while _count_probes(gw.log_text()) < before + args.probes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{gw.name}: probes did not finish")
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    cpu = tree_cpu(gw.pid()) - cpu0
    return args.probes / elapsed, cpu * 1000 / args.probes


def _fmt(values: list[float], digits: int) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}]")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--probes", type=int, default=200)
    p.add_argument("--rcpts", type=int, default=50, help="RCPT per cached session")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root and Debian's postfix", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="fp-verify-bench-")
    extra = {"smtpd_sender_restrictions": "", "smtpd_error_sleep_time": "0",
             "smtpd_soft_error_limit": "1000", "smtpd_hard_error_limit": "1000",
             "in_flow_delay": "0", "default_process_limit": "100"}
    remote = PrivatePostfix(site.remote_main_cf())
    remote.__enter__()
    dead = free_port()
    fp, fp_port = site.fastpost_gateway(tmp, remote.port, dead, **extra)
    pf = site.postfix_gateway(remote.port, dead, **extra)
    results: dict[str, dict[str, list]] = {"fastpost": {}, "postfix": {}}
    try:
        fp.start()
        pf.__enter__()
        pid_file = pf.dir / "spool" / "pid" / "master.pid"
        pf_pid = lambda: int(pid_file.read_text().split()[0])  # noqa: E731
        gws = [Gw("fastpost", fp_port, fp.log_text, lambda: fp.master_pid),
               Gw("postfix", pf.port, pf.log_text, pf_pid)]
        for g in gws:  # fill the caches with the two addresses
            site.chat(g.port, site.rcpt_session("sender@remote.test", "known@remote.test",
                                                "unknown@remote.test"))
        time.sleep(2)
        for run in range(args.runs):
            order = gws if run % 2 == 0 else gws[::-1]
            for g in order:
                r = results[g.name]
                rate, cpu = measure_cached(g, args)
                r.setdefault("cached_rate", []).append(rate)
                r.setdefault("cached_cpu", []).append(cpu)
                rate, cpu = measure_probes(g, args, run)
                r.setdefault("probe_rate", []).append(rate)
                r.setdefault("probe_cpu", []).append(cpu)
    finally:
        fp.cleanup()
        pf.__exit__(None, None, None)
        remote.__exit__(None, None, None)
    print(f"runs={args.runs} seconds={args.seconds} sessions={args.sessions} "
          f"rcpts={args.rcpts} probes={args.probes}  (median [min-max])")
    for key, label, digits in (("cached_rate", "cached RCPT/s", 0),
                               ("cached_cpu", "CPU ms/RCPT (cached)", 3),
                               ("probe_rate", "probes/s (new addresses)", 1),
                               ("probe_cpu", "CPU ms/probe", 2)):
        f, q = results["fastpost"][key], results["postfix"][key]
        ratio = statistics.median(f) / statistics.median(q)
        print(f"{label:26s} fastpost {_fmt(f, digits):24s} postfix {_fmt(q, digits):24s} "
              f"ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
