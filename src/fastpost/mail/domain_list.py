"""Domain lists: mydestination, relay_domains, virtual_*_domains and their kind.

Postfix counterpart: src/global/domain_list.c, src/util/match_list.c, match_ops.c
(match_hostname), src/global/resolve_local.c.

Two kinds of list, as in Postfix (checked against its trivial-rewrite):

  * a *domain list* (relay_domains; Postfix's domain_list/match_hostname): a name
    matches a pattern when it is the pattern, or when one of its parent domains is:
    written bare (``example.com``) when the parameter is named in
    parent_domain_matches_subdomains (relay_domains is, by default), otherwise with a
    leading dot (``.example.com``). So ``relay_domains = .example.com`` matches nothing
    below example.com while relay_domains is parent-style — write ``example.com``.
  * a *string list* (mydestination, virtual_alias_domains, virtual_mailbox_domains;
    Postfix's string_list): exact names only, no parent domains at all.

Items, separated by commas or white space:

    example.com          a pattern as above
    !example.com         a negation: when it matches, the list does not match (the
                         first matching item decides, so a negation goes first)
    /path/file           more items, read from the file (white space or commas, # comments)
    type:table           the name is looked up (for a domain list, its parents too, in
                         the same bare or dotted form); any value is a match

Names are compared case-insensitively, with one trailing dot ignored.

``LocalDomains`` is resolve_local(): a domain is local when ``mydestination`` lists it,
or when it is an address literal (``[192.0.2.1]``, ``[IPv6:...]``) of one of this host's
``inet_interfaces`` or ``proxy_interfaces`` (``all`` means every address configured on
the machine, read from /proc).

Diagnostics: ``match()`` raises fastpost.mail.maps.MapRetry when a table cannot answer
or a /file item cannot be read (callers defer, never treat it as "not listed").
"""

from __future__ import annotations

import ipaddress

from fastpost.mail.maps import MapList, MapRetry
from fastpost.mail.maps.search import access_domain_keys, parent_matches_subdomains


def _norm(domain: str) -> str:
    d = domain.lower()
    return d[:-1] if d.endswith(".") and not d.endswith("..") else d


class DomainList:
    """One domain list (or string list) parameter, ready for ``match(domain)``."""

    def __init__(self, title: str, items: list[str], cfg=None, *, parent_style: bool = False,
                 parents: bool = True):
        self.title = title
        self.parent_style = parent_style
        self.parents = parents  # False: a string list (exact names only)
        self.cfg = cfg
        # (negated, kind, value): kind "name", "table", "file"
        self.items: list[tuple[bool, str, object]] = []
        for item in items:
            self._add(item)

    @classmethod
    def from_param(cls, cfg, name: str) -> "DomainList":
        """A domain list (parent domains match as the parameter's style says)."""
        return cls(name, cfg.get_list(name), cfg,
                   parent_style=parent_matches_subdomains(cfg, name))

    @classmethod
    def string_list(cls, cfg, name: str) -> "DomainList":
        """A string list: exact names only."""
        return cls(name, cfg.get_list(name), cfg, parents=False)

    def _keys(self, domain: str) -> list[str]:
        """The name, then (domain lists) its parents in the list's style."""
        if not self.parents:
            return [domain]
        return [k.key for k in access_domain_keys(domain, parent_style=self.parent_style)]

    def _add(self, item: str) -> None:
        from fastpost.mail.config import strip_braces

        item = strip_braces(item.strip())
        negated = False
        while item.startswith("!"):
            negated = not negated
            item = item[1:].strip()
        if not item:
            return
        if item.startswith("/"):
            self.items.append((negated, "file", item))
        elif ":" in item and not item.startswith("["):
            self.items.append((negated, "table", MapList.from_specs(self.title, [item], self.cfg)))
        else:
            self.items.append((negated, "name", _norm(item)))

    def __bool__(self) -> bool:
        return bool(self.items)


    def _file_items(self, path: str) -> list[str]:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                text = fh.read()
        except OSError as exc:
            raise MapRetry(f"{self.title}: open {path}: {exc.strerror}") from None
        out = []
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            out.extend(t for t in line.replace(",", " ").split() if t)
        return out

    def _match_item(self, kind: str, value, domain: str) -> bool:
        if kind == "name":
            return value in self._keys(domain)
        if kind == "table":
            return any(value.get(key) is not None for key in self._keys(domain))
        sub = DomainList(f"{self.title} ({value})", self._file_items(value), self.cfg,
                         parent_style=self.parent_style, parents=self.parents)
        return sub.match(domain) is True

    def match(self, domain: str) -> bool:
        """True when the list matches domain (MapRetry when it cannot tell)."""
        d = _norm(domain)
        if not d:
            return False
        for negated, kind, value in self.items:
            if self._match_item(kind, value, d):
                return not negated
        return False

    @property
    def inline(self) -> bool:
        """True when no table of the list waits (MapList.inline): match() may stand
        for ``await amatch()``."""
        v = self.__dict__.get("_inline")
        if v is None:
            v = self._inline = all(value.inline for _neg, kind, value in self.items
                                   if kind == "table")
        return v

    async def amatch(self, domain: str) -> bool:
        """match() for the event loop: network tables never block it."""
        d = _norm(domain)
        if not d:
            return False
        for negated, kind, value in self.items:
            if kind == "table":
                hit = False
                for key in self._keys(d):
                    if await value.aget(key) is not None:
                        hit = True
                        break
            else:
                hit = self._match_item(kind, value, d)
            if hit:
                return not negated
        return False


def host_addresses() -> set[str]:
    """Every IPv4 and IPv6 address configured on this machine (from /proc), plus loopback."""
    out = {"127.0.0.1", "::1"}
    try:
        with open("/proc/net/fib_trie") as fh:
            lines = fh.read().splitlines()
        for i, line in enumerate(lines):
            if "/32 host LOCAL" in line and i > 0:
                addr = lines[i - 1].strip().split()[-1]
                out.add(addr)
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as fh:
            for line in fh:
                raw = line.split()[0]
                out.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return out


def interface_addresses(cfg) -> set[str]:
    """The addresses of inet_interfaces and proxy_interfaces, as text."""
    addrs: set[str] = set()
    for param in ("inet_interfaces", "proxy_interfaces"):
        for item in cfg.get_list(param):
            item = item.strip()
            low = item.lower()
            if low == "all":
                addrs |= host_addresses()
            elif low in ("loopback-only", "localhost"):
                addrs |= {"127.0.0.1", "::1"}
            else:
                try:
                    addrs.add(str(ipaddress.ip_address(item.strip("[]"))))
                except ValueError:
                    try:  # a host name: its addresses (resolved once, at start)
                        import socket

                        for info in socket.getaddrinfo(item, None):
                            addrs.add(info[4][0])
                    except OSError:
                        pass
    return addrs


def literal_address(domain: str) -> str | None:
    """The address inside ``[1.2.3.4]`` or ``[IPv6:...]``, normalised; None otherwise."""
    if len(domain) < 3 or domain[0] != "[" or domain[-1] != "]":
        return None
    text = domain[1:-1]
    if text[:5].lower() == "ipv6:":
        text = text[5:]
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


class LocalDomains:
    """resolve_local(): is a domain this machine's final destination?"""

    def __init__(self, cfg):
        self.destinations = DomainList.string_list(cfg, "mydestination")
        self.addresses = interface_addresses(cfg)

    def literal(self, domain: str) -> bool:
        addr = literal_address(domain)
        return addr is not None and addr in self.addresses

    def match(self, domain: str) -> bool:
        if domain.startswith("["):
            return self.literal(domain)
        return self.destinations.match(domain)

    @property
    def inline(self) -> bool:
        return self.destinations.inline

    async def amatch(self, domain: str) -> bool:
        if domain.startswith("["):
            return self.literal(domain)
        return await self.destinations.amatch(domain)


__all__ = ["DomainList", "LocalDomains", "host_addresses", "interface_addresses",
           "literal_address"]
