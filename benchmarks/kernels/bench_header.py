#!/usr/bin/env python3
"""Micro-benchmark: splitting a message's header section, compiled kernel vs reference.

    .venv/bin/python benchmarks/kernels/bench_header.py [--seconds S]

Workloads: the header section smtp-source sends with smtpd's Received: header in front
(7 short headers, what the accept benchmark pushes through cleanup), a typical MUA
message (20 headers, folded ones and a long DKIM signature), and 200 Received: headers
(a mail loop). Prints header sections/s for HeaderReader.feed+take for each
implementation and the ratio; medians of 5 timed rounds.
"""

import argparse
import sys

from fastpost.mail import _header_c as C
from fastpost.mail import _header_py as P
from fastpost.mail.header import KINDS
from _timing import rate  # noqa: E402  (this directory is sys.path[0])

RECEIVED = (b"Received: from client.example (localhost [127.0.0.1])\r\n"
            b"\tby mx.example.com (fastpost) with SMTP id 4A7B1C2D3E4\r\n"
            b"\tfor <dst@example.net>; Sat, 21 Nov 2026 09:14:02 +0000 (UTC)\r\n")
SMTP_SOURCE = RECEIVED + (b"From: <src@example.org>\r\nTo: <dst@example.net>\r\n"
                          b"Date: Sat, 21 Nov 2026 09:14:03 +0000 (UTC)\r\n"
                          b"Message-Id: <53f1.0003.0000@vm>\r\n\r\nbody\r\n")
MUA = RECEIVED * 3 + b"".join(
    b"X-Header-%d: some value of a typical header, %d\r\n" % (i, i) for i in range(12)) + (
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\r\n"
    b"\th=from:to:subject:date:message-id; bh=" + b"A" * 44 + b";\r\n\tb=" + b"B" * 344 + b"\r\n"
    b"Subject: =?utf-8?q?a_folded?=\r\n =?utf-8?q?subject?=\r\n"
    b"From: Someone <someone@example.org>\r\nTo: a@example.net, b@example.net\r\n\r\nbody\r\n")
LOOP = RECEIVED * 200 + b"\r\nbody\r\n"




def split(impl, data):
    r = impl.HeaderReader(KINDS, 102400)
    r.feed(data)
    return r.take()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"{'workload':34} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, data in (("smtp-source message (7 headers)", SMTP_SOURCE),
                        ("MUA message (20 headers)", MUA), ("200 Received: headers", LOOP)):
        assert split(C, data) == split(P, data)
        py = rate(lambda: split(P, data), args.seconds)
        cy = rate(lambda: split(C, data), args.seconds)
        print(f"{label:34} {py:12,.0f} {cy:12,.0f} {cy / py:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
