#!/usr/bin/env python3
"""A million-message queue: build it, then count, list, select and delete in bounded memory.

    .venv/bin/python benchmarks/queue/bench_scale.py [--messages N] [--dir DIR] [--keep]

Builds a queue of N messages (default 1,000,000; ~700-byte messages, recipients spread
over ten domains, one in ten deferred with a defer log) through committers, as cleanup
would, then times, each as a separate process (``fastpost -c DIR ...``) whose peak
resident memory is reported:

    fastpost queue -p > /dev/null         the whole mailq listing
    fastpost queue -j > /dev/null         the JSON listing
    fastpost super -h ALL --domain d3.example      select one domain in ten (index)
    fastpost super -H ALL                 release them
    fastpost super -e ALL --sender s7@example.org  select by sender (a full walk)
    fastpost super -d ALL                 delete everything (segments reclaimed)

and in this process the state counts (index counters). Peak RSS includes the LMDB index
pages the process touched: they are mapped from the page cache (clean, shared, dropped
under memory pressure), so a walk over the whole index shows the index's size there.
The "anon peak" column is the process's own memory (RssAnon, sampled every 10 ms): it
is what must not grow with the queue. The Python heap peak of the same listing, measured
with tracemalloc in this process, is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

from fastpost.mail.config import Config
from fastpost.mail.queue import DEFERRED, QueueStore

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


async def build(store: QueueStore, n: int, conc: int = 200) -> list[str]:
    c = store.committer("scale")
    body = (b"From: s@example.org\r\nSubject: scale\r\n\r\n"
            + b"Line of message content that is about sixty bytes long ....\r\n" * 10)
    deferred: list[str] = []
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            b = c.builder()
            b.time(time.time() - (n - i))  # spread arrival times over the past
            b.set_sender(f"s{i % 100}@example.org")
            b.add_recipient(f"r{i}@d{i % 10}.example")
            await b.write(body)
            qid = await c.commit(b)
            if i % 10 == 0:
                deferred.append(qid)

    await asyncio.gather(*[worker() for _ in range(conc)])
    await c.close()
    return deferred


def defer_some(store: QueueStore, ids: list[str]) -> None:
    for k in range(0, len(ids), 1000):
        with store.edit() as ed:
            for qid in ids[k : k + 1000]:
                ed.set_state(qid, DEFERRED, next_retry=time.time() + 3600)
                info = ed.get(qid)
                ed.append_log(qid, "defer", f"recipient={info.recipients[0].address}\n"
                              "reason=connect to mx.example[192.0.2.1]:25: Connection timed out\n".encode())


def timed_child(cfg: str, *args: str) -> tuple[float, tuple, str]:
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across vfork + exec.
    """Run fastpost in a child; return (seconds, (peak RSS, peak anon) MiB, last stderr line)."""
    t0 = time.perf_counter()
    child = (
        "import sys, threading, time\n"
        "peak = [0]\n"
        "def anon():\n"
        "    with open('/proc/self/status') as fh:\n"
        "        for line in fh:\n"
        "            if line.startswith('RssAnon:'):\n"
        "                return int(line.split()[1])\n"
        "    return 0\n"
        "def sample():\n"
        "    while True:\n"
        "        peak[0] = max(peak[0], anon())\n"
        "        time.sleep(0.01)\n"
        "threading.Thread(target=sample, daemon=True).start()\n"
        "from fastpost.cli.main import main\n"
        "rc = main(['fastpost'] + sys.argv[1:])\n"
        "peak[0] = max(peak[0], anon())\n"
        "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "sys.stderr.write('MAXRSS %d %d\\n' % (hwm, peak[0]))\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", child, "-c", cfg, *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    rss = next((tuple(int(x) / 1024 for x in line.split()[1:3]) for line in reversed(lines)
                if line.startswith("MAXRSS ")), (0, 0))
    other = [line for line in lines if not line.startswith("MAXRSS ")]
    return elapsed, rss, other[-1] if other else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the queue directory")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="fastpost-scale-", dir=args.dir)
    cfg_dir = os.path.join(base, "etc")
    os.mkdir(cfg_dir)
    with open(os.path.join(cfg_dir, "main.cf"), "w") as fh:
        fh.write(f"queue_directory = {base}/queue\nmaillog_file = {base}/maillog\n"
                 f"maillog_file_prefixes = {base}\n")
    if uvloop is not None:
        uvloop.install()
    try:
        store = QueueStore.open(cfg=Config(cfg_dir))
        t0 = time.perf_counter()
        deferred = asyncio.run(build(store, args.messages))
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        defer_some(store, deferred)
        t_defer = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts = store.counts()
        t_count = time.perf_counter() - t0
        tracemalloc.start()
        from fastpost.mail.queue.showq import write_mailq

        t0 = time.perf_counter()
        write_mailq(store, io.StringIO() if args.messages <= 10_000 else _Null())
        t_list_inproc = time.perf_counter() - t0
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        store.close()
        du = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(base, "queue"))
                 for f in fs)
        print(f"queue of {args.messages:,} messages in {base}/queue ({du / 1e6:,.0f} MB on disk)")
        print(f"  built by one committer, 200 concurrent: {t_build:8.1f} s ({args.messages / t_build:,.0f} commits/s)")
        print(f"  {len(deferred):,} moved to deferred with a defer log:  {t_defer:8.1f} s")
        print(f"  counts {counts}: {t_count * 1000:.2f} ms")
        print(f"  mailq listing in this process: {t_list_inproc:.1f} s, Python heap peak "
              f"{heap_peak / 2**20:.1f} MiB")
        print(f"{'command':48} {'seconds':>8} {'peak RSS':>9} {'anon peak':>10}  result (MiB)")
        for cmd in (["queue", "-p"], ["queue", "-j"], ["super", "-h", "ALL", "--domain", "d3.example"],
                    ["super", "-H", "ALL"], ["super", "-e", "ALL", "--sender", "s7@example.org"],
                    ["super", "-d", "ALL"]):
            secs, (peak, anon), last = timed_child(cfg_dir, *cmd)
            print(f"{'fastpost ' + ' '.join(cmd):48} {secs:8.1f} {peak:9.0f} {anon:10.0f}  {last}")
        left = os.listdir(os.path.join(base, "queue", "segments"))
        print(f"segments left after -d ALL: {len(left)}")
        print(f"this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


class _Null:
    def write(self, _text: str) -> int:
        return 0


if __name__ == "__main__":
    sys.exit(main())
