#!/usr/bin/env python3
"""What the kernel writes and syncs per accepted message: device, journal, files.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/kernel_io.py \
        [--mta fastpost,postfix] [--sessions 20] [--messages 5000] [--size 1024]
        [--dir DIR] [--fs here|journal] [--strace]

Why: on a journalled ext4 the kernel's threads (jbd2, the loop device's and the
writeback workers, softirq) take ~0.14 CPU ms per accepted message at -s 20
(sched_overlap.py), and cleanup's threads spend their system time in writes and syncs.
These are counts that do not depend on the machine's load (docs/accept.md, "Session 9:
the kernel's I/O per message").

One instance per MTA as accept_pipeline.py builds it (no qmgr: every message stays in
incoming) on the file system of --dir/--fs (use ``--fs journal``: a fresh loop ext4,
whose block device only these runs use). A warm-up, then one measured run of
``--messages`` messages; before it the page cache is written back (sync) and the
counters read; after it they are read twice: at once ("during") and after another
sync ("+ writeback": the dirty pages the run left, maillog and directory blocks, that
the flusher would write a little later anyway). Per accepted message:

* the block device (/sys/dev/block/M:m/stat): write requests, KiB written, flush
  (cache-flush) requests — only meaningful when the device is the queue's alone;
* the ext4 journal (/proc/fs/jbd2/DEV-8/info): transactions (commits), and the blocks
  they logged (transactions x the average blocks per transaction, before and after);
* the kernel threads' CPU (kworker*, jbd2*, loop*, ksoftirqd*: utime+stime from /proc,
  system-wide, so other load on the machine counts too: read it as an upper bound),
  and apart the CPU of this file system's own journal thread (jbd2/DEV-8);
* file sizes: the queue's (fastpost: segments, index data.mdb), maillog bytes.

``--perf``: the measured run's fdatasync, fsync, write, writev, pwrite64 and pwritev2
calls counted per thread by ``perf stat --per-thread`` on the syscall tracepoints (in
the kernel, without strace's stop per call, so batches are as large as without it;
fastpost's segment syncs are its cleanup's I/O thread's, the index's its index thread's;
processes forked during the run are counted in their parent's row, e.g. the master's).

``--strace``: a second measured run under ``strace -ff`` on every process of the MTA's
tree (a file per thread; system calls fsync, fdatasync, sync_file_range, msync, write,
writev, pwrite64, pwritev, fallocate, ftruncate, with ``-y`` for the file of each
descriptor), summed per
kind of file (segment, index, maillog, Postfix queue file, socket, other): calls and
bytes per message, and the bytes of pwrite64 to segments (fastpost's pre-zeroing).
strace slows the processes, so batches are smaller in that run than without it: the
sync counts of fastpost's group commit are an upper bound.

Must run as root. Not part of the test suite. Fails with a message naming what is
missing (strace); a file system without a journal has no jbd2 rows.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from accept_pipeline import add_dir_argument, make, root_workdir  # noqa: E402
from harness import loopfs, procs  # noqa: E402
from harness.tools import run_source  # noqa: E402

_KTHREADS = ("kworker", "jbd2", "loop", "ksoftirqd")


def block_device(path: str) -> tuple[str, str]:
    """(name, /sys/dev/block/M:m) of the block device holding path (a partition's
    counters are its own)."""
    st = os.stat(path)
    sysdir = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    return os.path.basename(os.path.realpath(sysdir)), sysdir


def device_counters(sysdir: str) -> dict:
    with open(os.path.join(sysdir, "stat")) as fh:
        f = [int(x) for x in fh.read().split()]
    # reads(0) rmerged(1) rsect(2) rms(3) writes(4) wmerged(5) wsect(6) wms(7) inflight(8)
    # io_ticks(9) queue(10) discards(11-14) flushes(15) flush_ms(16)
    return {"writes": f[4], "kib": f[6] / 2, "flushes": f[15] if len(f) > 15 else 0}


def jbd2_counters(dev: str) -> dict | None:
    try:
        with open(f"/proc/fs/jbd2/{dev}-8/info") as fh:
            text = fh.read()
    except OSError:
        return None
    trans = int(re.search(r"^(\d+) transactions", text, re.M).group(1))
    m = re.search(r"^\s+(\d+) blocks per transaction", text, re.M)
    bpt = int(m.group(1)) if m else 0
    return {"transactions": trans, "blocks": trans * bpt}


def kthread_ticks(dev: str = "") -> dict:
    """{tid: ticks} of the kernel's I/O-related threads now; the key "jbd2" holds the
    ticks of the journal thread of ``dev`` (jbd2/DEV-8: this file system's alone)."""
    out = {}
    for pid in procs.all_pids():
        st = procs.read_stat(pid)
        if st and st[0].startswith(_KTHREADS):
            out[pid] = st[2]
            out[("comm", pid)] = st[0]
            if dev and st[0] == f"jbd2/{dev}-8":
                out["jbd2"] = st[2]
    return out


def kthread_seconds(before: dict, after: dict, prefix: str = "") -> float:
    """CPU seconds of the kernel threads (whose name starts with ``prefix``) in between."""
    return sum(t - before.get(tid, 0) for tid, t in after.items()
               if isinstance(tid, int) and after[("comm", tid)].startswith(prefix)) / procs.TICK


def tree_size(path: str) -> int:
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def snapshot(inst, dev: str, sysdir: str) -> dict:
    spool = inst.main["queue_directory"]
    snap = {"dev": device_counters(sysdir), "jbd2": jbd2_counters(dev),
            "kthreads": kthread_ticks(dev), "maillog": os.path.getsize(inst.maillog),
            "spool": tree_size(spool), "t": time.monotonic()}
    mdb = os.path.join(spool, "queue", "index", "data.mdb")
    for cand in (mdb, os.path.join(spool, "index", "data.mdb")):
        if os.path.exists(cand):
            snap["mdb"] = os.path.getsize(cand)
    return snap


def delta(a: dict, b: dict, n: int) -> dict:
    d = {"writes": (b["dev"]["writes"] - a["dev"]["writes"]) / n,
         "kib": (b["dev"]["kib"] - a["dev"]["kib"]) / n,
         "flushes": (b["dev"]["flushes"] - a["dev"]["flushes"]) / n,
         "kthread_ms": 1000 * kthread_seconds(a["kthreads"], b["kthreads"]) / n,
         **{f"kt_{p}": 1000 * kthread_seconds(a["kthreads"], b["kthreads"], p) / n
            for p in _KTHREADS},
         "jbd2_ms": 1000 * (b["kthreads"].get("jbd2", 0) - a["kthreads"].get("jbd2", 0))
                    / procs.TICK / n,
         "maillog": (b["maillog"] - a["maillog"]) / n,
         "spool": (b["spool"] - a["spool"]) / n}
    if a["jbd2"] and b["jbd2"]:
        d["commits"] = (b["jbd2"]["transactions"] - a["jbd2"]["transactions"]) / n
        d["jblocks"] = (b["jbd2"]["blocks"] - a["jbd2"]["blocks"]) / n
    if "mdb" in b:
        d["mdb"] = (b["mdb"] - a.get("mdb", 0)) / n
    return d


# [pid 123] fdatasync(7</x/segments/00.seg>) = 0      pwrite64(7</x>, "\0"..., 1048576, 0) = 1048576
_CALL = re.compile(r"^(?:\[pid\s+\d+\]\s+)?(?:\d+\s+)?(\w+)\((\d+)<([^>]*)>(.*)\)\s+=\s+(-?\d+)")


def file_kind(path: str) -> str:
    if path.startswith(("socket:", "TCP", "UNIX", "UDP", "pipe:", "anon_inode:")):
        return "socket/pipe"
    if path.endswith((".seg", ".tmp")) and "/segments/" in path:
        return "segment"
    if path.endswith("data.mdb") or path.endswith("lock.mdb"):
        return "index " + os.path.basename(path)
    if path.endswith("maillog"):
        return "maillog"
    if "/incoming/" in path or "/active/" in path or "/maildrop/" in path:
        return "queue file"
    if path.endswith(("/incoming", "/active", "/segments")) or os.path.isdir(path):
        return "directory"
    return "other " + os.path.basename(path)


def parse_strace(path: str) -> dict:
    """{(syscall, kind): [calls, bytes]} and {"zeros": bytes of pwrite64 to segments}."""
    counts: dict = collections.defaultdict(lambda: [0, 0])
    with open(path, errors="replace") as fh:
        for line in fh:
            m = _CALL.match(line)
            if not m:
                continue
            call, _fd, fpath, _rest, ret = m.groups()
            kind = file_kind(fpath)
            c = counts[(call, kind)]
            c[0] += 1
            if call.startswith(("write", "pwrite")) and int(ret) > 0:
                c[1] += int(ret)
    return counts


def strace_run(inst, sessions: int, messages: int, size: int, out: str) -> dict:
    exe = shutil.which("strace")
    if exe is None:
        raise SystemExit("strace not installed (apt-get install strace)")
    pids = list(procs.tree(inst.master_pid()))
    # -ff: one output file per thread, so that no call is split into "<unfinished ...>"
    # and "<... resumed>" lines by another thread's
    cmd = [exe, "-ff", "-qq", "-y", "-s", "0", "-o", out,
           "-e", "trace=fsync,fdatasync,sync_file_range,msync,write,writev,pwrite64,pwritev,"
                 "pwritev2,fallocate,ftruncate"]
    for pid in pids:
        cmd += ["-p", str(pid)]
    tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    run_source(inst.port, sessions, messages, size)
    time.sleep(0.5)  # the last index round
    tracer.send_signal(2)
    tracer.wait(timeout=60)
    counts: dict = collections.defaultdict(lambda: [0, 0])
    prefix = os.path.basename(out) + "."
    for name in os.listdir(os.path.dirname(out)):
        if name.startswith(prefix):
            for key, (calls, nbytes) in parse_strace(os.path.join(os.path.dirname(out), name)).items():
                counts[key][0] += calls
                counts[key][1] += nbytes
    return counts


_PERF_EVENTS = ("fdatasync", "fsync", "write", "writev", "pwrite64", "pwritev2")


def perf_start(inst, out: str):
    """``perf stat --per-thread`` of the syscall tracepoints on every process of the MTA
    (threads included; a counter in the kernel, no stop per call as strace's)."""
    exe = shutil.which("perf")
    if exe is None:
        raise SystemExit("perf not installed (apt-get install linux-perf)")
    pids = ",".join(str(p) for p in procs.tree(inst.master_pid()))
    events = ",".join(f"syscalls:sys_enter_{e}" for e in _PERF_EVENTS)
    return subprocess.Popen([exe, "stat", "-x,", "--per-thread", "-e", events, "-p", pids,
                             "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_read(out: str) -> dict:
    """{(thread "comm-tid", syscall): count} from perf stat -x, --per-thread output."""
    counts = {}
    with open(out) as fh:
        for line in fh:
            f = line.strip().split(",")
            if len(f) < 4 or not f[3].startswith("syscalls:sys_enter_"):
                continue
            try:
                n = int(f[1])
            except ValueError:
                continue
            if n:
                counts[(f[0], f[3][len("syscalls:sys_enter_"):])] = n
    return counts


def measure(kind: str, base: str, args) -> None:
    inst = make(kind, os.path.join(base, kind))
    inst.start()
    try:
        dev, sysdir = block_device(inst.main["queue_directory"])
        run_source(inst.port, args.sessions, 200, args.size)  # warm-up: workers forked
        inst.purge()
        os.sync()
        time.sleep(0.5)
        perf = perf_start(inst, os.path.join(base, "perf.txt")) if args.perf else None
        if perf:
            time.sleep(1.0)  # counting before the load starts
        a = snapshot(inst, dev, sysdir)
        src = run_source(inst.port, args.sessions, args.messages, args.size)
        b = snapshot(inst, dev, sysdir)
        if perf:
            time.sleep(0.5)  # the last index round
            perf.send_signal(2)
            perf.wait(timeout=60)
        os.sync()
        c = snapshot(inst, dev, sysdir)
        counts = inst.queue_counts()
        n = args.messages
        ok = src["rc"] == 0 and counts.get("incoming", 0) == n
        print(f"\n== {kind}: -s {args.sessions}, {n} x {args.size} bytes, device {dev} "
              f"({'ok' if ok else 'FAILED ' + str(counts) + str(src['complaints'][:2])}), "
              f"{n / src['seconds']:,.0f} msgs/s, load average {os.getloadavg()[0]:.2f}")
        print(f"{'per message':28} {'during':>10} {'+ writeback':>12}")
        d1, d2 = delta(a, b, n), delta(a, c, n)
        rows = [("device write requests", "writes", "{:.2f}"),
                ("device KiB written", "kib", "{:.2f}"),
                ("device flush requests", "flushes", "{:.2f}"),
                ("jbd2 commits", "commits", "{:.3f}"),
                ("jbd2 blocks logged", "jblocks", "{:.2f}"),
                ("kernel threads CPU ms", "kthread_ms", "{:.3f}"),
                *[(f"  of which {p}*", f"kt_{p}", "{:.3f}") for p in _KTHREADS],
                ("its jbd2 thread's CPU ms", "jbd2_ms", "{:.4f}"),
                ("maillog bytes", "maillog", "{:.0f}"),
                ("queue bytes (files' sizes)", "spool", "{:.0f}"),
                ("index data.mdb growth", "mdb", "{:.0f}")]
        for label, key, fmt in rows:
            if key in d1:
                print(f"{label:28} {fmt.format(d1[key]):>10} {fmt.format(d2[key]):>12}")
        if perf:
            raw = perf_read(os.path.join(base, "perf.txt"))
            # a daemon with many processes (C Postfix's 20 cleanups) is one row, summed
            by_comm = collections.defaultdict(set)
            for t, _e in raw:
                by_comm[t.rsplit("-", 1)[0]].add(t)
            counts = collections.Counter()
            for comm, ts in by_comm.items():
                for (t, e), c in raw.items():
                    if t in ts:
                        counts[(t if len(ts) <= 4 else f"{comm} x{len(ts)}", e)] += c
            threads = sorted({t for t, _e in counts}, key=lambda t: -sum(
                counts.get((t, e), 0) for e in ("fdatasync", "fsync")))
            print("system calls per message by thread (perf stat, same run):")
            print(f"{'thread':24} " + " ".join(f"{e:>9}" for e in _PERF_EVENTS))
            for t in threads:
                if sum(counts.get((t, e), 0) for e in _PERF_EVENTS) / n >= 0.01:
                    print(f"{t:24} " + " ".join(f"{counts.get((t, e), 0) / n:9.3f}"
                                                for e in _PERF_EVENTS))
        if args.strace:
            inst.purge()
            os.sync()
            out = os.path.join(base, f"{kind}.strace")
            counts = strace_run(inst, args.sessions, n, args.size, out)
            print(f"system calls per message under strace -ff ({kind}; batches smaller than "
                  f"without strace):")
            print(f"{'call':18} {'file':22} {'calls':>8} {'bytes':>10}")
            for (call, fkind), (calls, nbytes) in sorted(counts.items(),
                                                         key=lambda kv: (kv[0][1], kv[0][0])):
                if calls / n >= 0.001:
                    print(f"{call:18} {fkind:22} {calls / n:8.3f} {nbytes / n:10.0f}")
    finally:
        inst.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mta", default="fastpost,postfix")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--perf", action="store_true",
                    help="count system calls per thread in the measured run (perf stat)")
    ap.add_argument("--strace", action="store_true",
                    help="a second run under strace -ff: system calls by file")
    add_dir_argument(ap)
    args = ap.parse_args()
    for kind in args.mta.split(","):
        # a fresh file system per MTA: neither pays for the other's journal or free space
        base = root_workdir("fp-kio-", args.dir, "private instances and perf counters", args.fs)
        if base is None:
            return 1
        try:
            measure(kind, base, args)
        finally:
            shutil.rmtree(base, ignore_errors=True)
            if args.fs == "journal":
                loopfs.release(os.path.dirname(base))  # before the next MTA's is made
    return 0


if __name__ == "__main__":
    sys.exit(main())
