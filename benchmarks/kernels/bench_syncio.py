#!/usr/bin/env python3
"""Micro-benchmark: the commit-batch writer, compiled kernel vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_syncio.py [--seconds S]

Workload: a batch of four 1 KiB frames and a batch end frame written at the end of a
file in /var/tmp, submitted, waited for on the eventfd and collected, over and over
(without fdatasync, so that the disk does not hide the thread hand-offs; one row with
it). The second row runs a Python thread beside it that spins holding the GIL (as
cleanup's loop does while it handles other sessions): the reference's serving thread
must win the GIL back after every write, the kernel's never takes it. Prints batches
per second for each implementation and the ratio (medians of 5 rounds).
"""

import argparse
import os
import select
import sys
import tempfile
import threading

from fastpost.mail.queue import _syncio_c as C
from fastpost.mail.queue import _syncio_py as P
from _timing import rate  # noqa: E402  (this directory is sys.path[0])


class Bench:
    def __init__(self, impl, fd, sync):
        self.bw = impl.BatchWriter()
        self.thread = threading.Thread(target=self.bw.serve, daemon=True)
        self.thread.start()
        self.fd = fd
        self.sync = sync
        self.pos = 0
        self.batch = [os.urandom(1024) for _ in range(4)] + [b"B" * 40]

    def one(self):
        self.bw.submit(self.fd, self.batch, self.pos, self.sync)
        while True:
            select.select([self.bw.fileno()], [], [])
            res = self.bw.collect()
            if res is not None:
                break
        self.pos += res[0]
        if self.pos > 64 << 20:
            self.pos = 0

    def close(self):
        self.bw.stop()
        self.thread.join()


def spin(stop):
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(prefix="bench-syncio-", dir="/var/tmp")
    try:
        print(f"{'workload':44} {'python/s':>10} {'cython/s':>10} {'ratio':>7}")
        for label, sync, busy in (("4 x 1 KiB batch, no sync", False, False),
                                  ("4 x 1 KiB batch, no sync, GIL-busy thread", False, True),
                                  ("4 x 1 KiB batch + fdatasync", True, False)):
            stop = threading.Event()
            spinner = None
            if busy:
                spinner = threading.Thread(target=spin, args=(stop,), daemon=True)
                spinner.start()
            rates = {}
            for name, impl in (("py", P), ("c", C)):
                b = Bench(impl, fd, sync)
                rates[name] = rate(b.one, args.seconds, batch=5)
                b.close()
            stop.set()
            if spinner is not None:
                spinner.join()
            print(f"{label:44} {rates['py']:10,.0f} {rates['c']:10,.0f} {rates['c'] / rates['py']:6.1f}x")
    finally:
        os.close(fd)
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
