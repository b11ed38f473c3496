#!/usr/bin/env python3
"""Micro-benchmark: message text <-> content records, compiled kernel vs reference.

    .venv/bin/python benchmarks/kernels/bench_content.py [--seconds S]

Workload: a 1 KiB message (20 lines of ~50 bytes, CRLF) and a 100 KiB message (1,400
lines, and one 5,000-byte line cut at line_length_limit 2048). Prints messages/s for
encode_text (text -> N/L records) and decode_text (records -> text with LF) for each
implementation and the ratio. Medians of 5 timed rounds.
"""

import argparse
import sys

from fastpost.mail import _content_c as C
from fastpost.mail import _content_py as P
from _timing import rate  # noqa: E402  (this directory is sys.path[0])




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    line = b"Line of message content that is about fifty bytes.\r\n"
    small = line * 20
    large = line * 1400 + b"x" * 5000 + b"\r\n"
    print(f"{'workload':28} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, text in (("1 KiB message", small), ("100 KiB message", large)):
        recs = C.encode_text(text, 2048, True)[0]
        assert recs == P.encode_text(text, 2048, True)[0]
        enc_p = rate(lambda: P.encode_text(text, 2048, True), args.seconds)
        enc_c = rate(lambda: C.encode_text(text, 2048, True), args.seconds)
        dec_p = rate(lambda: P.decode_text(recs, 0, 1 << 20), args.seconds)
        dec_c = rate(lambda: C.decode_text(recs, 0, 1 << 20), args.seconds)
        print(f"{'encode ' + label:28} {enc_p:12,.0f} {enc_c:12,.0f} {enc_c / enc_p:7.1f}x")
        print(f"{'decode ' + label:28} {dec_p:12,.0f} {dec_c:12,.0f} {dec_c / dec_p:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
