"""DNS lookups for daemons: dnspython's asyncio resolver behind a shared cache.

Postfix counterpart: src/dns/dns_lookup.c (dns_lookup, dns_lookup_l), which wraps
the system resolver; smtpd's DNS lists and unknown-domain checks use it.

    dns = DnsClient.from_config(cfg)               # one per process
    r = dns.cached(name, "MX")                     # DnsResult or None (never waits)
    r = await dns.lookup(name, "MX")               # DnsResult
    r.status      "ok" | "notfound" | "retry"
    r.records     list of strings: A/AAAA addresses, "pref host" for MX, host
                  names for NS/PTR/CNAME, the joined text of each TXT record
    r.nxdomain    True when the name does not exist at all (vs. no such record)
    r.reason      text for logs ("Host not found", "Host not found, try again", ...)

Three outcomes, as Postfix's DNS_OK / DNS_NOTFOUND (NXDOMAIN or no data) / DNS_RETRY
(time-out, SERVFAIL, REFUSED, network error). Callers must treat "retry" as a
temporary failure: never as "not found" (that would accept or hard-reject what DNS
could not confirm).

Every lookup goes to the name servers of ``fastpost_dns_servers`` (``host`` or
``host:port`` or ``[ipv6]:port``, in order) or, when that is empty, of
/etc/resolv.conf; search domains are never applied (names are absolute). Each query
has a deadline of ``fastpost_dns_timeout`` in all (tries and servers included).
Answers are cached for their TTL (negative answers for the SOA minimum, at most
``fastpost_dns_negative_ttl``), up to ``fastpost_dns_cache_size`` entries per
process; concurrent lookups of the same name and type share one query, which runs
in its own Task (so the caller may be cancelled without losing it for the others).
``disable_dns_lookups = yes`` makes every lookup "notfound" without asking.

Parameters: fastpost_dns_servers, fastpost_dns_timeout, fastpost_dns_cache_size,
fastpost_dns_negative_ttl, disable_dns_lookups.
Diagnostics: never raises for a lookup; a malformed name is "notfound" with a reason.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import secrets
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from fastpost.mail import dnswire

__all__ = ["DnsClient", "DnsResult", "OK", "NOTFOUND", "RETRY", "reverse_name"]

OK = "ok"
NOTFOUND = "notfound"
RETRY = "retry"

#: TTL bounds for cached answers (seconds).
MIN_TTL = 1
MAX_TTL = 86400


@dataclass(slots=True)
class DnsResult:
    """The outcome of one lookup (module docstring)."""

    status: str
    records: list = field(default_factory=list)
    nxdomain: bool = False
    reason: str = ""
    ttl: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK


def reverse_name(addr: str, zone: str = "") -> str:
    """Return the DNS list query name of an address: ``4.3.2.1.zone`` (IPv6 nibbles)."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        labels = list(reversed(str(ip).split(".")))
    else:
        labels = list(reversed(ip.exploded.replace(":", "")))
    name = ".".join(labels)
    return f"{name}.{zone}" if zone else name


def _parse_server(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        close = text.index("]")
        host = text[1:close]
        rest = text[close + 1:]
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _rdata_text(rdtype: str, rdata) -> str:
    if rdtype in ("A", "AAAA"):
        return rdata.address
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype in ("NS", "PTR", "CNAME"):
        return rdata.target.to_text(omit_final_dot=True)
    return rdata.to_text()


_TIMEOUT = object()


class DnsClient:
    """Cached, coalesced asynchronous lookups (module docstring)."""

    def __init__(self, servers: list[str] | None = None, *, timeout: float = 10.0,
                 cache_size: int = 10000, negative_ttl: int = 300, disabled: bool = False):
        self.timeout = timeout
        self.cache_size = cache_size
        self.negative_ttl = negative_ttl
        self.disabled = disabled
        self.servers = [_parse_server(s) for s in servers or []]
        self._resolver = None
        self._cache: OrderedDict = OrderedDict()
        self._inflight: dict = {}
        self.queries = 0  # queries sent (cache misses, after coalescing)
        #: Our own UDP path for the common types (fastpost.mail.dnswire); dnspython
        #: for the rest, for truncated answers, and when this is False.
        self.fast = os.environ.get("FASTPOST_DNS_DNSPYTHON", "") == ""  # A/B benchmarks
        self._system_servers = None

    @classmethod
    def from_config(cls, cfg) -> "DnsClient":
        return cls(cfg.get_list("fastpost_dns_servers"),
                   timeout=float(cfg.get_time("fastpost_dns_timeout")),
                   cache_size=cfg.get_int("fastpost_dns_cache_size"),
                   negative_ttl=cfg.get_time("fastpost_dns_negative_ttl"),
                   disabled=cfg.get_bool("disable_dns_lookups"))

    def _get_resolver(self):
        if self._resolver is None:
            if self.servers:
                r = dns.asyncresolver.Resolver(configure=False)
                r.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in self.servers]
            else:
                r = dns.asyncresolver.Resolver()
                r.search = []
            r.lifetime = self.timeout
            r.timeout = max(1.0, self.timeout / 2)
            r.cache = None
            r.retry_servfail = False
            self._resolver = r
        return self._resolver

    # -- cache -----------------------------------------------------------------------

    def cached(self, name: str, rdtype: str) -> DnsResult | None:
        """Return a cached result (or the "disabled" answer) without waiting, or None."""
        if self.disabled:
            return DnsResult(NOTFOUND, reason="DNS lookups are disabled")
        key = (name.lower().rstrip("."), rdtype)
        hit = self._cache.get(key)
        if hit is None:
            return None
        expires, result = hit
        if expires < time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return result

    def _store(self, key, result: DnsResult) -> None:
        if result.status == RETRY or self.cache_size <= 0:
            return
        ttl = min(max(result.ttl, MIN_TTL), MAX_TTL)
        self._cache[key] = (time.monotonic() + ttl, result)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        self._cache.clear()

    # -- lookups ---------------------------------------------------------------------

    async def lookup(self, name: str, rdtype: str) -> DnsResult:
        """Return the DnsResult for (name, rdtype); see the module docstring."""
        hit = self.cached(name, rdtype)
        if hit is not None:
            return hit
        key = (name.lower().rstrip("."), rdtype)
        task = self._inflight.get(key)
        if task is None:
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._query(key))
            self._inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))
        return await asyncio.shield(task)

    async def _query(self, key) -> DnsResult:
        name, rdtype = key
        self.queries += 1
        code = dnswire.TYPES.get(rdtype)
        if code is not None and self.fast:
            try:
                result = await self._fast_query(name, code)
            except dnswire.WireError:
                result = None  # a name our wire code does not write: dnspython's
            if result is not None:
                self._store(key, result)
                return result
        return await self._dnspython_query(key)

    # -- the hot path: one UDP socket per query, our own wire code ----------------------

    def _server_list(self) -> list[tuple[str, int]]:
        if self.servers:
            return self.servers
        if self._system_servers is None:
            r = self._get_resolver()
            self._system_servers = [(str(ns), int(getattr(r, "port", 53)))
                                    for ns in r.nameservers if isinstance(ns, str)]
        return self._system_servers

    async def _fast_query(self, name: str, rdtype: int) -> DnsResult | None:
        """Ask the servers in turn over UDP. None hands the query to dnspython (a
        truncated answer: it retries over TCP)."""
        servers = list(self._server_list())
        if not servers:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        per_try = max(1.0, self.timeout / 2)
        i = 0
        while servers:
            left = deadline - loop.time()
            if left <= 0:
                break
            host, port = servers[i % len(servers)]
            qid = secrets.randbits(16)
            query = dnswire.build_query(qid, name, rdtype)
            try:
                answer = await self._exchange(loop, host, port, query, qid, name, rdtype,
                                              min(per_try, left))
            except OSError:
                servers.pop(i % len(servers))  # unreachable: as a server failure
                continue
            if answer is _TIMEOUT:
                i += 1
                continue
            if answer.truncated:
                return None
            rc = answer.rcode
            if rc == 0:
                if answer.records:
                    return DnsResult(OK, answer.records, ttl=answer.ttl)
                return DnsResult(NOTFOUND, reason="No address associated with hostname",
                                 ttl=self._negative(answer))
            if rc == 3:
                return DnsResult(NOTFOUND, nxdomain=True, reason="Host not found",
                                 ttl=self._negative(answer))
            servers.pop(i % len(servers))  # SERVFAIL, REFUSED, ...: the next server
        return DnsResult(RETRY, reason="Host not found, try again")

    def _negative(self, answer) -> int:
        if answer.negative_ttl is None:
            return self.negative_ttl
        return min(self.negative_ttl, answer.negative_ttl)

    @staticmethod
    async def _exchange(loop, host, port, query, qid, name, rdtype, timeout):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((host, port))  # a connected socket takes answers from there only
            sock.send(query)
            fut = loop.create_future()
            fd = sock.fileno()

            def readable():
                while not fut.done():
                    try:
                        data = sock.recv(65535)
                    except (BlockingIOError, InterruptedError):
                        return
                    except OSError as exc:
                        fut.set_exception(exc)
                        return
                    try:
                        fut.set_result(dnswire.parse_response(data, qid, name, rdtype))
                    except dnswire.Mismatch:
                        continue  # not our answer: keep waiting
                    except dnswire.WireError as exc:
                        fut.set_exception(OSError(errno.EBADMSG, str(exc)))

            loop.add_reader(fd, readable)
            timer = loop.call_later(timeout, lambda: fut.done() or fut.set_result(_TIMEOUT))
            try:
                return await fut
            finally:
                timer.cancel()
                loop.remove_reader(fd)
        finally:
            sock.close()

    async def _dnspython_query(self, key) -> DnsResult:
        name, rdtype = key
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            return DnsResult(NOTFOUND, reason=f"malformed name: {exc}")
        try:
            answer = await self._get_resolver().resolve(qname, rdtype, search=False,
                                                        raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            result = DnsResult(NOTFOUND, nxdomain=True, reason="Host not found",
                               ttl=self._negative_ttl(exc))
        except dns.resolver.NoNameservers:
            result = DnsResult(RETRY, reason="Host not found, try again")
        except dns.exception.Timeout:
            result = DnsResult(RETRY, reason="Host not found, try again")
        except (dns.exception.DNSException, OSError) as exc:
            result = DnsResult(RETRY, reason=f"Host not found, try again ({type(exc).__name__})")
        else:
            if answer.rrset is None:
                result = DnsResult(NOTFOUND, reason="No address associated with hostname",
                                   ttl=self._negative_ttl_response(answer.response))
            else:
                records = [_rdata_text(rdtype, r) for r in answer.rrset]
                result = DnsResult(OK, records, ttl=answer.rrset.ttl)
        self._store(key, result)
        return result

    def _negative_ttl(self, exc) -> int:
        try:
            response = exc.response(exc.qnames()[0]) if exc.qnames() else None
        except (KeyError, IndexError, AttributeError):
            response = None
        return self._negative_ttl_response(response)

    def _negative_ttl_response(self, response) -> int:
        ttl = self.negative_ttl
        if response is not None:
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                    ttl = min(ttl, rrset.ttl, rrset[0].minimum)
        return ttl
