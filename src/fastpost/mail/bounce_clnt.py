"""Client of the bounce, defer and trace services (fastpost.daemons.bounce).

Postfix counterpart: src/global/bounce.c, defer.c, trace.c (the client side of
bounce_flush, defer_flush, defer_warn, trace_flush and the *_append calls).

    client = BounceClient(cfg, queue_directory=".")
    ids = await client.flush(queue_id, ["bounce"])              # non-delivery notice
    ids = await client.flush(queue_id, ["bounce", "defer"], expired=True)
    ids = await client.warn(queue_id)                           # delay warning
    ids = await client.trace(queue_id)                          # success / status notice
    await client.append(queue_id, "defer", entry)               # a LogEntry into a log

Each notice request returns the queue IDs of the notices it queued (possibly none: the
null sender gets no notice). The logs are read from the queue index, so the caller
commits its log entries first.

Protocol ``delivery_status_protocol`` (attribute frames): ``{request: flush|warn|trace|
append, queue_id, logs, expired, log, entry}`` -> ``{status: 0, notices: [ids]}`` or
``{status: -1, error: text}``.

Parameters: bounce_service_name, defer_service_name, trace_service_name,
queue_directory, ipc_timeout, ipc_idle, ipc_ttl.
Diagnostics: fastpost.mail.ipc.IPCError (service unreachable, timeout) and BounceError
(the service answered with an error); callers keep the message and try again later.
"""

from __future__ import annotations

from fastpost.mail import ipc

PROTOCOL = "delivery_status_protocol"


class BounceError(ipc.IPCError):
    """The bounce service could not do what was asked (it says why)."""


class BounceClient:
    def __init__(self, cfg, *, queue_directory: str | None = None):
        qdir = queue_directory if queue_directory is not None else cfg.get("queue_directory")
        opts = dict(timeout=float(cfg.get_time("ipc_timeout")), idle=float(cfg.get_time("ipc_idle")),
                    ttl=float(cfg.get_time("ipc_ttl")))
        self.clients = {
            kind: ipc.AsyncAttrClient(ipc.endpoint(qdir, cfg.get(f"{kind}_service_name"), ipc.PRIVATE),
                                      PROTOCOL, **opts)
            for kind in ("bounce", "defer", "trace")
        }

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    async def _ask(self, service: str, attrs: dict) -> list[str]:
        client = self.clients[service]
        reply = await client.request(attrs, retry=False)
        if reply.get("status") != 0:
            raise BounceError(client.path, str(reply.get("error", reply)))
        notices = reply.get("notices") or []
        return [str(n) for n in notices]

    async def flush(self, queue_id: str, logs: list[str], *, expired: bool = False) -> list[str]:
        """Send the non-delivery notice for the recipients in these logs."""
        service = "defer" if expired else "bounce"
        return await self._ask(service, {"request": "flush", "queue_id": queue_id,
                                         "logs": list(logs), "expired": int(expired)})

    async def warn(self, queue_id: str) -> list[str]:
        """Send the delay warning for the recipients in the defer log."""
        return await self._ask("defer", {"request": "warn", "queue_id": queue_id})

    async def trace(self, queue_id: str) -> list[str]:
        """Send the delivery status notice (NOTIFY=SUCCESS) for the trace log."""
        return await self._ask("trace", {"request": "trace", "queue_id": queue_id})

    async def append(self, queue_id: str, log: str, entry) -> None:
        """Append one entry (a fastpost.mail.bounce_log.LogEntry) to a message's log."""
        await self._ask(log if log in self.clients else "bounce",
                        {"request": "append", "queue_id": queue_id, "log": log,
                         "entry": entry.encode()})


__all__ = ["BounceClient", "BounceError", "PROTOCOL"]
