#!/usr/bin/env python3
"""Micro-benchmark: queue-record codec, compiled kernel vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_record.py [--seconds S]

Workload: a 1 KiB message as Postfix-style records (envelope + 20 content lines of
~50 bytes), and a 100 KiB message (1,400 lines). Prints messages/s encoded and
decoded (split_records over the whole buffer) for each implementation and the ratio.
Medians of 5 timed rounds; each round runs for about --seconds / 5.
"""

import argparse
import sys

from fastpost.mail import _record_c as C
from fastpost.mail import _record_py as P
from _timing import rate  # noqa: E402  (this directory is sys.path[0])


def message(lines: int) -> list:
    recs = [(ord("C"), b"%15d %15d %15d %15d %15d %15d" % (1024, 100, 1, 0, 1024, 0)),
            (ord("T"), b"1700000000 123456"),
            (ord("S"), b"sender@example.com"),
            (ord("R"), b"rcpt@example.net"),
            (ord("M"), b"%15d" % 0)]
    recs += [(ord("N"), b"Line of message content that is about fifty bytes.")] * lines
    recs += [(ord("X"), b""), (ord("E"), b"")]
    return recs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"{'workload':28} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, lines in (("1 KiB message", 20), ("100 KiB message", 1400)):
        recs = message(lines)
        data = P.encode_records(recs)
        enc_p = rate(lambda: P.encode_records(recs), args.seconds, batch=50)
        enc_c = rate(lambda: C.encode_records(recs), args.seconds, batch=50)
        dec_p = rate(lambda: P.split_records(data, 1 << 20), args.seconds, batch=50)
        dec_c = rate(lambda: C.split_records(data, 1 << 20), args.seconds, batch=50)
        print(f"{'encode ' + label:28} {enc_p:12,.0f} {enc_c:12,.0f} {enc_c / enc_p:7.1f}x")
        print(f"{'decode ' + label:28} {dec_p:12,.0f} {dec_c:12,.0f} {dec_c / dec_p:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
