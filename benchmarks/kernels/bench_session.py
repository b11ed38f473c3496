#!/usr/bin/env python3
"""Micro-benchmark: smtpd's SessionCore, compiled vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_session.py [--seconds S]

Workload: whole plain sessions through the real session code (SessionLogic, the real
RestrictionPolicy of a default main.cf, the real ServerConnection): connection_made,
EHLO, MAIL, RCPT, DATA, a 1 KiB message, QUIT, connection_lost, one command per read,
into a sink that accepts at once and a transport that keeps nothing. "python" is
SessionLogic over the core's source run by the interpreter (_session_py), "cython" is
SmtpdProtocol over the same source compiled (_session_c, Cython's pure-Python mode
with ext/fastpost/daemons/smtpd/_session_c.pxd): sessions/s. The rest of the session (policy, ServerConnection,
log lines written to /dev/null) is the same in both, so the ratio understates the
core's own speed-up. Medians of 5 timed rounds; each round runs for about
--seconds / 5.
"""

import argparse
import asyncio
import sys
import tempfile

from fastpost.daemons.smtpd import _session_py
from fastpost.daemons.smtpd.service import SmtpdService
from fastpost.daemons.smtpd.session import SessionLogic, SmtpdProtocol, _SLOTS
from fastpost.daemons.smtpd.testsink import NullSink
from fastpost.mail.config import Config
from fastpost.util import log
from _timing import rate  # noqa: E402  (this directory is sys.path[0])


class ReferenceProtocol(SessionLogic, _session_py.SessionCore, asyncio.BufferedProtocol):
    __slots__ = _SLOTS + ("__dict__",)
    _handlers = {**SessionLogic._handlers, **_session_py.CORE_HANDLERS}


class Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.extra = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 25)}

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    def write(self, data):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        pass


MAIN_CF = """\
compatibility_level = 3.6
myhostname = fastpost.localdomain
mydestination =
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
local_recipient_maps =
smtpd_peername_lookup = no
"""

SCRIPT = [b"EHLO client.example.com\r\n", b"MAIL FROM:<sender@example.com>\r\n",
          b"RCPT TO:<rcpt@example.net>\r\n", b"DATA\r\n",
          b"Subject: bench\r\n\r\n" + b"x" * 70 + b"\r\n" * 14 + b".\r\n", b"QUIT\r\n"]


def bench(service, cls):
    view = service.read_view

    def run():
        proto = cls(service)
        proto.connection_made(Transport())
        for piece in SCRIPT:
            view[:len(piece)] = piece
            proto.buffer_updated(len(piece))
        proto.connection_lost(None)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    # Log lines as production writes them to maillog_file: one write(2) each.
    log.init("smtpd", syslog_name="fastpost", use_syslog=False, maillog_file="/dev/null")
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as d:
        cfg = Config(d, text=MAIN_CF + f"queue_directory = {d}\n")
        service = SmtpdService.from_config(cfg, sink=NullSink("4XbQ1d2kLmz3"), loop=loop)
        s = args.seconds
        print(f"{'workload':26} {'python':>14} {'cython':>14} {'speedup':>8}")
        p = rate(bench(service, ReferenceProtocol), s, batch=10)
        c = rate(bench(service, SmtpdProtocol), s, batch=10)
        print(f"{'plain session, 1 KiB msg':26} {p:10,.0f} s/s {c:10,.0f} s/s {c / p:7.1f}x")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
