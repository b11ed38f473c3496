"""Address mapping in cleanup: rewriting, canonical, masquerading, virtual aliases, BCC.

Postfix counterpart: src/cleanup/cleanup_addr.c, cleanup_map11.c (canonical, one to
one), cleanup_map1n.c (virtual aliases, one to many), cleanup_masq.c, and the
rewrite_clnt calls they make.

All lookups are ``async`` and run eagerly (fastpost.util.eager): an answer from the
trivial-rewrite client's cache or from a local table costs no task and no loop turn;
only a cache miss or a network table really waits.

    m = AddressMapper(settings, rewrite_client)
    await m.rewrite("local", "user")                  # trivial-rewrite: user@$myorigin
    await m.canonical("user@x", SENDER_ENVELOPE, "local")   # sender_/recipient_ then canonical_maps
    m.masquerade("u@host.example.com")               # masquerade_domains/_exceptions
    await m.virtual("alias@example.com")             # -> [addresses] (recursive)
    await m.bcc(settings.recipient_bcc, "r@x")        # -> address or None
    m.header_cacheable(SENDER_HEADER, map_ok)        # may a rewritten header be reused?
    m.header_cached(key) / m.header_remember(key, b)  # key: (context, class, map_ok, bytes)

Rules learned from Postfix 3.7 (tests/cleanup/ keep checking them):
  * canonical mapping is recursive: a result is rewritten (trivial-rewrite, same
    context) and looked up again until it no longer changes; ``@domain`` as a result
    keeps the local part; a loop logs ``unreasonable canonical_maps map nesting for
    ADDR -- message not accepted, try again later`` and leaves the address as it was
    (Postfix then still accepts the message);
  * sender_canonical_maps / recipient_canonical_maps come before canonical_maps, each
    for the classes its *_classes parameter names;
  * virtual aliases expand recursively: an address that maps to itself is kept, an
    unmatched one is final; a loop or more than virtual_alias_recursion_limit levels
    is ``unreasonable virtual_alias_maps map nesting``, more than
    virtual_alias_expansion_limit addresses ``unreasonable virtual_alias_maps map
    expansion size``, a result longer than virtual_alias_address_length_limit
    ``unreasonable virtual_alias_maps result length``: all ExpansionError (the message
    gets ``451 4.6.0 Alias expansion error``);
  * masquerading strips subdomains of the first masquerade_domains entry the domain
    ends in (``!domain`` entries stop the search without masquerading), except for
    local parts in masquerade_exceptions.

Parameters: see settings.py.
Diagnostics: MapRetry from a table that cannot answer and IPCError from
trivial-rewrite (both temporary: the caller answers 451 4.3.0); ExpansionError.
"""

from __future__ import annotations

import asyncio
import time

from fastpost.mail.address import split_addr
from fastpost.mail.maps import search
from fastpost.util import log

__all__ = ["AddressMapper", "ExpansionError", "SENDER_ENVELOPE", "RECIPIENT_ENVELOPE",
           "SENDER_HEADER", "RECIPIENT_HEADER"]

SENDER_ENVELOPE = "envelope_sender"
RECIPIENT_ENVELOPE = "envelope_recipient"
SENDER_HEADER = "header_sender"
RECIPIENT_HEADER = "header_recipient"

#: Canonical mapping stops after this many rewrites of one address.
CANONICAL_NESTING = 100
#: Rewritten address headers kept (all forgotten at once when full).
HEADER_CACHE_SIZE = 4096


class ExpansionError(Exception):
    """A virtual alias expansion that cannot be done now (loop, limits)."""


class AddressMapper:
    """The address transformations of one cleanup process (module docstring)."""

    def __init__(self, settings, rewriter):
        self.s = settings
        self.rewriter = rewriter
        base = settings.is_local
        origin = settings.myorigin.lower().rstrip(".")

        def is_local(domain: str) -> bool:
            return domain.lower().rstrip(".") == origin or base(domain)

        self.is_local = is_local
        # Rewritten address headers, across messages (see header_cached).
        cache = getattr(rewriter, "cache", None)
        self._hdr_ttl = cache.ttl if cache is not None and cache.size > 0 else 0.0
        self._hdr_cache: dict = {}
        self._hdr_static = {cls: self._static(cls) for cls in (SENDER_HEADER, RECIPIENT_HEADER)}

    # -- rewritten headers, cached ---------------------------------------------------------

    def _static(self, cls: str) -> bool:
        """True when rewriting a header of this class consults no table (with maps on)."""
        s = self.s
        if cls == SENDER_HEADER and s.sender_canonical and cls in s.sender_canonical_classes:
            return False
        if cls == RECIPIENT_HEADER and s.recipient_canonical and cls in s.recipient_canonical_classes:
            return False
        if s.canonical and cls in s.canonical_classes:
            return False
        if cls in s.masquerade_classes and s.masquerade_domains and s.masquerade_exception_maps:
            return False
        return True

    def header_cached(self, key: tuple):
        """A header rewritten before: key = (context, class, maps on, header bytes).

        Only headers whose rewriting asked trivial-rewrite alone are kept (no canonical
        table, no masquerade exception table: what those say may change at any time),
        and for no longer than trivial-rewrite answers are cached
        (fastpost_rewrite_cache_time), so a cached header is never staler than the
        addresses it was made from could be.
        """
        item = self._hdr_cache.get(key)
        if item is None:
            return None
        if item[1] < time.monotonic():
            del self._hdr_cache[key]
            return None
        return item[0]

    def header_cacheable(self, hclass: str, map_ok: bool) -> bool:
        return self._hdr_ttl > 0 and (not map_ok or self._hdr_static[hclass])

    def header_remember(self, key: tuple, value: bytes) -> None:
        cache = self._hdr_cache
        if len(cache) >= HEADER_CACHE_SIZE:
            cache.clear()
        cache[key] = (value, time.monotonic() + self._hdr_ttl)

    # -- trivial-rewrite ----------------------------------------------------------------

    async def rewrite(self, context: str, address: str) -> str:
        """Rewrite to user@fully.qualified form (trivial-rewrite's ``rewrite``)."""
        if not address:
            return address
        cached = self.rewriter.rewrite_cached(context, address)
        if cached is not None:
            return cached
        # A real round trip: in a task of its own (IPC timeouts need one).
        return await asyncio.ensure_future(self.rewriter.rewrite(context, address))

    # -- lookups ------------------------------------------------------------------------

    async def _find(self, mapset, address: str, propagate: bool) -> str | None:
        if mapset.network:
            return await asyncio.ensure_future(search.afind_address(
                mapset.maps, address, delimiters=self.s.delimiters, is_local=self.is_local,
                propagate=propagate))
        return search.find_address(mapset.maps, address, delimiters=self.s.delimiters,
                                   is_local=self.is_local, propagate=propagate)

    async def _map11(self, mapset, address: str, context: str) -> str:
        """One canonical table, recursively (see the module docstring)."""
        original = address
        seen = {address}
        for _ in range(CANONICAL_NESTING):
            value = await self._find(mapset, address, self.s.canonical_propagate)
            if value is None:
                return address
            first = value.split(",")[0].strip()
            if len(value.split(",")) > 1:
                log.warn("%s: multi-valued %s entry for %s", mapset.name, mapset.name,
                         log.printable(address))
            if first.startswith("@"):
                first = split_addr(address)[0] + first
            result = await self.rewrite(context, first)
            if result == address:
                return address
            if result in seen:
                break
            seen.add(result)
            address = result
        log.warn("unreasonable %s map nesting for %s -- message not accepted, try again later",
                 mapset.name, log.printable(original))
        return original

    async def canonical(self, address: str, cls: str, context: str) -> str:
        """sender_/recipient_canonical_maps, then canonical_maps, for an address class."""
        s = self.s
        if not address:
            return address
        if cls in (SENDER_ENVELOPE, SENDER_HEADER):
            if s.sender_canonical and cls in s.sender_canonical_classes:
                address = await self._map11(s.sender_canonical, address, context)
        elif s.recipient_canonical and cls in s.recipient_canonical_classes:
            address = await self._map11(s.recipient_canonical, address, context)
        if s.canonical and cls in s.canonical_classes:
            address = await self._map11(s.canonical, address, context)
        return address

    def masquerade(self, address: str) -> str:
        """Strip subdomains below a masquerade_domains entry (module docstring)."""
        s = self.s
        local, domain = split_addr(address)
        if not domain or not s.masquerade_domains:
            return address
        if local.lower() in s.masquerade_exceptions:
            return address
        for table in s.masquerade_exception_maps:
            if table.get(local) is not None:
                return address
        d = domain.lower()
        for positive, masq in s.masquerade_domains:
            if d == masq:
                return address
            if d.endswith("." + masq):
                return f"{local}@{masq}" if positive else address
        return address

    async def virtual(self, address: str) -> list[str]:
        """Expand an address through virtual_alias_maps (module docstring)."""
        s = self.s
        out: list[str] = []
        await self._expand(address, [], out)
        return out

    async def _expand(self, address: str, path: list, out: list) -> None:
        s = self.s
        if len(path) > s.virtual_recursion_limit or address in path:
            raise ExpansionError(f"unreasonable virtual_alias_maps map nesting for "
                                 f"{log.printable(path[0] if path else address)}")
        value = await self._find(s.virtual, address, s.virtual_propagate)
        if value is None:
            out.append(address)
            return
        if s.virtual_length_limit and len(value) > s.virtual_length_limit:
            raise ExpansionError(f"unreasonable virtual_alias_maps result length for "
                                 f"{log.printable(address)}")
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            target = await self.rewrite("local", item)
            if target == address:
                out.append(target)  # maps to itself: final
            else:
                await self._expand(target, path + [address], out)
            if len(out) > s.virtual_expansion_limit:
                raise ExpansionError(f"unreasonable virtual_alias_maps map expansion size for "
                                     f"{log.printable(path[0] if path else address)}")

    async def bcc(self, mapset, address: str) -> str | None:
        """The BCC address a *_bcc_maps table has for address, rewritten, or None."""
        if not mapset or not address:
            return None
        value = await self._find(mapset, address, False)
        if value is None:
            return None
        return await self.rewrite("local", value.split(",")[0].strip())
