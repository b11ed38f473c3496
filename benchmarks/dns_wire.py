#!/usr/bin/env python3
"""Micro-benchmark: a DNS list query built and its answer read, dnswire vs dnspython.

    .venv/bin/python benchmarks/dns_wire.py [--seconds S]

What fastpost.mail.dns does per uncached lookup, without the network: build the query
for ``2.0.0.10.rbl.bench.test A`` and read a two-record answer with an authority
section (fastpost.mail.dnswire), against dnspython's make_query/to_wire/from_wire and
the rrset walk the dnspython path does. Also a full round trip through a UDP server in
this process's loop (DnsClient with ``fast`` on and off, cache off): the per-query cost
including sockets. Medians of 5 rounds; prints operations/s and the speedup.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time

import dns.message
import dns.rrset

from fastpost.mail import dnswire
from fastpost.mail.dns import DnsClient, _rdata_text

NAME = "2.0.0.10.rbl.bench.test"


def _response(qid: int) -> bytes:
    q = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    q.id = qid
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(NAME + ".", 300, "IN", "A", "127.0.0.2", "127.0.0.10"))
    r.authority.append(dns.rrset.from_text("bench.test.", 300, "IN", "NS", "ns.test."))
    return r.to_wire()


def ours(wire: bytes) -> list:
    dnswire.build_query(4711, NAME, dnswire.A)
    return dnswire.parse_response(wire, 4711, NAME, dnswire.A).records


def theirs(wire: bytes) -> list:
    q = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    q.to_wire()
    m = dns.message.from_wire(wire)
    rrset = m.find_rrset(m.answer, q.question[0].name, 1, 1)
    return [_rdata_text("A", r) for r in rrset]


def rate(func, arg, seconds: float) -> float:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            func(arg)
        n += 100
    return n / seconds


class Echo(threading.Thread):
    """A UDP server answering every A query with two records."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def run(self):
        while True:
            data, peer = self.sock.recvfrom(4096)
            # Cheap on purpose (the server must not be what is measured): the
            # question copied back, one A record pointing at it.
            end = data.index(b"\0", 12) + 5
            self.sock.sendto(data[:2] + b"\x81\x80\0\x01\0\x01\0\0\0\0" + data[12:end]
                             + b"\xc0\x0c\0\x01\0\x01\0\0\x01\x2c\0\x04\x7f\0\0\x02", peer)


def round_trips(server: str, fast: bool, seconds: float) -> float:
    client = DnsClient([server], timeout=5, cache_size=0)
    client.fast = fast

    async def run():
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            r = await client.lookup(f"{n}.rbl.bench.test", "A")
            assert r.status == "ok"
            n += 1
        return n / seconds
    return asyncio.run(run())


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    wire = _response(4711)
    assert ours(wire) == theirs(wire)
    a = statistics.median(rate(ours, wire, args.seconds) for _ in range(5))
    b = statistics.median(rate(theirs, wire, args.seconds) for _ in range(5))
    print(f"build + parse   dnswire {a:9.0f}/s   dnspython {b:9.0f}/s   speedup {a / b:.1f}x")
    echo = Echo()
    echo.start()
    fa, fb = [], []
    for _ in range(5):  # interleaved
        fa.append(round_trips(echo.address, True, args.seconds))
        fb.append(round_trips(echo.address, False, args.seconds))
    a, b = statistics.median(fa), statistics.median(fb)
    print(f"UDP round trip  dnswire {a:9.0f}/s   dnspython {b:9.0f}/s   speedup {a / b:.1f}x"
          f"   (server in a thread of this process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
