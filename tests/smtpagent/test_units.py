"""Pieces of the smtp agent that need no server: next hops, TLS names, the cache."""

import asyncio
import ssl
import time
from types import SimpleNamespace

import pytest

from fastpost.daemons.smtp.cache import SessionCache
from fastpost.daemons.smtp.route import Destination, Target, parse_nexthop
from fastpost.daemons.smtp.session import reply_dsn
from fastpost.daemons.smtp.tls import min_version, names_match
from fastpost.smtp.replies import Reply


@pytest.mark.parametrize("text, expect", [
    ("example.com", [("example.com", 25, True, False)]),
    ("example.com:587", [("example.com", 587, True, False)]),
    ("[mx.example.com]", [("mx.example.com", 25, False, False)]),
    ("[192.0.2.1]:2525", [("192.0.2.1", 2525, False, False)]),
    ("[ipv6:2001:db8::1]:26", [("ipv6:2001:db8::1", 26, False, False)]),
    ("inet:mail.example:24", [("mail.example", 24, True, False)]),
    ("unix:/run/lmtp", [("/run/lmtp", 0, False, True)]),
    ("a.example, [b.example]:26", [("a.example", 25, True, False), ("b.example", 26, False, False)]),
])
def test_parse_nexthop(text, expect):
    got = parse_nexthop(text, lmtp=False, default_port=25)
    assert [(d.host, d.port, d.mx, d.unix) for d in got] == expect


def test_lmtp_next_hops_never_use_mx():
    (d,) = parse_nexthop("mail.example", lmtp=True, default_port=24)
    assert (d.mx, d.port) == (False, 24)


@pytest.mark.parametrize("bad", ["", "[x", "[x]:", "host:notaport", "unix:"])
def test_bad_next_hops(bad):
    with pytest.raises(ValueError):
        parse_nexthop(bad, lmtp=False, default_port=25)


def test_reply_dsn():
    assert reply_dsn(Reply(550, "no", "5.1.1")) == "5.1.1"
    assert reply_dsn(Reply(451, "later")) == "4.0.0"


@pytest.mark.parametrize("names, strategies, host, nexthop, ok", [
    (["mx.example.com"], ["hostname"], "mx.example.com", "example.com", True),
    (["*.example.com"], ["hostname"], "mx.example.com", "example.com", True),
    (["*.example.com"], ["hostname"], "a.mx.example.com", "example.com", False),
    (["example.com"], ["nexthop", "dot-nexthop"], "mx.other", "example.com", True),
    (["mx.example.com"], ["nexthop", "dot-nexthop"], "mx.other", "example.com", True),
    (["mx.evil.com"], ["nexthop", "dot-nexthop"], "mx.example.com", "example.com", False),
    (["mx.tls.test"], ["mx.tls.test"], "127.0.0.1", "127.0.0.1", True),
])
def test_certificate_name_match(names, strategies, host, nexthop, ok):
    assert names_match(names, strategies, host, nexthop) is ok


def test_protocol_lists():
    assert min_version("!SSLv2, !SSLv3") == ssl.TLSVersion.TLSv1
    assert min_version("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1") == ssl.TLSVersion.TLSv1_2
    assert min_version(">=TLSv1.3") == ssl.TLSVersion.TLSv1_3


class _Sess:
    """What the cache looks at in a session."""

    def __init__(self, endpoint):
        self.target = SimpleNamespace(endpoint=endpoint)
        self.created = time.monotonic()
        self.uses = 1
        self.usable = True
        self.idle_handle = None
        self.cache_keys = ()
        self.quits = 0

    async def quit(self):
        self.quits += 1
        self.usable = False

    def close(self):
        self.usable = False


def _settings(**kw):
    base = dict(cache_time_limit=2, cache_on_demand=True, cache_destinations=(),
                reuse_time_limit=300, reuse_count_limit=0)
    base.update(kw)
    return SimpleNamespace(**base)


def test_cache_by_destination_and_endpoint():
    async def go():
        cache = SessionCache(_settings())
        a = _Sess("[192.0.2.1]:25")
        assert cache.put("Example.COM", a)
        assert cache.take("example.com") is a
        assert cache.take("[192.0.2.1]:25") is None  # taken once, gone from both keys
        assert cache.put("example.com", a)
        assert cache.take("[192.0.2.1]:25") is a
        await cache.close_all()
    asyncio.run(go())


def test_cache_limits():
    async def go():
        cache = SessionCache(_settings(reuse_count_limit=2))
        s = _Sess("[192.0.2.1]:25")
        s.uses = 2
        assert not cache.put("d", s)  # used up: QUIT instead
        await asyncio.sleep(0)
        assert s.quits == 1
        cache = SessionCache(_settings(cache_on_demand=False, cache_destinations=("kept.example",)))
        assert not cache.put("other.example", _Sess("[192.0.2.2]:25"))
        assert cache.put("kept.example", _Sess("[192.0.2.3]:25"))
        dead = _Sess("[192.0.2.4]:25")
        assert cache.put("gone.example", dead) is False  # not wanted
        cache = SessionCache(_settings(cache_time_limit=0))
        assert not cache.put("x", _Sess("[192.0.2.5]:25"))
        await cache.close_all()
    asyncio.run(go())


def test_cache_expiry_quits_idle_sessions():
    async def go():
        cache = SessionCache(_settings(cache_time_limit=0.05))
        s = _Sess("[192.0.2.1]:25")
        cache.put("d", s)
        await asyncio.sleep(0.2)
        assert s.quits == 1 and cache.take("d") is None and cache.idle_count == 0
    asyncio.run(go())
