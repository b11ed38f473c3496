"""Where a delivery goes: next-hop syntax, MX hosts, addresses, in Postfix's order.

Postfix counterpart: src/smtp/smtp_connect.c (destination parsing, the loop over
destinations and fallback relays), src/smtp/smtp_addr.c (MX hosts, host addresses,
preference order, randomization, "loops back to myself"), src/global/mail_addr...

Next hops (the DeliveryRequest's ``nexthop``; a list separated by commas or white
space is tried in order, as Postfix 3.5+ does):

    example.com         MX lookup; without MX records, the domain's own addresses
    example.com:587     the same, every host on port 587
    [mx.example.com]    no MX lookup: the host's addresses, port smtp_tcp_port
    [192.0.2.1]:2525    an address literal ([ipv6:2001:db8::1] too)
    inet:host:port      LMTP (and SMTP) TCP form, no MX lookup in LMTP mode
    unix:/path          LMTP over a UNIX-domain socket

LMTP never looks up MX records (Postfix's lmtp does not). ``route()`` turns one
destination into Targets (host name, address, port, preference), best first: MX
records sorted by preference, equal preferences shuffled (smtp_randomize_addresses),
each host's addresses in A then AAAA order, shuffled likewise, ordered by
smtp_address_preference; MX hosts at or behind our own preference are dropped (our
own addresses: inet_interfaces, proxy_interfaces) and if none is left the mail
"loops back to myself".

Failures are Problems with Postfix's codes and texts: a null MX (RFC 7505) is 5.1.0
"Domain X does not accept mail (nullMX)"; an unknown domain or host is 5.4.4 with the
resolver's text; a lookup that could not be answered is 4.4.3 (deferred, never
"not found"); no MX host with an address is 5.4.4 (4.4.4 with
smtp_defer_if_no_mx_address_found), after the warning "no MX host for X has a valid
address record"; a loop is 5.4.6.

Parameters: smtp_tcp_port / lmtp_tcp_port, smtp_randomize_addresses,
smtp_address_preference, smtp_host_lookup, smtp_dns_support_level,
disable_dns_lookups, smtp_defer_if_no_mx_address_found, inet_interfaces,
proxy_interfaces, inet_protocols, myhostname (the relay= name of UNIX sockets).
Diagnostics: parse_nexthop raises ValueError for a malformed next hop (the agent
defers with 4.3.5 and says why).
"""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass

from fastpost.daemons.smtp import dns
from fastpost.util import log

__all__ = ["Destination", "Target", "Problem", "Router", "parse_nexthop", "port_number"]

#: Service names a chrooted agent may not be able to look up (no /etc/services).
_WELL_KNOWN_PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "submissions": 465,
                     "lmtp": 24, "urd": 465}


def port_number(text: str) -> int:
    """A port number or service name -> number (ValueError when unknown)."""
    text = text.strip()
    if text.isdigit():
        port = int(text)
        if 0 < port < 65536:
            return port
        raise ValueError(f"bad port number \"{text}\"")
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        pass
    if text.lower() in _WELL_KNOWN_PORTS:
        return _WELL_KNOWN_PORTS[text.lower()]
    raise ValueError(f"unknown service \"{text}\"")


@dataclass(frozen=True, slots=True)
class Destination:
    """One next-hop destination, parsed."""

    text: str  # as written (TLS policy and connection cache keys, log texts)
    host: str  # domain or host name without brackets; the path for unix:
    port: int  # 0 for unix:
    mx: bool  # MX lookup wanted
    unix: bool = False  # LMTP over a UNIX-domain socket

    @property
    def label(self) -> str:
        """The form Postfix uses in texts about the destination (the domain or host)."""
        return self.host


@dataclass(frozen=True, slots=True)
class Target:
    """One address to connect to."""

    host: str  # MX host or next-hop host (relay= name)
    addr: str  # IP address, or the socket path for unix:
    port: int  # 0 for unix:
    pref: int  # MX preference (0 without MX)
    dest: Destination

    @property
    def unix(self) -> bool:
        return self.dest.unix

    @property
    def family(self) -> int:
        if self.dest.unix:
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.addr else socket.AF_INET

    @property
    def name_addr(self) -> str:
        """``host[addr]`` as Postfix writes a server in texts."""
        return f"{self.host}[{self.addr}]"

    @property
    def relay(self) -> str:
        """The relay= field: ``host[addr]:port`` (``host[path]`` for UNIX sockets)."""
        if self.dest.unix:
            return f"{self.host}[{self.addr}]"
        return f"{self.host}[{self.addr}]:{self.port}"

    @property
    def endpoint(self) -> str:
        """``addr:port`` or the path: the connection cache's endpoint label."""
        return self.addr if self.dest.unix else f"[{self.addr}]:{self.port}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a destination yields no address (Postfix's dsn and text)."""

    dsn: str
    text: str

    @property
    def soft(self) -> bool:
        return self.dsn.startswith("4")


def _split_list(nexthop: str) -> list[str]:
    out = []
    for part in nexthop.replace(",", " ").split():
        if part:
            out.append(part)
    return out


def parse_nexthop(nexthop: str, *, lmtp: bool, default_port: int) -> list[Destination]:
    """Parse a next hop (a list is allowed) into Destinations; ValueError if malformed."""
    dests = []
    items = _split_list(nexthop)
    if not items:
        raise ValueError("empty next-hop destination")
    for item in items:
        dests.append(_parse_one(item, lmtp=lmtp, default_port=default_port))
    return dests


def _parse_one(text: str, *, lmtp: bool, default_port: int) -> Destination:
    rest = text
    low = rest.lower()
    if low.startswith("unix:"):
        path = rest[5:]
        if not path:
            raise ValueError(f"bad next-hop destination \"{text}\": no socket path")
        return Destination(text, path, 0, False, True)
    if low.startswith("inet:"):
        rest = rest[5:]
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise ValueError(f"bad next-hop destination \"{text}\": missing \"]\"")
        host = rest[1:close]
        tail = rest[close + 1:]
        mx = False
    else:
        host, sep, tail = rest.partition(":")
        tail = sep + tail
        mx = not lmtp  # LMTP never looks up MX records
    if tail:
        if not tail.startswith(":") or not tail[1:]:
            raise ValueError(f"bad next-hop destination \"{text}\": bad port")
        port = port_number(tail[1:])
    else:
        port = default_port
    if not host:
        raise ValueError(f"bad next-hop destination \"{text}\": no host")
    if mx and _is_literal(host):
        mx = False
    return Destination(text, host, port, mx)


def _is_literal(host: str) -> bool:
    text = host[5:] if host.lower().startswith("ipv6:") else host
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def own_addresses(inet_interfaces, proxy_interfaces) -> frozenset:
    """Our own IP addresses, for the MX loop check (computed before chroot)."""
    out = set()
    names = list(inet_interfaces) + list(proxy_interfaces)
    if any(n.lower() == "all" for n in inet_interfaces):
        try:
            from fastpost.util.ifaddrs import interface_addresses

            out.update(str(i.ip) for i in interface_addresses())
        except OSError:
            pass
    for name in names:
        low = name.lower()
        if low == "all":
            continue
        if low in ("loopback-only", "localhost"):
            out.update({"127.0.0.1", "::1"})
            continue
        text = name.strip("[]")
        try:
            out.add(str(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        try:
            for info in socket.getaddrinfo(text, None, type=socket.SOCK_STREAM):
                out.add(info[4][0])
        except OSError:
            pass
    return frozenset(out)


class Router:
    """Turns Destinations into Targets (module docstring)."""

    def __init__(self, settings, lookups: dns.Lookups, own: frozenset = frozenset(),
                 rng: random.Random | None = None):
        self.s = settings
        self.lookups = lookups
        self.own = own
        self.rng = rng or random.Random()

    def _shuffle_ties(self, items: list, key) -> list:
        """Shuffle runs of equal key (smtp_randomize_addresses), keep the key order."""
        if not self.s.randomize_addresses or len(items) < 2:
            return items
        out, run = [], []
        for item in items:
            if run and key(run[0]) != key(item):
                self.rng.shuffle(run)
                out += run
                run = []
            run.append(item)
        self.rng.shuffle(run)
        return out + run

    def _order_addresses(self, addrs: list[str]) -> list[str]:
        if self.s.randomize_addresses and len(addrs) > 1:
            addrs = list(addrs)
            self.rng.shuffle(addrs)
        pref = self.s.address_preference
        if pref == "ipv4":
            addrs = sorted(addrs, key=lambda a: ":" in a)
        elif pref == "ipv6":
            addrs = sorted(addrs, key=lambda a: ":" not in a)
        return addrs

    async def route(self, dest: Destination) -> tuple[list[Target], Problem | None]:
        """Targets for ``dest``, best first, or the Problem that left none."""
        if dest.unix:
            return [Target(self.s.myhostname, dest.host, 0, 0, dest)], None
        if dest.mx and self.s.dns_lookups:
            return await self._route_mx(dest)
        return await self._route_host(dest, dest.host, 0)

    async def _route_host(self, dest: Destination, host: str, pref: int):
        ans = await self.lookups.addresses(host, dns_lookups=self.s.dns_lookups,
                                           native=self.s.native_lookups)
        if not ans.ok:
            return [], _lookup_problem(ans)
        if host.lower().startswith("ipv6:") and _is_literal(host):
            host = host[5:]  # [ipv6:2001:db8::1] is named 2001:db8::1[2001:db8::1]
        return [Target(host, a, dest.port, pref, dest)
                for a in self._order_addresses(ans.records)], None

    async def _route_mx(self, dest: Destination):
        domain = dest.host
        ans = await self.lookups.mx(domain)
        if ans.status == dns.RETRY:
            return [], _lookup_problem(ans)
        if ans.status == dns.NOTFOUND:
            # No MX records (or no such name): the domain's own addresses.
            return await self._route_host(dest, domain, 0)
        records = ans.records
        if any(host in (".", "") for _, host in records):
            if len(records) == 1:
                return [], Problem("5.1.0", f"Domain {domain} does not accept mail (nullMX)")
            records = [r for r in records if r[1] not in (".", "")]
        records = self._shuffle_ties(records, key=lambda r: r[0])
        targets: list[Target] = []
        failure = None
        for pref, host in records:
            got = await self.lookups.addresses(host, dns_lookups=True,
                                               native=self.s.native_lookups)
            if not got.ok:
                if failure is None or (got.status == dns.RETRY and failure.status != dns.RETRY):
                    failure = got
                continue
            for addr in self._order_addresses(got.records):
                targets.append(Target(host, addr, dest.port, pref, dest))
        if not targets:
            log.warn("no MX host for %s has a valid address record", domain)
            if failure is not None and failure.status == dns.RETRY:
                return [], _lookup_problem(failure)
            if self.s.defer_if_no_mx_address_found:
                text = dns.error_text(failure) if failure else f"no MX host for {domain} has a valid address record"
                return [], Problem("4.4.4", text)
            return [], _lookup_problem(failure) if failure else \
                Problem("5.4.4", f"no MX host for {domain} has a valid address record")
        if self.own:
            mine = [t.pref for t in targets if t.addr in self.own]
            if mine:
                best = min(mine)
                targets = [t for t in targets if t.pref < best]
                if not targets:
                    return [], Problem("5.4.6", f"mail for {domain} loops back to myself")
        return targets, None


def _lookup_problem(ans: dns.Answer) -> Problem:
    dsn = "4.4.3" if ans.status == dns.RETRY else "5.4.4"
    return Problem(dsn, dns.error_text(ans))
