#!/usr/bin/env python3
"""The queue store alone: durable commits per second and CPU per message.

    .venv/bin/python benchmarks/queue/bench_store.py [--seconds S] [--rounds R]
        [--sizes 1024,102400] [--concurrency 1,20,100] [--dir DIR]

For each message size and number of concurrent committing coroutines, one process with
one committer (as one cleanup worker would run it, on uvloop) commits messages for
--seconds: each coroutine builds a message (arrival time, sender, one recipient, the
text written in 16 KiB chunks) and awaits its durable commit, again and again. Printed
per case: commits/s, CPU milliseconds per message (process CPU, all threads, divided by
commits), the mean batch size (messages per fdatasync) and MB/s written.

In the same run, interleaved with the cases, the machine's baseline: files created,
written (1 KiB), fsync'ed and closed per second, from one thread and from 8 threads
(what a one-file-per-message queue could do at best). The last line is the record
encoding path alone (MessageBuilder to frame bytes, no I/O), messages/s.

Each case runs --rounds times (default 3) in fresh queue directories; the median is
printed. Numbers move +-20% between runs on a VM (see docs/queue.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

from fastpost.mail.queue import QueueSettings, QueueStore
from fastpost.mail.queue.segment import KIND_MESSAGE, frame_bytes

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


def body_of(size: int) -> bytes:
    line = b"Line of message content that is about sixty bytes long ....\r\n"
    head = b"From: bench@example.org\r\nTo: rcpt@example.net\r\nSubject: benchmark\r\n\r\n"
    n = max(1, (size - len(head)) // len(line))
    return head + line * n


def build(committer, body: bytes, i: int):
    b = committer.builder()
    b.time(time.time())
    b.attr("rewrite_context", "remote")
    b.set_sender(f"sender{i}@example.org")
    b.add_recipient(f"rcpt{i}@example.net")
    return b


async def commit_loop(qdir: str, size: int, conc: int, seconds: float) -> dict:
    store = QueueStore.open(settings=QueueSettings(qdir))
    c = store.committer("bench")
    body = body_of(size)
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    done = 0
    stop = time.monotonic() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            b = build(c, body, w * 1_000_000 + i)
            for chunk in chunks:
                await b.write(chunk)
            await c.commit(b)
            done += 1
            i += 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*[worker(w) for w in range(conc)])
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    batches = c.batches
    await c.close()
    store.close()
    return {"rate": done / elapsed, "cpu_ms": 1000 * cpu / max(done, 1),
            "batch": done / max(batches, 1), "mbs": done * len(body) / elapsed / 1e6}


def fsync_rate(directory: str, seconds: float, threads: int) -> float:
    data = b"x" * 1024
    count = [0] * threads
    stop = time.monotonic() + seconds

    def work(t: int) -> None:
        n = 0
        while time.monotonic() < stop:
            path = os.path.join(directory, f"f{t}-{n}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            n += 1
        count[t] = n

    t0 = time.perf_counter()
    ths = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return sum(count) / (time.perf_counter() - t0)


def encode_rate(size: int, seconds: float) -> float:
    class FakeCommitter:  # the builder needs a committer only for queue IDs and spilling
        store = None

    from fastpost.mail.queue.builder import MessageBuilder

    body = body_of(size)
    n = 0
    t0 = time.perf_counter()
    stop = t0 + seconds
    while time.perf_counter() < stop:
        for _ in range(20):
            b = MessageBuilder(FakeCommitter(), "ABCDE100000", 2048, 1 << 30)
            b.time(time.time())
            b.attr("rewrite_context", "remote")
            b.set_sender("sender@example.org")
            b.add_recipient("rcpt@example.net")
            b.records.write(body)
            qfb = b.records
            qfb.finish()
            chunks = qfb.take_chunks()
            chunks[0] = qfb.size_record()
            frame_bytes(KIND_MESSAGE, 1, b"ABCDE100000", chunks)
        n += 20
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1024,102400")
    ap.add_argument("--concurrency", default="1,20,100")
    ap.add_argument("--dir", default=None, help="where to put the queues (default: a temp dir)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    concs = [int(c) for c in args.concurrency.split(",")]
    base = tempfile.mkdtemp(prefix="fastpost-bench-", dir=args.dir)
    if uvloop is not None:
        uvloop.install()
    results: dict = {}
    try:
        for r in range(args.rounds):
            for size in sizes:
                for conc in concs:
                    qdir = os.path.join(base, f"q-{size}-{conc}-{r}")
                    res = asyncio.run(commit_loop(qdir, size, conc, args.seconds))
                    results.setdefault((size, conc), []).append(res)
                    shutil.rmtree(qdir)
            for threads in (1, 8):
                d = os.path.join(base, f"files-{threads}-{r}")
                os.mkdir(d)
                results.setdefault(("fsync", threads), []).append({"rate": fsync_rate(d, args.seconds, threads)})
                shutil.rmtree(d)
        print(f"store: one committer, uvloop={'yes' if uvloop else 'no'}, medians of {args.rounds} rounds "
              f"of {args.seconds:g} s, queue in {base}")
        print(f"{'workload':34} {'commits/s':>10} {'CPU ms/msg':>11} {'msgs/sync':>10} {'MB/s':>8}")
        for size in sizes:
            for conc in concs:
                rs = results[(size, conc)]
                med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                label = f"{size // 1024} KiB, {conc} concurrent"
                print(f"{label:34} {med['rate']:10,.0f} {med['cpu_ms']:11.3f} {med['batch']:10.1f} {med['mbs']:8.1f}")
        for threads in (1, 8):
            rate = statistics.median(x["rate"] for x in results[("fsync", threads)])
            print(f"{'file create+write+fsync, ' + str(threads) + ' thr':34} {rate:10,.0f}")
        for size in sizes:
            print(f"{'encode only, ' + str(size // 1024) + ' KiB':34} {encode_rate(size, 1.0):10,.0f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
