"""Key search strategies: which keys a caller asks a table, in which order.

Postfix counterparts: src/smtpd/smtpd_check.c (check_mail_access,
check_domain_access, check_addr_access), src/global/mail_addr_find.c (canonical,
virtual, generic, relocated, bcc), src/trivial-rewrite/transport.c (transport_maps),
src/local/alias.c (aliases), src/global/resolve_local.c (is a domain local?).

Every strategy is split in two: a *key generator* (pure, tested on its own) returning
``Key(key, partial)`` items, and a *finder* that asks a ``MapList`` each key in turn
and stops at the first table that knows it. ``partial`` keys (a domain taken from an
address, a parent domain, a shortened IP address, ``user@``) are not asked of pattern
tables (regexp, pcre, cidr), which only ever see whole keys. A temporary failure
(MapRetry) stops the search and propagates: callers answer 4xx or defer, never "not
found". Finders come in a synchronous form and an ``a``-prefixed coroutine form.

Orders:

access maps (check_*_access):
  address   ``user+ext@domain``, ``user@domain``, the domain and its parents (see
            below), ``user+ext@``, ``user@``; the null sender is looked up as
            ``smtpd_null_access_lookup_key`` (``<>``)
  domain    ``sub.example.com``, then parents: ``example.com``, ``com`` when the
            table's parameter is in ``parent_domain_matches_subdomains`` (default
            for smtpd_access_maps), otherwise ``.example.com``, ``.com``
  IPv4      ``1.2.3.4``, ``1.2.3``, ``1.2``, ``1``; IPv6 shortened at ``:`` the same way
address maps (canonical, virtual, generic, relocated, *_bcc: MA_FIND_DEFAULT):
  ``user+ext@domain``, ``user@domain``, then for a local domain (or no domain)
  ``user+ext``, ``user``, then ``@domain``; each key in external (quoted) form first,
  then internal form when it differs. When ``user@domain`` or ``user`` matched (a key
  without the extension) and propagation is on (``propagate_unmatched_extensions``),
  the extension is inserted into every address of the result (``x@y`` ->
  ``x+ext@y``); an ``@domain`` match does not propagate.
transport maps:
  ``user+ext@domain``, ``user@domain``, ``domain``, parents as ``.parent`` (or bare when
  ``transport_maps`` is in parent_domain_matches_subdomains), then ``*``
  (access, virtual, transport and alias orders are checked against C Postfix in
  tests/unit/mail/maps/test_search_vs_postfix.py)
aliases:
  ``user+ext``, then ``user`` (both whole keys: aliases may be regexp tables)

Parameters: parent_domain_matches_subdomains, smtpd_null_access_lookup_key,
recipient_delimiter, propagate_unmatched_extensions, mydestination, inet_interfaces,
proxy_interfaces (read by the helpers that take a Config).
"""

from __future__ import annotations

import ipaddress
from typing import Callable, NamedTuple

from fastpost.mail.address import (
    delimiter_of, external, quote_local, split_addr, split_extension,
)
from fastpost.mail.maps import MapList


class Key(NamedTuple):
    """One key to look up; ``partial`` keys skip pattern tables."""

    key: str
    partial: bool


class Found(NamedTuple):
    """A successful search: the value and the key that found it."""

    value: str
    key: Key


def _dedupe(keys: list[Key]) -> list[Key]:
    seen: set[str] = set()
    out = []
    for k in keys:
        if k.key in seen:
            continue
        seen.add(k.key)
        out.append(k)
    return out


def search(maps: MapList, keys: list[Key]) -> Found | None:
    """Ask each key in order; the first table that has one wins (MapRetry propagates)."""
    for k in keys:
        value = maps.get(k.key, partial=k.partial)
        if value is not None:
            return Found(value, k)
    return None


async def asearch(maps: MapList, keys: list[Key]) -> Found | None:
    for k in keys:
        value = await maps.aget(k.key, partial=k.partial)
        if value is not None:
            return Found(value, k)
    return None


# -- parameters -----------------------------------------------------------------------

def parent_matches_subdomains(cfg, param_name: str) -> bool:
    """Return True when ``param_name`` is listed in parent_domain_matches_subdomains."""
    return param_name in cfg.get_list("parent_domain_matches_subdomains")


# -- access maps ----------------------------------------------------------------------

def access_domain_keys(domain: str, *, parent_style: bool = True,
                       partial_first: bool = False) -> list[Key]:
    """Keys for a domain or host name: itself, then its parents.

    ``parent_style``: parents as ``example.com`` (True) or ``.example.com`` (False).
    ``partial_first``: the domain itself is part of a larger key (an address), so
    pattern tables are not asked for it either.
    """
    domain = domain.rstrip(".")
    if not domain:
        return []
    keys = [Key(domain, partial_first)]
    labels = domain.split(".")
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        if not parent:
            continue
        keys.append(Key(parent if parent_style else "." + parent, True))
    return keys


def access_address_keys(address: str, *, delimiters: str = "", parent_style: bool = True,
                        null_key: str = "<>") -> list[Key]:
    """Keys for an e-mail address in an access map (check_mail_access order)."""
    if address == "":
        return [Key(null_key, False)]
    local, domain = split_addr(address)
    base, ext = split_extension(local, delimiters)
    keys = [Key(address, False)]
    if ext:
        keys.append(Key(f"{base}@{domain}" if "@" in address else base, True))
    if domain:
        keys.extend(access_domain_keys(domain, parent_style=parent_style, partial_first=True))
    if "@" in address:
        keys.append(Key(f"{local}@", True))
        if ext:
            keys.append(Key(f"{base}@", True))
    return _dedupe(keys)


def access_hostaddr_keys(addr: str) -> list[Key]:
    """Keys for a client IP address: whole, then shortened at each '.' (IPv4) or ':'."""
    delim = ":" if ":" in addr else "."
    keys = [Key(addr, False)]
    text = addr
    while True:
        cut = text.rfind(delim)
        if cut <= 0:
            break
        text = text[:cut]
        keys.append(Key(text, True))
    return keys


def find_access_address(maps: MapList, address: str, **opts) -> Found | None:
    return search(maps, access_address_keys(address, **opts))


async def afind_access_address(maps: MapList, address: str, **opts) -> Found | None:
    return await asearch(maps, access_address_keys(address, **opts))


def find_access_domain(maps: MapList, domain: str, **opts) -> Found | None:
    return search(maps, access_domain_keys(domain, **opts))


async def afind_access_domain(maps: MapList, domain: str, **opts) -> Found | None:
    return await asearch(maps, access_domain_keys(domain, **opts))


def find_access_hostaddr(maps: MapList, addr: str) -> Found | None:
    return search(maps, access_hostaddr_keys(addr))


async def afind_access_hostaddr(maps: MapList, addr: str) -> Found | None:
    return await asearch(maps, access_hostaddr_keys(addr))


# -- address maps (canonical, virtual, generic, relocated, bcc) -------------------------

class AddressKey(NamedTuple):
    key: Key
    unmatched_ext: str      # the extension a match with this key leaves unmatched
    delimiter: str


def address_keys(address: str, *, delimiters: str = "",
                 is_local: Callable[[str], bool] | None = None,
                 at_domain: bool = True, localpart: bool = True) -> list[AddressKey]:
    """Keys for an internal-form address (MA_FIND_DEFAULT), external form first."""
    local, domain = split_addr(address)
    has_at = "@" in address
    base, ext = split_extension(local, delimiters)
    delim = delimiter_of(local, delimiters) if ext else ""
    out: list[AddressKey] = []

    def add(internal_key: str, external_key: str, partial: bool, unmatched: str) -> None:
        out.append(AddressKey(Key(external_key, partial), unmatched, delim))
        if internal_key != external_key:
            out.append(AddressKey(Key(internal_key, partial), unmatched, delim))

    if has_at:
        add(address, external(address), False, "")
        if ext:
            bare = f"{base}@{domain}"
            add(bare, external(bare), True, ext)
    local_domain = not has_at or not domain or (is_local is not None and is_local(domain))
    if localpart and local_domain:
        add(local, quote_local(local), has_at, "")
        if ext:
            add(base, quote_local(base), True, ext)
    if at_domain and has_at and domain:
        # A catch-all match does not carry the extension over (checked against Postfix).
        add(f"@{domain}", f"@{domain}", True, "")
    seen: set[str] = set()
    uniq = []
    for ak in out:
        if ak.key.key not in seen:
            seen.add(ak.key.key)
            uniq.append(ak)
    return uniq


def propagate_extension(result: str, ext: str, delimiter: str) -> str:
    """Insert ``delimiter + ext`` into the local part of every address in result."""
    if not ext:
        return result
    out = []
    for item in result.split(","):
        addr = item.strip()
        if not addr:
            continue
        local, at, domain = addr.rpartition("@")
        if at:
            out.append(f"{local}{delimiter}{ext}@{domain}")
        else:
            out.append(f"{addr}{delimiter}{ext}")
    return ",".join(out)


def _address_result(found: AddressKey, value: str, propagate: bool) -> str:
    if propagate and found.unmatched_ext:
        return propagate_extension(value, found.unmatched_ext, found.delimiter)
    return value


def find_address(maps: MapList, address: str, *, delimiters: str = "",
                 is_local: Callable[[str], bool] | None = None, propagate: bool = False,
                 **opts) -> str | None:
    """Return the rewritten address(es) for address, or None (MA_FIND_DEFAULT)."""
    for ak in address_keys(address, delimiters=delimiters, is_local=is_local, **opts):
        value = maps.get(ak.key.key, partial=ak.key.partial)
        if value is not None:
            return _address_result(ak, value, propagate)
    return None


async def afind_address(maps: MapList, address: str, *, delimiters: str = "",
                        is_local: Callable[[str], bool] | None = None,
                        propagate: bool = False, **opts) -> str | None:
    for ak in address_keys(address, delimiters=delimiters, is_local=is_local, **opts):
        value = await maps.aget(ak.key.key, partial=ak.key.partial)
        if value is not None:
            return _address_result(ak, value, propagate)
    return None


def propagates(cfg, table_class: str) -> bool:
    """Return True when propagate_unmatched_extensions names table_class
    (``canonical``, ``virtual``, ``alias``, ``forward``, ``include``, ``generic``)."""
    return table_class in cfg.get_list("propagate_unmatched_extensions")


# -- transport maps -----------------------------------------------------------------

def transport_keys(address: str, *, delimiters: str = "", parent_style: bool = False,
                   wildcard: bool = True) -> list[Key]:
    """Keys for transport_maps: full, without extension, domain, parents, ``*``."""
    local, domain = split_addr(address)
    base, ext = split_extension(local, delimiters)
    keys = [Key(address, False)]
    if ext:
        keys.append(Key(f"{base}@{domain}", True))
    if domain:
        keys.extend(access_domain_keys(domain, parent_style=parent_style, partial_first=True))
    if wildcard:
        keys.append(Key("*", True))
    return _dedupe(keys)


def find_transport(maps: MapList, address: str, **opts) -> Found | None:
    return search(maps, transport_keys(address, **opts))


async def afind_transport(maps: MapList, address: str, **opts) -> Found | None:
    return await asearch(maps, transport_keys(address, **opts))


# -- aliases ------------------------------------------------------------------------

def alias_keys(local: str, *, delimiters: str = "") -> list[Key]:
    """Keys for an alias lookup of a local part: ``user+ext`` then ``user``."""
    base, ext = split_extension(local, delimiters)
    keys = [Key(local, False)]
    if ext:
        keys.append(Key(base, False))
    return keys


def find_alias(maps: MapList, local: str, **opts) -> Found | None:
    return search(maps, alias_keys(local, **opts))


async def afind_alias(maps: MapList, local: str, **opts) -> Found | None:
    return await asearch(maps, alias_keys(local, **opts))


# -- is a domain local? ---------------------------------------------------------------

def local_domain_predicate(cfg) -> Callable[[str], bool]:
    """Return is_local(domain) after resolve_local: ``mydestination`` (names and
    tables), and address literals of ``inet_interfaces``/``proxy_interfaces``
    (``all`` counts the loopback addresses)."""
    from fastpost.mail.maps import open_map

    names: set[str] = set()
    tables = []
    for item in cfg.get_list("mydestination"):
        if ":" in item and not item.startswith("["):
            tables.append(open_map(item, cfg))
        else:
            names.add(item.lower().rstrip("."))
    addrs: set[str] = set()
    for item in cfg.get_list("inet_interfaces") + cfg.get_list("proxy_interfaces"):
        if item in ("all", "loopback-only"):
            addrs.update({"127.0.0.1", "::1"})
        elif item == "localhost":
            addrs.update({"127.0.0.1", "::1"})
        else:
            try:
                addrs.add(str(ipaddress.ip_address(item.strip("[]"))))
            except ValueError:
                pass

    def is_local(domain: str) -> bool:
        d = domain.lower().rstrip(".")
        if d.startswith("[") and d.endswith("]"):
            text = d[1:-1]
            if text.startswith("ipv6:"):
                text = text[5:]
            try:
                return str(ipaddress.ip_address(text)) in addrs
            except ValueError:
                return False
        if d in names:
            return True
        return any(t.get(d) is not None for t in tables)

    return is_local
