"""MX routing against a real DNS server (unbound, started by the test on loopback).

Servers are smtp-sinks on 127.0.0.3 and .4, all on one port P; 127.0.0.2:P refuses
connections. Next hops are ``domain:P`` (MX lookup, every host on port P).
"""

import asyncio
import random

import pytest

from fastpost.daemons.smtp import dns
from fastpost.daemons.smtp.route import Router, parse_nexthop
from fastpost.daemons.smtp.settings import Settings
from fastpost.mail.config import Config
from helpers.instance import free_port
from smtpagent.agent import MASTER_CF, AgentSite
from smtpagent.dnsserver import Unbound
from smtpagent.sink import Sink

RECORDS = [
    "pref.test. MX 20 live.test.", "pref.test. MX 10 dead.test.",
    "dead.test. A 127.0.0.2", "live.test. A 127.0.0.3", "live2.test. A 127.0.0.4",
    "null.test. MX 0 .",
    "bare.test. A 127.0.0.4",
    "noaddr.test. MX 10 nohost.test.", "nohost.test. TXT nothing",
    "self.test. MX 10 me.test.", "me.test. A 127.0.0.1",
    "three.test. MX 10 dead.test.", "three.test. MX 20 dead2.test.",
    "three.test. MX 30 live.test.", "dead2.test. A 127.0.0.5",
    "two.test. MX 10 live.test.", "two.test. MX 10 live2.test.",
    "soft.test. MX 10 softmx.test.", "soft.test. MX 20 live.test.", "softmx.test. A 127.0.0.6",
    "hard.test. MX 10 hardmx.test.", "hard.test. MX 20 live.test.", "hardmx.test. A 127.0.0.7",
    "gone.test. MX 10 gonemx.test.", "gone.test. MX 20 live.test.", "gonemx.test. A 127.0.0.8",
    "six.test. MX 10 sixmx.test.", "sixmx.test. AAAA ::1",
]


@pytest.fixture(scope="module")
def env():
    from conftest import need_program, need_root

    need_root()
    need_program("smtp-sink")
    need_program("unbound")
    port = free_port("127.0.0.3")
    with Unbound(RECORDS) as server, Sink(host="127.0.0.3", port=port) as live, \
            Sink(host="127.0.0.4", port=port) as live2, \
            Sink("-r", "rcpt", host="127.0.0.6", port=port), \
            Sink("-f", "rcpt", host="127.0.0.7", port=port), \
            Sink("-Q", "mail", host="127.0.0.8", port=port):
        master_cf = MASTER_CF + (
            "smtp2 unix - - n - - smtp\n  -o smtp_mx_address_limit=2\n"
            f"nodns unix - - n - - smtp\n  -o fastpost_dns_servers=127.0.0.1:{free_port()}\n"
            "  -o fastpost_dns_timeout=2s\n"
            "smtp6 unix - - n - - smtp\n  -o inet_protocols=all\n")
        with AgentSite(master_cf=master_cf,
                       main_cf={"fastpost_dns_servers": server.server}) as site:
            site.start()
            yield site, server, port, live, live2


def test_preference_order_and_next_mx_on_failure(env):
    site, _, port, live, _ = env
    qid = site.submit(["x@pref.test"])
    res = site.deliver(qid, f"pref.test:{port}")
    assert [(r.status, r.relay) for r in res.results] == [("sent", f"live.test[127.0.0.3]:{port}")]
    assert res.hop_status is None
    assert f"connect to dead.test[127.0.0.2]:{port}: Connection refused" in site.inst.log_text()


def test_null_mx_bounces(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@null.test"])
    res = site.deliver(qid, f"null.test:{port}")
    assert [(r.status, r.dsn, r.text, r.relay) for r in res.results] == \
        [("bounced", "5.1.0", "Domain null.test does not accept mail (nullMX)", "none")]
    assert res.hop_status is None


def test_no_mx_uses_the_domain_address(env):
    site, _, port, _, live2 = env
    qid = site.submit(["x@bare.test"])
    res = site.deliver(qid, f"bare.test:{port}")
    assert [(r.status, r.relay) for r in res.results] == [("sent", f"bare.test[127.0.0.4]:{port}")]


def test_unknown_domain_bounces(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@nowhere.test"])
    res = site.deliver(qid, f"nowhere.test:{port}")
    (r,) = res.results
    assert (r.status, r.dsn) == ("bounced", "5.4.4")
    assert r.text == ("Host or domain name not found. Name service error for "
                      "name=nowhere.test type=A: Host not found")


def test_mx_host_without_address(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@noaddr.test"])
    res = site.deliver(qid, f"noaddr.test:{port}")
    (r,) = res.results
    assert (r.status, r.dsn) == ("bounced", "5.4.4")
    assert "no MX host for noaddr.test has a valid address record" in site.inst.log_text()


def test_mx_pointing_at_ourselves(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@self.test"])
    res = site.deliver(qid, f"self.test:{port}")
    assert [(r.status, r.dsn, r.text) for r in res.results] == \
        [("bounced", "5.4.6", "mail for self.test loops back to myself")]


def test_literal_next_hop_skips_mx(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@pref.test"])
    res = site.deliver(qid, f"[live2.test]:{port}")
    assert [(r.status, r.relay) for r in res.results] == [("sent", f"live2.test[127.0.0.4]:{port}")]


def test_address_limit(env):
    """With smtp_mx_address_limit=2 the third MX host is never tried."""
    site, _, port, _, _ = env
    qid = site.submit(["x@three.test"])
    res = site.deliver(qid, f"three.test:{port}", transport="smtp2")
    (r,) = res.results
    assert (r.status, r.dsn) == ("deferred", "4.4.1")
    assert r.text == f"connect to dead2.test[127.0.0.5]:{port}: Connection refused"
    assert res.hop_status == {"dsn": "4.4.1", "text": r.text}
    qid = site.submit(["x@three.test"])
    res = site.deliver(qid, f"three.test:{port}")  # default limit 5: the third one works
    assert res.results[0].status == "sent"


def test_dns_failure_defers(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@pref.test"])
    res = site.deliver(qid, f"pref.test:{port}", transport="nodns")
    (r,) = res.results
    assert (r.status, r.dsn) == ("deferred", "4.4.3")
    assert r.text == ("Host or domain name not found. Name service error for "
                      "name=pref.test type=MX: Host not found, try again")
    assert res.hop_status == {"dsn": "4.4.3", "text": r.text}


def test_equal_preferences_are_shuffled(env, tmp_path):
    _, server, port, _, _ = env
    (tmp_path / "main.cf").write_text(f"fastpost_dns_servers = {server.server}\n")
    settings = Settings.from_config(Config(str(tmp_path)), False)
    lookups = dns.Lookups([server.server], timeout=3, families={4})
    router = Router(settings, lookups, rng=random.Random(7))
    (dest,) = parse_nexthop(f"two.test:{port}", lmtp=False, default_port=25)

    async def firsts():
        seen = set()
        for _ in range(30):
            targets, problem = await router.route(dest)
            assert problem is None and {t.pref for t in targets} == {10}
            seen.add(targets[0].host)
        return seen

    assert asyncio.run(firsts()) == {"live.test", "live2.test"}
    assert lookups.queries == 3  # MX + two A: later routes come from the cache


def test_soft_rcpt_reply_tries_the_next_mx(env):
    """A 4xx for a recipient on a server that is not the last: the next MX gets it."""
    site, _, port, _, _ = env
    qid = site.submit(["x@soft.test"])
    res = site.deliver(qid, f"soft.test:{port}")
    assert [(r.status, r.relay) for r in res.results] == [("sent", f"live.test[127.0.0.3]:{port}")]


def test_hard_rcpt_reply_is_final(env):
    """A 5xx for a recipient bounces it: no other MX is asked."""
    site, _, port, _, _ = env
    qid = site.submit(["x@hard.test"])
    res = site.deliver(qid, f"hard.test:{port}")
    (r,) = res.results
    assert (r.status, r.dsn, r.relay) == ("bounced", "5.3.0", f"hardmx.test[127.0.0.7]:{port}")
    assert r.text.startswith("host hardmx.test[127.0.0.7] said: 500 5.3.0 ")


def test_421_moves_on_to_the_next_mx(env):
    site, _, port, _, _ = env
    qid = site.submit(["x@gone.test"])
    res = site.deliver(qid, f"gone.test:{port}")
    assert [(r.status, r.relay) for r in res.results] == [("sent", f"live.test[127.0.0.3]:{port}")]
    assert res.hop_status is None


def test_aaaa_records_with_inet_protocols_all(env):
    """IPv6 MX host: unreachable with inet_protocols = ipv4, delivered with all."""
    site, _, _, _, _ = env
    with Sink(host="::1") as sink6:
        qid = site.submit(["x@six.test"])
        res = site.deliver(qid, f"six.test:{sink6.port}")
        (r,) = res.results
        assert (r.status, r.dsn) == ("bounced", "5.4.4")  # no A record, AAAA not asked
        qid = site.submit(["x@six.test"])
        res = site.deliver(qid, f"six.test:{sink6.port}", transport="smtp6")
        assert [(r.status, r.relay) for r in res.results] == \
            [("sent", f"sixmx.test[::1]:{sink6.port}")]
        res = site.deliver(site.submit(["x@six.test"]), sink6.nexthop, transport="smtp6")
        assert [r.relay for r in res.results] == [f"::1[::1]:{sink6.port}"]
