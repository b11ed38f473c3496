"""Host and domain lists as smtpd matches them: mynetworks, authorized_*_hosts,
mydestination, relay_domains.

Postfix counterpart: src/global/namadr_list.c, domain_list.c, match_list.c,
src/util/match_ops.c.

HostList (namadr_list): each element is an IPv4 or IPv6 address or network
(``192.0.2.0/24``, ``[2001:db8::]/32``, ``[::1]``), a host or domain name (matched
against the client's verified name; ``example.com`` also matches its subdomains when
the parameter is in parent_domain_matches_subdomains, ``.example.com`` matches only
subdomains), ``/file/name`` (its lines are elements), or ``!element`` (a match means
"no" and stops the search). The first match decides.

DomainList (domain_list): the same for domain names only.

``type:table`` elements are looked up with fastpost.mail.maps: a host list asks the
client's name (then its parent domains when parent matching applies) and its address;
a domain list asks the domain, then its parents. Any value found is a match (the value
itself is not used, as in Postfix's match lists).

Parameters: parent_domain_matches_subdomains (the caller says whether it applies).
Diagnostics: ValueError naming the element for a malformed address or network; an
unreadable /file is an OSError naming the file (the caller makes both fatal);
maps.MapRetry from match() when a table cannot answer now (callers turn it into a
temporary failure, never into "no match").
"""

from __future__ import annotations

import functools
import ipaddress

__all__ = ["HostList", "DomainList", "parent_matching"]


def parent_matching(parameter: str, parent_domain_matches_subdomains: str) -> bool:
    """True when ``parameter`` is in the parent_domain_matches_subdomains list."""
    words = parent_domain_matches_subdomains.replace(",", " ").split()
    return parameter in words


def _expand_files(elements: list[str]) -> list[str]:
    out: list[str] = []
    for element in elements:
        negate = element.startswith("!")
        body = element[1:] if negate else element
        if body.startswith("/"):
            with open(body, encoding="utf-8") as fh:
                for line in fh:
                    line = line.split("#", 1)[0]
                    for word in line.replace(",", " ").split():
                        out.append(("!" if negate else "") + word)
        else:
            out.append(element)
    return out


def _domain_matches(pattern: str, name: str, parent: bool) -> bool:
    """Match one domain pattern against a (lower-case, dot-stripped) name."""
    if pattern.startswith("."):
        return name.endswith(pattern)
    if name == pattern:
        return True
    return parent and name.endswith("." + pattern)


def _parents(name: str) -> list[str]:
    """Return the parent domains of name, nearest first (a.b.c -> b.c, c)."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels))]


def _open_table(spec: str, cfg):
    from fastpost.mail import maps

    return maps.open_map(spec, cfg)


def _table_has_name(table, name: str, parent: bool) -> bool:
    if table.get(name) is not None:
        return True
    if table.is_pattern:
        return False
    for up in _parents(name):
        if table.get(up if parent else "." + up) is not None:
            return True
    return False


class HostList:
    """A namadr list: addresses, networks and names (module docstring)."""

    def __init__(self, elements: list[str], *, parent: bool = False, cfg=None):
        self.parent = parent
        self.unsupported: list[str] = []  # kept for callers; tables are supported now
        self._rules: list[tuple[bool, str, object]] = []
        for element in _expand_files(elements):
            negate = element.startswith("!")
            body = element[1:] if negate else element
            if not body:
                continue
            if _is_table(body):
                self._rules.append((negate, "table", _open_table(body, cfg)))
                continue
            net = self._network(body)
            if net is not None:
                self._rules.append((negate, "net", net))
            else:
                self._rules.append((negate, "name", body.lower().rstrip(".")))
        #: Answers of a list without tables, by (name, addr): they cannot change, and
        #: every session asks several lists about the same few clients.
        self._memo: dict | None = None if any(k == "table" for _n, k, _v in self._rules) else {}

    @property
    def memo(self) -> dict | None:
        """match()'s remembered answers by (name, addr), None when the list holds a
        table (its answers may change); the same dict for the life of the list."""
        return self._memo

    @staticmethod
    def _network(text: str):
        """Return an ip_network for an address/network element, None for a name."""
        t = text
        prefix = ""
        if t.startswith("["):
            close = t.find("]")
            if close < 0:
                raise ValueError(f"bad address pattern: {text}")
            prefix = t[close + 1:]
            t = t[1:close]
            if prefix and not prefix.startswith("/"):
                raise ValueError(f"bad address pattern: {text}")
            return ipaddress.ip_network(t + prefix, strict=False) if _is_ip(t) else _bad(text)
        if "/" in t:
            addr, _, bits = t.partition("/")
            if not _is_ip(addr) or not bits.isdigit():
                raise ValueError(f"bad net/mask pattern: {text}")
            net = ipaddress.ip_network(t, strict=False)
            if net.network_address != ipaddress.ip_address(addr):
                raise ValueError(f"non-null host address bits in \"{text}\", "
                                 f"perhaps you should use \"{net}\" instead")
            return net
        if _is_ip(t):
            return ipaddress.ip_network(t)
        return None

    @property
    def fixed(self) -> bool:
        """True when the list has no table: its answer for a client never changes."""
        return self._memo is not None

    def match(self, name: str, addr: str) -> bool:
        """Return True when the client (verified name, address) matches the list."""
        memo = self._memo
        if memo is None:
            return self._match(name, addr)
        key = (name, addr)
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= 4096:
                memo.clear()
            hit = memo[key] = self._match(name, addr)
        return hit

    def _match(self, name: str, addr: str) -> bool:
        ip = _client_ip(addr) if addr else None
        lname = name.lower().rstrip(".") if name and name != "unknown" else ""
        for negate, kind, value in self._rules:
            if kind == "net":
                hit = ip is not None and ip.version == value.version and ip in value
            elif kind == "table":
                hit = ((bool(lname) and _table_has_name(value, lname, self.parent))
                       or (bool(addr) and value.get(str(ip) if ip is not None else addr) is not None))
            else:
                hit = bool(lname) and _domain_matches(value, lname, self.parent)
            if hit:
                return not negate
        return False

    def __bool__(self) -> bool:
        return bool(self._rules)


@functools.lru_cache(maxsize=4096)
def _client_ip(addr: str):
    """The client's address as an ip_address (IPv4-mapped IPv6 as IPv4), or None.

    Cached: every session of a client is matched against several lists (mynetworks,
    local_header_rewrite_clients, ...) and parsing was 2-3% of smtpd's CPU under load.
    """
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _is_table(text: str) -> bool:
    """True for a ``type:name`` lookup-table element (not an IPv6 address)."""
    kind, sep, _ = text.partition(":")
    if not sep or not kind or not kind[0].isalpha() or not kind.replace("_", "").isalnum():
        return False
    return not _is_ip(text.split("/", 1)[0])


def _bad(text: str):
    raise ValueError(f"bad address pattern: {text}")


class DomainList:
    """A domain_list: names, patterns and tables (module docstring)."""

    def __init__(self, elements: list[str], *, parent: bool = False, cfg=None):
        self.parent = parent
        self.unsupported: list[str] = []  # kept for callers; tables are supported now
        self._rules: list[tuple[bool, object]] = []
        for element in _expand_files(elements):
            negate = element.startswith("!")
            body = element[1:] if negate else element
            if not body:
                continue
            if _is_table(body):
                self._rules.append((negate, _open_table(body, cfg)))
                continue
            self._rules.append((negate, body.lower().rstrip(".")))

    def match(self, domain: str) -> bool:
        """Return True when ``domain`` matches the list (MapRetry: ask again later)."""
        name = domain.lower().rstrip(".")
        if not name:
            return False
        for negate, pattern in self._rules:
            if isinstance(pattern, str):
                hit = _domain_matches(pattern, name, self.parent)
            else:
                hit = _table_has_name(pattern, name, self.parent)
            if hit:
                return not negate
        return False

    def __bool__(self) -> bool:
        return bool(self._rules)
