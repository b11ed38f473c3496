"""The trivial-rewrite client: rewrite and resolve requests, with a cache.

Postfix counterpart: src/global/rewrite_clnt.c, resolve_clnt.c (which cache only the
last answer; this client keeps many, for a short time).

    client = RewriteClient(cfg, queue_directory=".")      # daemons: "." (cwd = queue)
    address = await client.rewrite("local", "user")        # -> "user@example.com"
    r = await client.resolve(sender, "user@example.net")   # -> Resolved(transport,
                                                            #    nexthop, recipient, flags)
    r = await client.verify(sender, address)               # address_verify_* variant
    r = client.resolve_cached(sender, address)             # from the cache or None
    a = client.rewrite_cached(context, address)            # from the cache or None
    client.rewrite_sync(...), client.resolve_sync(...), client.verify_sync(...)  # commands
    client.close()

Addresses are internal form. ``Resolved`` is fastpost.mail.resolve's: ``.transport``,
``.nexthop``, ``.recipient``, ``.flags``, ``.address_class`` ("local", "alias",
"virtual", "relay", "default"), ``.error`` (malformed address: bounce with 5.1.3),
``.failed`` (a table lookup failed: answer or defer with 4.3.0), ``.routed``.
smtpd's reject_unauth_destination: ``r.flags & CLASS_FINAL or r.address_class ==
"relay"`` (and not ``r.routed`` unless allow_untrusted_routing).

Addresses that rewriting leaves as they are whatever the configuration
(rewrite.rewrites_to_itself: ``user@example.com``, with an ``@``, no source route and
a domain with a dot not at its end) are answered without asking trivial-rewrite, in
the ``local`` and ``remote`` contexts: its answer could only be the address itself.
(So these need no trivial-rewrite at all: with the service down they still answer,
where Postfix's client would wait and fail.)

Cache: answers are kept for ``fastpost_rewrite_cache_time`` (10 s) up to
``fastpost_rewrite_cache_size`` entries (least recently used go first); failed answers
are never kept. Resolve answers are keyed by address only, unless this configuration
has sender-dependent maps, then by (sender, address). Concurrent requests for the same
key share one round trip. A table change on the server is therefore seen by clients
within the cache time.

Parameters: rewrite_service_name, queue_directory, ipc_timeout, ipc_idle, ipc_ttl,
sender_dependent_relayhost_maps, sender_dependent_default_transport_maps (and their
address_verify_ variants), fastpost_rewrite_cache_size, fastpost_rewrite_cache_time.
Diagnostics: fastpost.mail.ipc.IPCError subclasses when trivial-rewrite cannot be
reached or answers garbage (RewriteError, an IPCError, for a refused request); callers
treat both as a temporary failure.
"""

from __future__ import annotations

import asyncio
import collections
import time

from fastpost.mail import ipc
from fastpost.mail.resolve import Resolved
from fastpost.mail.rewrite import CONTEXTS, rewrites_to_itself

PROTOCOL = "trivial_rewrite_protocol"


class RewriteError(ipc.IPCError):
    """trivial-rewrite refused a request (a bug in the caller, or a mismatch of versions)."""


class _Cache:
    """A small LRU with expiry."""

    def __init__(self, size: int, ttl: float):
        self.size = max(0, size)
        self.ttl = ttl
        self.data: collections.OrderedDict = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        item = self.data.get(key)
        if item is None:
            self.misses += 1
            return None
        value, expires = item
        if expires < time.monotonic():
            del self.data[key]
            self.misses += 1
            return None
        self.data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key, value) -> None:
        if self.size == 0 or self.ttl <= 0:
            return
        self.data[key] = (value, time.monotonic() + self.ttl)
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class RewriteClient:
    """A cached client of the trivial-rewrite service (see the module docstring)."""

    def __init__(self, cfg, *, queue_directory: str | None = None):
        qdir = queue_directory if queue_directory is not None else cfg.get("queue_directory")
        self.path = ipc.endpoint(qdir, cfg.get("rewrite_service_name"), ipc.PRIVATE)
        self.timeout = float(cfg.get_time("ipc_timeout"))
        self.idle = float(cfg.get_time("ipc_idle"))
        self.ttl = float(cfg.get_time("ipc_ttl"))
        self.cache = _Cache(cfg.get_int("fastpost_rewrite_cache_size"),
                            float(cfg.get_time("fastpost_rewrite_cache_time")))
        self.sender_keyed = {
            "resolve": bool(cfg.get("sender_dependent_relayhost_maps").strip()
                            or cfg.get("sender_dependent_default_transport_maps").strip()),
            "verify": bool(cfg.get("address_verify_sender_dependent_relayhost_maps").strip()
                           or cfg.get("address_verify_sender_dependent_default_transport_maps").strip()),
        }
        self._async: ipc.AsyncAttrClient | None = None
        self._sync: ipc.AttrClient | None = None
        self._inflight: dict = {}
        self.requests = 0  # round trips to trivial-rewrite (cache misses not coalesced)

    # -- plumbing ---------------------------------------------------------------------

    def _client(self) -> ipc.AsyncAttrClient:
        if self._async is None:
            self._async = ipc.AsyncAttrClient(self.path, PROTOCOL, timeout=self.timeout,
                                              idle=self.idle, ttl=self.ttl)
        return self._async

    def _sync_client(self) -> ipc.AttrClient:
        if self._sync is None:
            self._sync = ipc.AttrClient(self.path, PROTOCOL, timeout=self.timeout,
                                        idle=self.idle, ttl=self.ttl)
        return self._sync

    def close(self) -> None:
        if self._async is not None:
            self._async.close()
            self._async = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def _key(self, request: str, sender: str, address: str):
        if request == "rewrite":
            return ("rewrite", sender, address)  # sender holds the rule here
        return (request, sender if self.sender_keyed[request] else None, address)

    def _check(self, reply: dict) -> dict:
        if reply.get("status") != 0:
            raise RewriteError(self.path, f"request refused: {reply.get('error', reply)}")
        return reply

    def _answer(self, request: str, reply: dict):
        reply = self._check(reply)
        if request == "rewrite":
            address = reply.get("address")
            if not isinstance(address, str):
                raise RewriteError(self.path, "malformed rewrite reply")
            return address
        try:
            return Resolved.from_attrs(reply)
        except ValueError as exc:
            raise RewriteError(self.path, str(exc)) from None

    def _cacheable(self, value) -> bool:
        return not (isinstance(value, Resolved) and value.failed)

    async def _ask(self, request: str, attrs: dict, key):
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        self.requests += 1
        try:
            value = self._answer(request, await self._client().request(attrs))
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        else:
            fut.set_result(value)
            if self._cacheable(value):
                self.cache.put(key, value)
            return value
        finally:
            del self._inflight[key]

    def _ask_sync(self, request: str, attrs: dict, key):
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        self.requests += 1
        value = self._answer(request, self._sync_client().request(attrs))
        if self._cacheable(value):
            self.cache.put(key, value)
        return value

    # -- the API -------------------------------------------------------------------------

    def resolve_cached(self, sender: str, address: str) -> Resolved | None:
        """The cached answer of resolve(), or None (no round trip, no await)."""
        return self.cache.get(self._key("resolve", sender, address))

    def rewrite_cached(self, context: str, address: str) -> str | None:
        """The cached answer of rewrite(), or None (no round trip, no await)."""
        if rewrites_to_itself(address) and context in CONTEXTS:
            return address
        return self.cache.get(self._key("rewrite", context, address))

    async def rewrite(self, context: str, address: str) -> str:
        """Rewrite an address in the ``local`` or ``remote`` context."""
        if rewrites_to_itself(address) and context in CONTEXTS:
            return address
        return await self._ask("rewrite", {"request": "rewrite", "rule": context, "address": address},
                               self._key("rewrite", context, address))

    async def resolve(self, sender: str, address: str) -> Resolved:
        """Where mail from sender to address goes."""
        return await self._ask("resolve", {"request": "resolve", "sender": sender, "address": address},
                               self._key("resolve", sender, address))

    async def verify(self, sender: str, address: str) -> Resolved:
        """resolve() for address verification probes."""
        return await self._ask("verify", {"request": "verify", "sender": sender, "address": address},
                               self._key("verify", sender, address))

    def rewrite_sync(self, context: str, address: str) -> str:
        if rewrites_to_itself(address) and context in CONTEXTS:
            return address
        return self._ask_sync("rewrite", {"request": "rewrite", "rule": context, "address": address},
                              self._key("rewrite", context, address))

    def resolve_sync(self, sender: str, address: str) -> Resolved:
        return self._ask_sync("resolve", {"request": "resolve", "sender": sender, "address": address},
                              self._key("resolve", sender, address))

    def verify_sync(self, sender: str, address: str) -> Resolved:
        return self._ask_sync("verify", {"request": "verify", "sender": sender, "address": address},
                              self._key("verify", sender, address))


__all__ = ["PROTOCOL", "Resolved", "RewriteClient", "RewriteError"]
