"""The client's host name: asynchronous reverse lookup with forward confirmation.

Postfix counterpart: src/smtpd/smtpd_peer.c (smtpd_peer_init, peer_hostaddr_to_sockaddr,
the forward-confirmed reverse name).

A client's *name* is its PTR name only when that name resolves back to the client's
address; otherwise the name is "unknown" (and ``reverse_name`` still has the PTR
name, for reject_unknown_reverse_client_hostname). Lookups run in the loop's
executor (getnameinfo/getaddrinfo block) and never on the loop; answers are cached
per process for ``ttl`` seconds, and concurrent lookups of one address are merged,
so a burst of connections from one client costs one lookup.

Results are (name, reverse_name, name_status, reverse_name_status), the statuses
being info.NAME_OK, NAME_TEMP (the lookup failed temporarily: reject_unknown_*
answers 450 whatever its code), NAME_PERM or NAME_FORGED (the PTR name does not
resolve back to the address).

Parameters: smtpd_peername_lookup (the caller decides whether to look up at all).
Diagnostics: none; a failed or timed-out lookup gives ("unknown", "unknown", ...).
"""

from __future__ import annotations

import asyncio
import socket
import time

__all__ = ["PeerResolver"]

UNKNOWN = "unknown"
OK, TEMP, PERM, FORGED = "ok", "temp", "perm", "forged"  # = info.NAME_*


class PeerResolver:
    """Cached, merged reverse+forward lookups of client addresses."""

    def __init__(self, *, ttl: float = 60.0, timeout: float = 10.0, max_entries: int = 10000):
        self.ttl = ttl
        self.timeout = timeout
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, str, str]] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    def cached(self, addr: str) -> tuple[str, str, str, str] | None:
        """Return (name, reverse_name, name_status, reverse_status) from the cache, or None."""
        hit = self._cache.get(addr)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1:]
        return None

    async def lookup(self, addr: str) -> tuple[str, str, str, str]:
        """Return (verified name or "unknown", PTR name or "unknown", statuses)."""
        hit = self.cached(addr)
        if hit is not None:
            return hit
        fut = self._inflight.get(addr)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._inflight[addr] = fut
            try:
                result = await asyncio.wait_for(self._resolve(addr), self.timeout)
            except (asyncio.TimeoutError, OSError, UnicodeError):
                result = (UNKNOWN, UNKNOWN, TEMP, TEMP)
            finally:
                del self._inflight[addr]
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[addr] = (time.monotonic() + self.ttl, *result)
            fut.set_result(result)
            return result
        return await asyncio.shield(fut)

    @staticmethod
    async def _resolve(addr: str) -> tuple[str, str, str, str]:
        loop = asyncio.get_running_loop()
        try:
            host, _ = await loop.getnameinfo((addr, 0), socket.NI_NAMEREQD)
        except (socket.gaierror, OSError) as exc:
            status = TEMP if getattr(exc, "errno", None) == socket.EAI_AGAIN else PERM
            return UNKNOWN, UNKNOWN, status, status
        reverse = host.rstrip(".").lower()
        try:
            infos = await loop.getaddrinfo(reverse, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, OSError) as exc:
            status = TEMP if getattr(exc, "errno", None) == socket.EAI_AGAIN else FORGED
            return UNKNOWN, reverse, status, OK
        for info in infos:
            if info[4][0] == addr:
                return reverse, reverse, OK, OK
        return UNKNOWN, reverse, FORGED, OK
