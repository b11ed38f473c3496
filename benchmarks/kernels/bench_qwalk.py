#!/usr/bin/env python3
"""Micro-benchmark: the queue-file record walk, compiled kernel vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_qwalk.py [--seconds S]

Workload: a queue file as smtpd and cleanup write one for a 1 KiB message (the C, T
records, 16 named attributes as smtpd's cleanup client sends them, the sender, one
recipient with its original address, ~1 KiB of content, the extracted section): 28
records walked with the content skipped, as the smtp agent's parse() and qmgr's
read_envelope() walk it. Prints walks/s of each implementation and the ratio, and the
same for the whole of message.parse() and envelope.read_envelope() over each (the
readers the relay path runs per message). Medians of 5 timed rounds.
"""

import argparse
import sys

from _timing import rate  # noqa: E402  (this directory is sys.path[0])

from fastpost.mail import envelope
from fastpost.mail.queue import _qwalk_c as C
from fastpost.mail.queue import _qwalk_py as P
from fastpost.mail.queue import message as M

ATTRS = ("rewrite_context", "log_client_name", "log_client_address", "log_client_port",
         "log_message_origin", "log_helo_name", "log_protocol_name", "client_name",
         "reverse_client_name", "client_address", "client_port", "helo_name",
         "protocol_name", "server_address", "server_port", "ident")


def smtpd_queue_file() -> bytes:
    b = M.QueueFileBuilder()
    b.time(1_700_000_000.5)
    for name in ATTRS:
        b.attr(name, "remote" if name == "rewrite_context" else f"{name}-value.example")
    b.set_sender("bench@source.example")
    b.add_recipient("rcpt@example.com", orig="rcpt@example.com")
    b.write(b"Received: from source.example\nSubject: bench\n\n" + b"x" * 70 + b"\n" * 1
            + (b"y" * 76 + b"\n") * 12)
    return b.build()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    data = smtpd_queue_file()
    n = len(C.walk_records(data, True, True, M.MAX_RECORD))
    print(f"queue file: {len(data)} bytes, {n} records listed with the content skipped")
    print(f"{'workload':44} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, follow, skip in (("walk, content skipped (parse, read_envelope)", True, True),
                                ("walk, every record", True, False)):
        p = rate(lambda: P.walk_records(data, follow, skip, M.MAX_RECORD), args.seconds, batch=50)
        c = rate(lambda: C.walk_records(data, follow, skip, M.MAX_RECORD), args.seconds, batch=50)
        print(f"{label:44} {p:12,.0f} {c:12,.0f} {c / p:7.1f}x")
    for label, fn in (("message.parse()", M.parse), ("envelope.read_envelope()", envelope.read_envelope)):
        saved = M._qwalk
        try:
            M._qwalk = P
            p = rate(lambda: fn(data), args.seconds, batch=50)
            M._qwalk = C
            c = rate(lambda: fn(data), args.seconds, batch=50)
        finally:
            M._qwalk = saved
        print(f"{label:44} {p:12,.0f} {c:12,.0f} {c / p:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
