"""The smtp/lmtp agent's connection cache: idle sessions kept for the next message.

Postfix counterpart: src/smtp/smtp_reuse.c and the scache(8) service. Postfix keeps
idle sessions in a separate process shared by every smtp process; fastpost's agent
runs many deliveries concurrently in one process, so each process keeps its own
cache and a session is handed straight from one delivery to the next.

    cache = SessionCache(settings)
    cache.put(dest_key, session)          # after a clean transaction
    session = cache.take(dest_key)        # the next message to that destination
    session = cache.take(endpoint)        # or to that server by address
    await cache.close_all()               # process exit: QUIT each

A session is cached under its next-hop destination (the request's next hop as
written) and under its server endpoint ``[addr]:port``, as Postfix does, so a
message for another domain with the same MX reuses it too. It stays at most
smtp_connection_cache_time_limit seconds idle (then QUIT), is not cached again once
older than smtp_connection_reuse_time_limit or used smtp_connection_reuse_count_limit
times (0 = no count limit), and one whose server closed it while idle is dropped
when taken.

Caching happens when smtp_connection_cache_on_demand is on (fastpost's qmgr sends a
destination's messages as they are ready, so every destination with more than one
message in flight gains) or the destination is listed in
smtp_connection_cache_destinations.

Parameters: smtp_connection_cache_on_demand, smtp_connection_cache_destinations,
smtp_connection_cache_time_limit, smtp_connection_reuse_time_limit,
smtp_connection_reuse_count_limit.
Diagnostics: none (a session that cannot be used is closed, not returned).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SessionCache"]


class SessionCache:
    """Idle sessions by destination and by endpoint (module docstring)."""

    def __init__(self, settings):
        self.s = settings
        self._idle: dict[str, list] = {}
        self._tasks: set = set()
        self.hits = 0
        self.stored = 0
        wanted = set()
        for item in settings.cache_destinations:
            wanted.add(item.lower())
        self._wanted = frozenset(wanted)

    def wanted(self, dest_key: str) -> bool:
        """True when sessions to this destination are cached."""
        if self.s.cache_time_limit <= 0:
            return False
        return self.s.cache_on_demand or dest_key.lower() in self._wanted

    def reusable(self, session) -> bool:
        """True when the session may carry another message (the reuse limits)."""
        if not session.usable:
            return False
        if self.s.reuse_time_limit and time.monotonic() - session.created >= self.s.reuse_time_limit:
            return False
        if self.s.reuse_count_limit and session.uses >= self.s.reuse_count_limit:
            return False
        return True

    def put(self, dest_key: str, session) -> bool:
        """Keep ``session`` for later; QUIT it when it may not be kept. True if kept."""
        if not (self.wanted(dest_key) and self.reusable(session)):
            self._quit(session)
            return False
        keys = (dest_key.lower(), session.target.endpoint.lower())
        session.cache_keys = keys
        for key in keys:
            self._idle.setdefault(key, []).append(session)
        loop = asyncio.get_running_loop()
        session.idle_handle = loop.call_later(self.s.cache_time_limit, self._expire, session)
        self.stored += 1
        return True

    def take(self, key: str):
        """An idle, still usable session for ``key`` (destination or endpoint), or None."""
        sessions = self._idle.get(key.lower())
        while sessions:
            session = sessions.pop()
            self._forget(session)
            if session.usable:
                self.hits += 1
                return session
            session.close()
        return None

    def _forget(self, session) -> None:
        if session.idle_handle is not None:
            session.idle_handle.cancel()
            session.idle_handle = None
        for key in getattr(session, "cache_keys", ()):
            items = self._idle.get(key)
            if items is None:
                continue
            try:
                items.remove(session)
            except ValueError:
                pass
            if not items:
                del self._idle[key]
        session.cache_keys = ()

    def _expire(self, session) -> None:
        session.idle_handle = None
        self._forget(session)
        self._quit(session)

    def _quit(self, session) -> None:
        task = asyncio.get_running_loop().create_task(session.quit())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def idle_count(self) -> int:
        return len({id(s) for items in self._idle.values() for s in items})

    async def close_all(self) -> None:
        """QUIT every idle session (process exit)."""
        sessions = {id(s): s for items in self._idle.values() for s in items}
        for session in sessions.values():
            self._forget(session)
            self._quit(session)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
