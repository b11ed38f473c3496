"""``cidr:`` tables: IPv4 and IPv6 network prefixes, first match wins.

Postfix counterpart: src/util/dict_cidr.c; syntax cidr_table(5).

    192.168.0.0/16    result     a network (host bits must be zero)
    10.1.2.3          result     one address (/32, /128)
    [2001:db8::]/32   result     IPv6, with or without brackets
    !10.0.0.0/8       result     every address of that family outside the network
    if 10.0.0.0/8  ...  endif    (and "if !net/len"), nestable

The key must be a plain IPv4 or IPv6 address (no brackets, no leading zeros in IPv4
octets); anything else is not found.

Speed: consecutive plain rules are indexed by prefix length (a dict per length from
network to the first rule), so a lookup costs one dict probe per distinct prefix length
instead of a scan; negated rules and if-blocks keep their place in the order.

Diagnostics: a bad rule (bad address, bad mask, non-zero host bits, missing result)
is a warning naming file and line, and the rule is skipped, as Postfix does; an
unreadable file is a MapRetry.
"""

from __future__ import annotations

import ipaddress
from socket import AF_INET, AF_INET6, inet_pton

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import FileMap
from fastpost.mail.maps._patterns import RuleBuilder, keyword
from fastpost.mail.maps.source import logical_lines


def parse_key(key: str):
    """Return (version, int) of an address key, or None.

    inet_pton() decides, as in Postfix: no leading zeros in IPv4 octets, no brackets,
    no IPv6 zone.
    """
    try:
        if ":" in key:
            return 6, int.from_bytes(inet_pton(AF_INET6, key), "big")
        return 4, int.from_bytes(inet_pton(AF_INET, key), "big")
    except (OSError, ValueError):
        return None


class _Net:
    __slots__ = ("version", "network", "plen", "shift")

    def __init__(self, version: int, network: int, plen: int):
        self.version = version
        self.network = network
        self.plen = plen
        self.shift = (32 if version == 4 else 128) - plen

    def contains(self, addr) -> bool:
        return addr[0] == self.version and (addr[1] >> self.shift) == (self.network >> self.shift)


def parse_net(text: str) -> _Net:
    """Parse ``addr[/len]`` (IPv6 optionally in brackets); ValueError with Postfix's words."""
    addr_text, slash, mask = text.partition("/")
    if addr_text.startswith("[") and addr_text.endswith("]"):
        addr_text = addr_text[1:-1]
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise ValueError(f'bad network value in "{text}"') from None
    bits = 32 if addr.version == 4 else 128
    if slash:
        if not mask.isdigit():
            raise ValueError(f'bad mask value in "{text}"')
        plen = int(mask)
        if plen > bits:
            raise ValueError(f'bad mask length in "{text}"')
    else:
        plen = bits
    value = int(addr)
    if plen < bits and value & ((1 << (bits - plen)) - 1):
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False).network_address
        raise ValueError(f'non-null host address bits in "{text}", perhaps you should use '
                         f'"{net}/{plen}" instead')
    return _Net(addr.version, value, plen)


class _Index:
    """A run of plain rules: per (version, prefix length) a dict network -> rule."""

    __slots__ = ("lengths", "tables", "results", "first")

    def __init__(self):
        self.lengths: list[tuple[int, int, int]] = []   # (version, plen, shift)
        self.tables: dict[tuple[int, int], dict[int, int]] = {}
        self.results: list[str] = []

    def add(self, net: _Net, result: str) -> None:
        k = (net.version, net.plen)
        table = self.tables.get(k)
        if table is None:
            table = self.tables[k] = {}
            self.lengths.append((net.version, net.plen, net.shift))
        table.setdefault(net.network >> net.shift, len(self.results))
        self.results.append(result)

    def find(self, addr) -> str | None:
        version, value = addr
        best = -1
        tables = self.tables
        for v, plen, shift in self.lengths:
            if v != version:
                continue
            pos = tables[(v, plen)].get(value >> shift)
            if pos is not None and (best < 0 or pos < best):
                best = pos
        return self.results[best] if best >= 0 else None


class _Cond:
    __slots__ = ("net", "negate", "result", "items", "lineno")

    def __init__(self, net, negate, result=None, items=None, lineno=0):
        self.net, self.negate, self.result, self.items = net, negate, result, items
        self.lineno = lineno


def _compile(items: list) -> list:
    """Group runs of plain rules into indexes; keep negations and blocks as they are."""
    out: list = []
    for item in items:
        if isinstance(item, _Cond) and item.items is None and not item.negate:
            if not out or not isinstance(out[-1], _Index):
                out.append(_Index())
            out[-1].add(item.net, item.result)
        else:
            if item.items is not None:
                item.items = _compile(item.items)
            out.append(item)
    return out


def _find(items: list, addr) -> str | None:
    for item in items:
        if isinstance(item, _Index):
            found = item.find(addr)
            if found is not None:
                return found
            continue
        # A negated network matches only addresses of its own family.
        hit = addr[0] == item.net.version and item.net.contains(addr) != item.negate
        if not hit:
            continue
        if item.items is None:
            return item.result
        found = _find(item.items, addr)
        if found is not None:
            return found
    return None


class CidrMap(FileMap):
    type = "cidr"
    class_flags = _base.PATTERN

    def _load(self, text: str) -> None:
        builder = RuleBuilder(self.warn)
        for lineno, line in logical_lines(text, self.warn):
            kind, rest = keyword(line)
            if kind == "endif":
                builder.pop(lineno)
                continue
            negate = rest.startswith("!")
            if negate:
                rest = rest[1:]
            if kind == "if":
                pattern, result = rest, ""
            else:
                parts = rest.split(None, 1)
                pattern = parts[0] if parts else ""
                result = parts[1].strip() if len(parts) > 1 else ""
            try:
                net = parse_net(pattern)
            except ValueError as exc:
                self.warn(lineno, f"{exc}: skipping this rule")
                continue
            if kind == "if":
                block = _Cond(net, negate, items=[], lineno=lineno)
                builder.push(block)
                continue
            if not result:
                self.warn(lineno, f'no lookup result: "{line}": skipping this rule')
                continue
            builder.add(_Cond(net, negate, result))
        self._items = _compile(builder.finish())

    def _lookup(self, key: str) -> str | None:
        addr = parse_key(key)
        if addr is None:
            return None
        return _find(self._items, addr)
