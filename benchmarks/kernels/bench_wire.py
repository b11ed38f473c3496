#!/usr/bin/env python3
"""Micro-benchmark: message text -> SMTP DATA bytes (the smtp agent's wire kernel).

    .venv/bin/python benchmarks/kernels/bench_wire.py [--seconds S]

Workload: a 1 KiB message (20 lines of ~50 bytes) and a 100 KiB message (1,400 lines,
some starting with ".", and one 5,000-byte line folded at 998), CR LF line ends as the
content kernel gives them. Prints messages/s for the reference (_wire_py), the compiled
kernel (_wire_c) and, for comparison, what the agent did before the kernel: the SMTP
core's own per-line stuffing (ClientConnection._stuff) plus a split-based fold check.
Medians of 5 timed rounds.
"""

import argparse
import sys

from fastpost.daemons.smtp import _wire_c as C
from fastpost.daemons.smtp import _wire_py as P
from fastpost.smtp.client import ClientConnection
from _timing import rate  # noqa: E402  (this directory is sys.path[0])




def core_path(text: bytes) -> bytes:
    c = ClientConnection()

    class _Txn:
        use_bdat = False
    c._txn = _Txn()
    max(map(len, text.split(b"\r\n")))  # the fold check the agent made first
    return c._stuff(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    line = b"Line of message content that is about fifty bytes.\r\n"
    small = line * 20
    large = (line * 9 + b".a dotted line\r\n") * 140 + b"x" * 5000 + b"\r\n"
    print(f"{'workload':20} {'core path/s':>12} {'python/s':>12} {'cython/s':>12} {'vs core':>8}")
    for label, text in (("1 KiB message", small), ("100 KiB message", large)):
        assert C.wire_text(text) == P.wire_text(text)
        core = rate(lambda: core_path(text), args.seconds)
        py = rate(lambda: P.wire_text(text), args.seconds)
        cy = rate(lambda: C.wire_text(text), args.seconds)
        print(f"{label:20} {core:12,.0f} {py:12,.0f} {cy:12,.0f} {cy / core:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
