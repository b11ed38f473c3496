#!/usr/bin/env python3
"""Micro-benchmark: build-time source parsing, compiled kernel vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_source.py [--lines N]

Workload: a postmap source of --lines (200,000) lines like
``user17@Domain17.example<TAB>smtp:[relay7.example]:25`` with a comment and a
continuation line every 1,000 lines; parse_records (fold + NUL) then unique_sorted.
Prints lines/s for each implementation and the ratio (medians of 3, GC disabled as
builds run it).
"""

import argparse
import gc
import statistics
import sys
import time

from fastpost.mail.maps import _source_c as C
from fastpost.mail.maps import _source_py as P


def source(lines: int) -> bytes:
    out = []
    for i in range(lines):
        if i % 1000 == 0:
            out.append(f"# block {i}\nlong{i} first part\n   continued part")
        out.append(f"user{i}@Domain{i % 1000}.example\tsmtp:[relay{i % 10}.example]:25")
    return ("\n".join(out) + "\n").encode()


def rate(impl, data: bytes, lines: int) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        records, _ = impl.parse_records(data, True, True)
        impl.unique_sorted(records, False)
        times.append(time.perf_counter() - start)
    return lines / statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    data = source(args.lines)
    gc.disable()
    py = rate(P, data, args.lines)
    cy = rate(C, data, args.lines)
    print(f"{'workload':34} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    print(f"{'parse + dedupe (lines)':34} {py:12,.0f} {cy:12,.0f} {cy / py:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
