#!/usr/bin/env python3
"""Micro-benchmark: cleanup's common-case kernels, compiled vs reference.

    .venv/bin/python benchmarks/kernels/bench_cleanpass.py [--seconds S]

Kernels: ``header_pass`` (fastpost.mail._hdrpass_*: the header section's pass after
the split — classification, Message-Id, drop list, address headers from the rewrite
cache) and ``envelope_block`` (fastpost.mail._envblock_*: the whole envelope of a plain
message as records in one buffer). Workloads: what smtp-source sends through cleanup
(smtpd's Received: header + From/To/Date/Message-Id, one recipient, smtpd's 13 client
attributes), and a MUA message (20 headers, 5 recipients). Prints calls/s for each
implementation and the ratio; medians of 5 timed rounds.
"""

import argparse
import sys

from fastpost.mail import _envblock_c, _envblock_py, _hdrpass_c, _hdrpass_py
from fastpost.mail import header as H
from _timing import rate  # noqa: E402  (this directory is sys.path[0])

RECEIVED = (b"Received: from client.example (localhost [127.0.0.1])\r\n"
            b"\tby mx.example.com (fastpost) with SMTP id 4A7B1C2D3E4\r\n"
            b"\tfor <dst@example.net>; Sat, 21 Nov 2026 09:14:02 +0000 (UTC)\r\n")
SMTP_SOURCE = RECEIVED + (b"From: <src@example.org>\r\nTo: <dst@example.net>\r\n"
                          b"Date: Sat, 21 Nov 2026 09:14:03 +0000 (UTC)\r\n"
                          b"Message-Id: <53f1.0003.0000@vm>\r\n\r\nbody\r\n")
MUA = RECEIVED * 3 + b"".join(
    b"X-Header-%d: some value of a typical header, %d\r\n" % (i, i) for i in range(12)) + (
    b"Subject: =?utf-8?q?a_folded?=\r\n =?utf-8?q?subject?=\r\n"
    b"From: Someone <someone@example.org>\r\nTo: a@example.net, b@example.net\r\n\r\nbody\r\n")
ATTRS = [[n, v] for n, v in (
    ("log_client_name", "localhost"), ("log_client_address", "127.0.0.1"),
    ("log_client_port", "40000"), ("log_message_origin", "localhost[127.0.0.1]"),
    ("log_helo_name", "client.example"), ("log_protocol_name", "ESMTP"),
    ("client_name", "localhost"), ("reverse_client_name", "localhost"),
    ("client_address", "127.0.0.1"), ("client_port", "40000"), ("server_address", "127.0.0.1"),
    ("server_port", "2525"), ("helo_name", "client.example"))]


def headers_of(data):
    r = H.HeaderReader(H.KINDS, 102400)
    r.feed(data)
    return r.take()


def pass_args(data):
    hs = headers_of(data)
    cache = {}
    for kind, _n, text, _f in hs:
        cls = H.CLASS.get(kind, 0)
        if cls & (H.SENDER | H.RECIPIENT):
            hclass = "header_sender" if cls & H.SENDER else "header_recipient"
            cache[("local", hclass, True, text)] = (text, 1e18)
    return (hs, H.CLASS_BYTES, frozenset({b"bcc", b"content-length", b"resent-bcc"}), 50,
            False, True, cache, "local", True, "header_sender", "header_recipient", 0.0)


def env_args(n):
    rcpts = [("rfc822;dst%d@example.net" % i, 0, "dst%d@example.net" % i, "dst%d@example.net" % i)
             for i in range(n)]
    return (1_763_716_442.123456, None, "4A7B1C2D3E4", True, None, None, None, "src@example.org",
            "8bit", ATTRS, rcpts, True, 1000, None, 100)




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"{'workload':40} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, data in (("header_pass: smtp-source (5 headers)", SMTP_SOURCE),
                        ("header_pass: MUA (20 headers)", MUA)):
        a = pass_args(data)
        assert _hdrpass_c.header_pass(*a) == _hdrpass_py.header_pass(*a)
        py = rate(lambda: _hdrpass_py.header_pass(*a), args.seconds)
        cy = rate(lambda: _hdrpass_c.header_pass(*a), args.seconds)
        print(f"{label:40} {py:12,.0f} {cy:12,.0f} {cy / py:7.1f}x")
    for label, n in (("envelope_block: 1 recipient", 1), ("envelope_block: 5 recipients", 5)):
        a = env_args(n)

        def call(mod, a=a):
            return mod.envelope_block(*a[:13], set(), a[14])

        assert call(_envblock_c) == call(_envblock_py)
        py = rate(lambda: call(_envblock_py), args.seconds)
        cy = rate(lambda: call(_envblock_c), args.seconds)
        print(f"{label:40} {py:12,.0f} {cy:12,.0f} {cy / py:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
