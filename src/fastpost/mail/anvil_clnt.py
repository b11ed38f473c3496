"""The anvil client: connection and rate counts for smtpd's client limits.

Postfix counterpart: src/global/anvil_clnt.c.

    anvil = AnvilClient(queue_directory)
    count, rate = await anvil.connect("smtp:192.0.2.1")   # None when anvil is away
    await anvil.disconnect("smtp:192.0.2.1")
    rate = await anvil.event("message" | "recipient" | "newtls" | "auth" |
                             "newtls_report", ident)       # None when anvil is away
    counts = await anvil.lookup(ident)                     # dict, or None

One persistent connection to private/anvil per process, shared by every session
(requests are pipelined); it is never closed for idleness, because anvil gives a
client's open connections back when the client's IPC connection closes (a crashed
smtpd must not leave counts behind).

Parameters: none read here (the caller passes queue_directory and ipc_timeout).
Diagnostics: when anvil cannot be reached or fails, each call returns None and
``warning: problem talking to service private/anvil: REASON`` is logged (at most
once a minute); the caller then applies no limit, as Postfix's smtpd does.
"""

from __future__ import annotations

import time

from fastpost.mail import ipc
from fastpost.util import log

__all__ = ["AnvilClient", "ANVIL_PROTOCOL"]

ANVIL_PROTOCOL = "anvil_protocol"
WARN_INTERVAL = 60.0
EVENTS = ("message", "recipient", "newtls", "auth", "newtls_report")


class AnvilClient:
    """Asynchronous anvil client (module docstring)."""

    def __init__(self, queue_directory: str, *, timeout: float = 10.0, path: str | None = None):
        self.path = path or ipc.endpoint(queue_directory, "anvil", ipc.PRIVATE)
        self._client = ipc.AsyncAttrClient(self.path, ANVIL_PROTOCOL, connect_timeout=timeout,
                                           timeout=timeout, idle=1e9, ttl=1e9)
        self._warned = 0.0

    async def _ask(self, request: dict) -> dict | None:
        try:
            reply = await self._client.request(request)
        except (ipc.IPCError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned > WARN_INTERVAL or not self._warned:
                self._warned = now
                log.warn("problem talking to service private/anvil: %s", exc)
            return None
        if reply.get("status") != 0:
            log.warn("private/anvil: request %s failed: %r", request.get("request"), reply)
            return None
        return reply

    async def connect(self, ident: str) -> tuple[int, int] | None:
        reply = await self._ask({"request": "connect", "ident": ident})
        return None if reply is None else (int(reply["count"]), int(reply["rate"]))

    async def disconnect(self, ident: str) -> None:
        await self._ask({"request": "disconnect", "ident": ident})

    async def event(self, what: str, ident: str) -> int | None:
        if what not in EVENTS:
            raise ValueError(f"unknown anvil event {what!r}")
        reply = await self._ask({"request": what, "ident": ident})
        return None if reply is None else int(reply["rate"])

    async def lookup(self, ident: str) -> dict | None:
        reply = await self._ask({"request": "lookup", "ident": ident})
        if reply is not None:
            reply.pop("status", None)
        return reply

    def close(self) -> None:
        self._client.close()
