#!/usr/bin/env python3
"""Micro-benchmark: fdatasync_timed, compiled kernel vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_syncio.py [--seconds S]

Workload: append 4 KiB to a file in /var/tmp and sync it with fdatasync_timed, over
and over; alone, then with a Python thread beside it that spins holding the GIL (as
cleanup's loop does while it handles other sessions). Prints syncs per second for each
implementation, and for the compiled one the median wait from the sync's return to the
caller running Python again (the GIL wait the committer's trace measures; the switch
interval is CPython's default unless --switch is given).
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

from fastpost.mail.queue import _syncio_c as C
from fastpost.mail.queue import _syncio_py as P
from _timing import rate  # noqa: E402  (this directory is sys.path[0])


def spin(stop):
    while not stop.is_set():
        sum(range(2000))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--switch", type=float, help="sys.setswitchinterval (seconds)")
    args = ap.parse_args()
    if args.switch:
        sys.setswitchinterval(args.switch)
    fd, path = tempfile.mkstemp(prefix="bench-syncio-", dir="/var/tmp")
    block = os.urandom(4096)
    try:
        print(f"{'workload':40} {'python/s':>10} {'cython/s':>10} {'GIL wait after sync (c)':>24}")
        for label, busy in (("append 4 KiB + fdatasync", False),
                            ("the same, GIL-busy thread beside", True)):
            stop = threading.Event()
            spinner = None
            if busy:
                spinner = threading.Thread(target=spin, args=(stop,), daemon=True)
                spinner.start()
            rates = {}
            gaps = []
            for name, impl in (("py", P), ("c", C)):
                def one(impl=impl, name=name):
                    os.write(fd, block)
                    _t0, t1 = impl.fdatasync_timed(fd)
                    if name == "c":
                        gaps.append(time.perf_counter() - t1)
                rates[name] = rate(one, args.seconds, batch=5)
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            stop.set()
            if spinner is not None:
                spinner.join()
            print(f"{label:40} {rates['py']:10,.0f} {rates['c']:10,.0f} "
                  f"{statistics.median(gaps) * 1000:20.3f} ms")
    finally:
        os.close(fd)
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
