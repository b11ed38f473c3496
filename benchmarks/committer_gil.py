#!/usr/bin/env python3
"""Where a commit batch waits in cleanup's threads: the GIL after fdatasync, the loop's wake-up.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/committer_gil.py \
        [--messages 20000] [--sessions 20] [--no-perf] [--keep DIR]

Postfix counterpart: none (Postfix's cleanup is one thread per process).

One fastpost instance without qmgr (as accept_pipeline.py builds it) runs with
FASTPOST_COMMIT_TRACE set, so that every cleanup committer appends one line per commit
batch and per index round with time.perf_counter() stamps of its steps (committer.py,
``_TRACE``). After a 300-message warm-up, smtp-source sends the messages (1 KiB, one
connection per message) while ``perf trace -e fdatasync`` records the kernel's own
duration of every fdatasync of the cleanup worker, thread by thread.

Printed, median / p90 / p99 in ms (the I/O thread's fdatasync goes through
_syncio.fdatasync_timed, which reads the sync's return time before the thread asks for
the GIL again):
  I/O thread   writev, fdatasync timed around the syscall without the GIL (and, as a
               cross-check, by perf trace: that one ends at the syscall's exit, before
               any wait for a core on the way back to user space), the wait from the
               sync's return to the thread holding the GIL again, from there to the
               post, the post to the loop running _deliver (call_soon_threadsafe's
               wake-up + the loop's GIL), and the whole spans;
  index thread the hand-over to the thread waking, the gather, the transaction (LMDB
               calls + its fdatasync + the GIL waits between them), the kernel's
               fdatasync of the index, the post to _deliver, and the index lag (a
               round's oldest batch handed over -> visible on the loop: how far
               qmgr's view trails the acknowledgements).
Last, the batches split by whether an index transaction was running when their sync
started (the two files' syncs side by side) and when it returned (the index thread's
Python beside the hand-off to the loop).
perf trace is light (one event type) but may lose events under load (its n is smaller).

Must run as root (the instance's daemons change user; perf). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import bisect
import glob
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import accept_pipeline  # noqa: E402
from cleanup_threads import cleanup_pid  # noqa: E402
from harness.tools import run_source  # noqa: E402

PERF_LINE = re.compile(r"\(\s*([0-9.]+) ms\): [^/]*/(\d+) fdatasync\(")


def pct(values: list, q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def show(label: str, values_s: list, scale: float = 1000.0) -> None:
    ms = [x * scale for x in values_s]
    print(f"  {label:<44} {pct(ms, .5):7.3f} {pct(ms, .9):7.3f} {pct(ms, .99):7.3f}   (n={len(ms)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--no-perf", action="store_true", help="no perf trace of fdatasync")
    ap.add_argument("--keep", help="copy the trace files to this directory")
    accept_pipeline.add_dir_argument(ap)
    args = ap.parse_args()
    base = accept_pipeline.root_workdir("fp-committer-gil-", args.dir, "the instance's daemons change user", args.fs)
    if base is None:
        return 1
    tdir = os.path.join(base, "trace")
    os.mkdir(tdir)
    os.chmod(tdir, 0o1777)
    os.environ["FASTPOST_COMMIT_TRACE"] = os.path.join(tdir, "ct")
    inst = accept_pipeline.make("fastpost", os.path.join(base, "fastpost"))
    perf_out = os.path.join(base, "perf.txt")
    try:
        accept_pipeline.start_warm(inst, args.sessions)
        for f in glob.glob(os.path.join(tdir, "ct.*")):
            os.unlink(f)  # the warm-up's lines (each write opens the file anew)
        pid = cleanup_pid(inst.master_pid())
        tracer = None
        if not args.no_perf and shutil.which("perf"):
            tracer = subprocess.Popen(["perf", "trace", "-e", "fdatasync", "-p", str(pid), "-o", perf_out],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
        load = os.getloadavg()[0]
        src = run_source(inst.port, args.sessions, args.messages, 1024)
        if tracer is not None:
            tracer.send_signal(2)
            tracer.wait(timeout=30)
    finally:
        inst.stop()  # cleanup writes its last trace lines as it closes
    try:
        print(f"{args.messages / src['seconds']:,.0f} msgs/s at -s {args.sessions}, load average {load:.1f}"
              f" at the start; cleanup worker {pid}")
        batches, rounds = [], []
        flights = []  # (batch taken, posted): a flush in flight
        per_msg = []  # (commit() called, batch taken, writev start, ... as in a batch's line)
        for f in glob.glob(os.path.join(tdir, "ct.*")):
            with open(f) as fh:
                for line in fh:
                    steps, _, queued = line.partition("|")
                    kind, *vals = steps.split()
                    (batches if kind == "F" else rounds).append([float(v) for v in vals])
                    if kind == "F" and queued:
                        # the batch taken by the I/O thread, then each message's commit()
                        taken, *enq = (float(v) for v in queued.split())
                        per_msg.extend((e, taken, *batches[-1][1:]) for e in enq)
                        flights.append((taken, batches[-1][5]))  # the I/O thread busy with it
        if args.keep:
            shutil.copytree(tdir, args.keep, dirs_exist_ok=True)
        kernel: dict[int, list] = {}
        if os.path.exists(perf_out):
            with open(perf_out) as fh:
                for line in fh:
                    m = PERF_LINE.search(line)
                    if m:
                        kernel.setdefault(int(m.group(2)), []).append(float(m.group(1)) / 1000)
        msgs = sum(b[0] for b in batches)
        print(f"commit batches {len(batches)} ({msgs / max(1, len(batches)):.1f} messages each), "
              f"index rounds {len(rounds)} ({sum(r[0] for r in rounds) / max(1, len(rounds)):.1f} batches each)")
        print(f"  {'(ms)':<44} {'median':>7} {'p90':>7} {'p99':>7}")
        print("I/O thread, per batch:")
        # The thread IDs are not at fixed offsets from the pid (other processes fork
        # meanwhile): the writer's thread is the one with about one fdatasync per batch,
        # the index thread the other one with about one per round.
        def nearest(n, exclude=None):
            tids = [t for t in kernel if t != exclude]
            return min(tids, key=lambda t: abs(len(kernel[t]) - n)) if tids else None
        io_tid = nearest(len(batches))
        show("writev (Python)", [b[2] - b[1] for b in batches])
        show("fdatasync, own clock around the syscall", [b[3] - b[2] for b in batches])
        if io_tid in kernel:
            show("fdatasync in the kernel (perf trace)", kernel[io_tid])
        show("sync returned -> thread has the GIL", [b[4] - b[3] for b in batches])
        show("has the GIL -> posted", [b[5] - b[4] for b in batches])
        show("posted -> loop runs _deliver", [b[6] - b[5] for b in batches])
        show("sync returned -> loop runs _deliver", [b[6] - b[3] for b in batches])
        show("fdatasync called -> loop runs _deliver", [b[6] - b[2] for b in batches])
        if per_msg:
            sizes = sorted(b[0] for b in batches)
            print(f"batch sizes: median {pct(sizes, .5):.0f}, p90 {pct(sizes, .9):.0f}, max {sizes[-1]:.0f}")
            print("per message (commit() called on cleanup's loop -> its callback can run):")
            show("commit() -> batch taken by the I/O thread", [m[1] - m[0] for m in per_msg])
            flights.sort()
            f_starts = [a for a, _ in flights]

            def in_flight(t):
                i = bisect.bisect_right(f_starts, t)
                return i > 0 and flights[i - 1][0] <= t < flights[i - 1][1]
            busy = [m for m in per_msg if in_flight(m[0])]
            idle = [m for m in per_msg if not in_flight(m[0])]
            print(f"  a flush in flight at commit(): {len(busy) / len(per_msg) * 100:.0f} % of the messages")
            show("  commit() -> taken, a flush in flight", [m[1] - m[0] for m in busy])
            show("  commit() -> taken, the I/O thread idle", [m[1] - m[0] for m in idle])
            show("batch taken -> writev start", [m[2] - m[1] for m in per_msg])
            show("commit() -> fdatasync called", [m[3] - m[0] for m in per_msg])
            show("fdatasync called -> loop runs _deliver", [m[7] - m[3] for m in per_msg])
            show("commit() -> loop runs _deliver", [m[7] - m[0] for m in per_msg])
        print("index thread, per round:")
        show("first batch handed over -> thread awake", [r[3] - r[2] for r in rounds if r[2]])
        show("gather (sleep INDEX_GATHER)", [r[4] - r[3] for r in rounds])
        show("transaction (LMDB + sync + GIL waits)", [r[5] - r[4] for r in rounds])
        ix_tid = nearest(len(rounds), io_tid)
        if ix_tid in kernel:
            show("index fdatasync in the kernel (perf trace)", kernel[ix_tid])
        show("posted -> loop runs _deliver", [r[6] - r[5] for r in rounds])
        # how far the index (and so qmgr, which learns of messages from it) trails the
        # acknowledgements: the oldest batch of a round handed over -> visible on the loop
        show("index lag: first batch handed over -> loop", [r[6] - r[2] for r in rounds if r[2]])
        # Does an index round slow the commit path down? Split the batches by whether an
        # index transaction was running at one instant (the sync's start, its return):
        # conditioning on an instant, not on overlap, keeps long syncs from being
        # over-represented among those that meet a transaction.
        spans = sorted((r[4], r[5]) for r in rounds)
        starts = [a for a, _ in spans]

        def during(t):
            i = bisect.bisect_right(starts, t)
            return any(spans[j][0] <= t < spans[j][1] for j in range(max(0, i - 3), i))
        busy = sum(e - a for a, e in spans) / max(1e-9, max(b[6] for b in batches) - min(b[1] for b in batches))
        print(f"the I/O thread beside the index thread (index transactions run {busy * 100:.0f} % of the time):")
        for label, at, lo, hi in (("fdatasync, started", 2, 2, 3),
                                  ("sync returned -> _deliver, returned", 3, 3, 6)):
            show(f"{label} in one", [b[hi] - b[lo] for b in batches if during(b[at])])
            show(f"{label} outside", [b[hi] - b[lo] for b in batches if not during(b[at])])
        # Does a commit sync that follows an index round's sync cost more? (With
        # FASTPOST_INDEX_INLINE=1 the I/O thread runs the rounds itself, so a batch that
        # waited for a round syncs right after the round's own sync.)
        ends = sorted(r[5] for r in rounds)

        def after_round(t, window=0.001):
            i = bisect.bisect_right(ends, t)
            return i > 0 and t - ends[i - 1] < window
        show("fdatasync, started < 1 ms after a round ended", [b[3] - b[2] for b in batches if after_round(b[2])])
        show("fdatasync, started later", [b[3] - b[2] for b in batches if not after_round(b[2])])
        others = {t: len(v) for t, v in kernel.items() if t not in (io_tid, ix_tid)}
        if others:
            print(f"  fdatasync calls in other threads (by thread ID): {others}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
