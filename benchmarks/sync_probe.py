"""fdatasync after a small write: appending vs overwriting pre-zeroed space vs fallocate.

Postfix counterpart: none (a measurement of the file system under the queue store).

Why (docs/accept.md "Session 7: pre-zeroed segments"): a batch in a segment is one write
and one fdatasync. When the write grows the file, the sync must also commit the new
size (on ext4 a journal commit); when it overwrites blocks that were written (with
zeros) and synced before, only the data goes out. This probe writes ``--size`` bytes
and calls fdatasync ``--count`` times in each mode and prints syncs/s and the median
and p90 of the fdatasync alone:

    append     write at the end of the file (the file grows every time)
    prezeroed  overwrite a region written with zeros and synced beforehand
    fallocate  write into space reserved by posix_fallocate (unwritten extents: the
               first write into each still converts an extent, a journal commit)

With ``--neighbour`` a second thread appends and syncs another file every 3 ms beside
it (as the queue's LMDB index does). Usage:

    .venv/bin/python benchmarks/sync_probe.py [--dir DIR] [--count 2000] [--size 2800]
        [--neighbour] [--modes append,prezeroed,fallocate]

DIR must be on the file system to measure (default: the current directory). Files are
created in a temporary directory under DIR and removed at the end.
Diagnostics: OSError from the file system (e.g. ENOSPC) ends the run with its message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time


def _neighbour(path: str, stop: threading.Event) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"n" * 4096
        while not stop.is_set():
            os.write(fd, block)
            os.fdatasync(fd)
            time.sleep(0.003)
    finally:
        os.close(fd)


def probe(directory: str, mode: str, count: int, size: int) -> list[float]:
    """Return the fdatasync durations (seconds) of ``count`` writes of ``size`` bytes."""
    path = os.path.join(directory, f"probe-{mode}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    data = os.urandom(size)
    total = count * size
    try:
        if mode == "prezeroed":
            zeros = bytes(1 << 20)
            for off in range(0, total, len(zeros)):
                os.pwrite(fd, zeros[: min(len(zeros), total - off)], off)
            os.fdatasync(fd)
        elif mode == "fallocate":
            os.posix_fallocate(fd, 0, total)
            os.fdatasync(fd)
        elif mode != "append":
            raise ValueError(f"unknown mode {mode!r}")
        times = []
        for i in range(count):
            os.pwrite(fd, data, i * size)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
        return times
    finally:
        os.close(fd)
        os.unlink(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=".")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=2800)
    ap.add_argument("--neighbour", action="store_true", help="another file syncs every 3 ms beside it")
    ap.add_argument("--modes", default="append,prezeroed,fallocate")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sync-probe-", dir=args.dir) as tmp:
        stop = threading.Event()
        thread = None
        if args.neighbour:
            thread = threading.Thread(target=_neighbour, args=(os.path.join(tmp, "neighbour"), stop), daemon=True)
            thread.start()
        try:
            for mode in args.modes.split(","):
                t0 = time.perf_counter()
                times = probe(tmp, mode, args.count, args.size)
                wall = time.perf_counter() - t0
                times.sort()
                med = statistics.median(times) * 1e3
                p90 = times[int(len(times) * 0.9)] * 1e3
                print(f"{mode:<10} neighbour={'yes' if args.neighbour else 'no '} {args.count / wall:8.0f} syncs/s  "
                      f"fdatasync median {med:.3f} ms  p90 {p90:.3f} ms", flush=True)
        finally:
            stop.set()
            if thread is not None:
                thread.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
