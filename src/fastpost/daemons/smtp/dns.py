"""Name lookups for the smtp/lmtp agent: MX, A and AAAA through dnspython, or native.

Postfix counterpart: src/dns/dns_lookup.c (the DNS side), src/smtp/smtp_addr.c (the
use the client makes of it: MX hosts, host addresses, the native fallback).

    r = Lookups(servers=["127.0.0.1:5353"], timeout=10, families={4, 6})   # pre_init
    mx = await r.mx("example.com")        # Answer(status, records=[(pref, host)], ...)
    a = await r.addresses("mx.example.com", dns=True, native=False)

Every DNS query goes to ``fastpost_dns_servers`` (``host``, ``host:port`` or
``[ipv6]:port``, in order) or, when that is empty, to the servers of
/etc/resolv.conf as read when the object is built — which is in the daemon's
pre_init, before a chroot, as docs/master.md requires. Names are absolute (no search
list). Answers are cached for their TTL (negative ones for the zone's SOA minimum,
at most 300 s), and concurrent queries for one name share one round trip.

Three outcomes, as Postfix's: OK; NOTFOUND (the name does not exist, or has no
record of that type: a permanent failure); RETRY (time-out, SERVFAIL, REFUSED, no
server reachable: a temporary failure, never taken as "not found"). ``reason`` is
Postfix's wording: "Host not found", "Host found but no data record of requested
type", "Host not found, try again"; ``error_text()`` builds the whole status text
("Host or domain name not found. Name service error for name=X type=MX: ...").

Native lookups (``smtp_host_lookup = native``, or DNS disabled) use getaddrinfo in
the loop's executor: they see /etc/hosts and NSS, which a chrooted agent lacks.

Parameters: the caller passes fastpost_dns_servers, fastpost_dns_timeout and the
families of inet_protocols.
Diagnostics: lookups never raise; a malformed name is NOTFOUND with a reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

__all__ = ["Answer", "Lookups", "OK", "NOTFOUND", "RETRY", "error_text", "parse_server"]

OK = "ok"
NOTFOUND = "notfound"
RETRY = "retry"

HOST_NOT_FOUND = "Host not found"
NO_DATA = "Host found but no data record of requested type"
TRY_AGAIN = "Host not found, try again"

#: Bounds on how long an answer is kept (seconds).
MIN_TTL = 1
MAX_TTL = 3600
NEGATIVE_TTL = 300
CACHE_SIZE = 10000


@dataclass(slots=True)
class Answer:
    """The outcome of one lookup (module docstring)."""

    status: str
    records: list = field(default_factory=list)  # MX: (pref, host); A/AAAA: address strings
    reason: str = ""
    name: str = ""
    rtype: str = ""
    nxdomain: bool = False
    ttl: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK


def error_text(answer: Answer) -> str:
    """Postfix's status text for a failed lookup."""
    return (f"Host or domain name not found. Name service error for name={answer.name} "
            f"type={answer.rtype}: {answer.reason}")


def parse_server(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[ipv6]:port`` -> (address, port)."""
    text = text.strip()
    if text.startswith("["):
        close = text.index("]")
        host, rest = text[1:close], text[close + 1:]
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


class Lookups:
    """Cached, coalesced MX/A/AAAA lookups for one agent process."""

    def __init__(self, servers=(), *, timeout: float = 10.0, families=frozenset({4, 6}),
                 cache_size: int = CACHE_SIZE):
        self.timeout = float(timeout)
        self.families = frozenset(families)
        self.cache_size = cache_size
        if servers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.Do53Nameserver(h, p)
                             for h, p in (parse_server(s) for s in servers)]
        else:
            try:
                r = dns.asyncresolver.Resolver()  # reads /etc/resolv.conf now
            except dns.resolver.NoResolverConfiguration:
                r = dns.asyncresolver.Resolver(configure=False)
                r.nameservers = ["127.0.0.1"]
        r.search = []
        r.use_search_by_default = False
        r.lifetime = self.timeout
        r.timeout = max(1.0, self.timeout / 2)
        r.cache = None
        r.retry_servfail = False
        self._resolver = r
        self._cache: dict = {}
        self._inflight: dict = {}
        self.queries = 0  # DNS queries sent (after the cache and coalescing)

    # -- DNS -------------------------------------------------------------------------

    async def query(self, name: str, rtype: str) -> Answer:
        """Return the Answer for (name, rtype) from the cache or the name servers."""
        key = (name.lower().rstrip("."), rtype)
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > time.monotonic():
                return hit[1]
            del self._cache[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._query(key))
            self._inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))
        return await asyncio.shield(task)

    async def _query(self, key) -> Answer:
        name, rtype = key
        self.queries += 1
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            return Answer(NOTFOUND, reason=f"{HOST_NOT_FOUND} ({exc})", name=name, rtype=rtype)
        try:
            ans = await self._resolver.resolve(qname, rtype, search=False,
                                               raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            result = Answer(NOTFOUND, reason=HOST_NOT_FOUND, name=name, rtype=rtype,
                            nxdomain=True, ttl=self._negative_ttl(_nx_response(exc)))
        except (dns.exception.DNSException, OSError):
            result = Answer(RETRY, reason=TRY_AGAIN, name=name, rtype=rtype)
        else:
            if ans.rrset is None:
                result = Answer(NOTFOUND, reason=NO_DATA, name=name, rtype=rtype,
                                ttl=self._negative_ttl(ans.response))
            else:
                if rtype == "MX":
                    records = [(r.preference, r.exchange.to_text(omit_final_dot=True))
                               for r in ans.rrset]
                else:
                    records = [r.address for r in ans.rrset]
                result = Answer(OK, records, name=name, rtype=rtype, ttl=ans.rrset.ttl)
        if result.status != RETRY and self.cache_size > 0:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            ttl = min(max(result.ttl, MIN_TTL), MAX_TTL)
            self._cache[key] = (time.monotonic() + ttl, result)
        return result

    @staticmethod
    def _negative_ttl(response) -> int:
        ttl = NEGATIVE_TTL
        if response is not None:
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                    ttl = min(ttl, rrset.ttl, rrset[0].minimum)
        return ttl

    async def mx(self, domain: str) -> Answer:
        """MX records of ``domain``, sorted by preference (as the server gave ties)."""
        ans = await self.query(domain, "MX")
        if ans.ok:
            ans = Answer(OK, sorted(ans.records, key=lambda r: r[0]), name=ans.name,
                         rtype="MX", ttl=ans.ttl)
        return ans

    # -- addresses -------------------------------------------------------------------

    def _rtypes(self) -> list[str]:
        out = []
        if 4 in self.families:
            out.append("A")
        if 6 in self.families:
            out.append("AAAA")
        return out

    async def addresses(self, host: str, *, dns_lookups: bool = True,
                        native: bool = False) -> Answer:
        """A and/or AAAA records of ``host`` (per inet_protocols), DNS then native.

        OK with the addresses in DNS order, A before AAAA; otherwise the failure of the
        first record type asked (RETRY wins over NOTFOUND: if any query could not be
        answered, the host may still have addresses).
        """
        literal = _literal(host)
        if literal is not None:
            if literal.version in self.families:
                return Answer(OK, [str(literal)], name=host, rtype="A")
            return Answer(NOTFOUND, reason="address family not enabled by inet_protocols",
                          name=host, rtype="A" if literal.version == 4 else "AAAA")
        failure = None
        if dns_lookups:
            found: list[str] = []
            ttl = MAX_TTL
            for rtype in self._rtypes():
                ans = await self.query(host, rtype)
                if ans.ok:
                    found += ans.records
                    ttl = min(ttl, ans.ttl)
                elif failure is None or (ans.status == RETRY and failure.status != RETRY):
                    failure = ans
            if found:
                return Answer(OK, found, name=host, rtype="A", ttl=ttl)
            if not native:
                return failure or Answer(NOTFOUND, reason=NO_DATA, name=host, rtype="A")
        return await self._native(host, failure)

    async def _native(self, host: str, failure: Answer | None) -> Answer:
        loop = asyncio.get_running_loop()
        family = socket.AF_UNSPEC
        if self.families == {4}:
            family = socket.AF_INET
        elif self.families == {6}:
            family = socket.AF_INET6
        try:
            infos = await loop.getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if failure is not None:
                return failure
            status = RETRY if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11)) \
                else NOTFOUND
            reason = TRY_AGAIN if status == RETRY else HOST_NOT_FOUND
            return Answer(status, reason=reason, name=host, rtype="A")
        out: list[str] = []
        for fam, _t, _p, _c, sa in infos:
            if sa[0] not in out and (4 if fam == socket.AF_INET else 6) in self.families:
                out.append(sa[0])
        if not out:
            return failure or Answer(NOTFOUND, reason=NO_DATA, name=host, rtype="A")
        return Answer(OK, out, name=host, rtype="A")


def _literal(host: str):
    """The IP address of ``1.2.3.4`` / ``ipv6:...`` / ``::1``, or None for a name."""
    text = host
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _nx_response(exc):
    try:
        qnames = exc.qnames()
        return exc.responses().get(qnames[0]) if qnames else None
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
