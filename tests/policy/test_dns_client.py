"""fastpost.mail.dns: our UDP path (dnswire) gives what the dnspython path gives.

Against a real nsd serving a test zone: every (name, type) below is looked up by a
DnsClient on the fast path and by one with ``fast = False`` (dnspython all the way);
status, records, nxdomain and TTL must agree. Then the failure paths of the fast
path with small UDP servers in the test: a server that never answers (the lookup
defers: "retry", and a second server is asked), an answer with the wrong ID or
question before the right one (ignored), a truncated answer (handed to dnspython,
which retries over TCP), REFUSED from every server ("retry", never "notfound").
"""

from __future__ import annotations

import asyncio
import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from fastpost.mail.dns import DnsClient
from policy.dnsserver import NsdServer, need_nsd

LONG_TXT = " ".join(f'"{"x" * 200}{i}"' for i in range(8))  # > 1232 bytes: TC over UDP
ZONE = f"""\
$TTL 300
@     SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@     NS  ns.test.
ns    A   127.0.0.1
one   A   192.0.2.1
many  A   192.0.2.1
many  A   192.0.2.2
many  A   192.0.2.3
mx    MX  10 mail.mx
mx    MX  20 backup.mx
null  MX  0 .
txt   TXT "v=spf1 -all"
multi 60 TXT "part one " "part two"
big   TXT {LONG_TXT}
alias CNAME one
deep  CNAME alias
six   AAAA 2001:db8::1
ptr   PTR host.example.
Mixed A 192.0.2.9
"""

QUERIES = [("one.dns.test", "A"), ("many.dns.test", "A"), ("mx.dns.test", "MX"),
           ("null.dns.test", "MX"), ("txt.dns.test", "TXT"), ("multi.dns.test", "TXT"),
           ("big.dns.test", "TXT"), ("alias.dns.test", "A"), ("deep.dns.test", "A"),
           ("alias.dns.test", "CNAME"), ("six.dns.test", "AAAA"), ("ptr.dns.test", "PTR"),
           ("MIXED.dns.test", "A"), ("one.dns.test", "MX"), ("none.dns.test", "A"),
           ("dns.test", "NS"), ("elsewhere.example", "A"), ("ünï.dns.test", "A")]


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    need_nsd()
    server = NsdServer(str(tmp_path_factory.mktemp("nsd")), {"dns.test": ZONE})
    server.start()
    yield server
    server.stop()


def _lookup_all(client, queries):
    async def run():
        return [await client.lookup(n, t) for n, t in queries]
    return asyncio.run(run())


def test_fast_path_agrees_with_dnspython(nsd):
    fast = DnsClient([nsd.address], timeout=5)
    slow = DnsClient([nsd.address], timeout=5)
    slow.fast = False
    ours, theirs = _lookup_all(fast, QUERIES), _lookup_all(slow, QUERIES)
    for (name, rdtype), a, b in zip(QUERIES, ours, theirs):
        assert (a.status, a.records, a.nxdomain, a.ttl) == (b.status, b.records, b.nxdomain, b.ttl), \
            (name, rdtype)
    got = dict(zip(QUERIES, ours))
    assert got["many.dns.test", "A"].records == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert got["deep.dns.test", "A"].records == ["192.0.2.1"]
    assert got["null.dns.test", "MX"].records == ["0 ."]
    assert got["multi.dns.test", "TXT"].records == ["part one part two"]
    assert got["multi.dns.test", "TXT"].ttl == 60
    assert got["big.dns.test", "TXT"].status == "ok"            # over TCP, by dnspython
    assert got["none.dns.test", "A"].nxdomain and got["none.dns.test", "A"].ttl == 60
    assert got["one.dns.test", "MX"].status == "notfound" and not got["one.dns.test", "MX"].nxdomain
    assert got["elsewhere.example", "A"].status == "retry"       # REFUSED


class FakeServer(threading.Thread):
    """A UDP server that answers each query as ``behaviour`` says."""

    def __init__(self, behaviour: str):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.behaviour = behaviour
        self.queries = 0

    def run(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries += 1
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            if self.behaviour == "silent":
                continue
            if self.behaviour == "refused":
                r.set_rcode(dns.rcode.REFUSED)
            elif self.behaviour == "truncated":
                r.flags |= dns.flags.TC
            else:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "192.0.2.7"))
            if self.behaviour == "spoofed":
                wrong = dns.message.make_response(q)
                wrong.id = (q.id + 1) % 65536
                wrong.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "6.6.6.6"))
                self.sock.sendto(wrong.to_wire(), peer)
                other = dns.message.make_query("other.example", "A")
                other.id = q.id
                self.sock.sendto(dns.message.make_response(other).to_wire(), peer)
            self.sock.sendto(r.to_wire(), peer)

    def close(self):
        self.sock.close()


@pytest.fixture
def fake():
    servers = []

    def make(behaviour):
        s = FakeServer(behaviour)
        s.start()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def test_silent_server_defers_then_next_server_answers(fake):
    silent, good = fake("silent"), fake("answer")
    r = _lookup_all(DnsClient([silent.address], timeout=1), [("a.example", "A")])[0]
    assert r.status == "retry"
    r = _lookup_all(DnsClient([silent.address, good.address], timeout=2), [("a.example", "A")])[0]
    assert (r.status, r.records) == ("ok", ["192.0.2.7"])
    assert silent.queries >= 2


def test_wrong_answers_are_ignored(fake):
    s = fake("spoofed")
    r = _lookup_all(DnsClient([s.address], timeout=2), [("a.example", "A")])[0]
    assert (r.status, r.records) == ("ok", ["192.0.2.7"])


def test_refused_everywhere_is_retry_not_notfound(fake):
    a, b = fake("refused"), fake("refused")
    client = DnsClient([a.address, b.address], timeout=2)
    r = _lookup_all(client, [("a.example", "A")])[0]
    assert r.status == "retry"
    assert (a.queries, b.queries) == (1, 1)
    assert client.cached("a.example", "A") is None                 # temporary: not cached


def test_truncated_answer_goes_to_dnspython(fake):
    s = fake("truncated")
    # dnspython then retries over TCP, where nobody listens: a temporary failure.
    r = _lookup_all(DnsClient([s.address], timeout=1), [("a.example", "A")])[0]
    assert r.status == "retry"
    assert s.queries >= 2                                           # ours, then dnspython's
