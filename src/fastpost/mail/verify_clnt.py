"""The verify service's client: what smtpd's reject_unverified_* and sendmail -bv ask.

Postfix counterpart: src/global/verify_clnt.c (verify_clnt_query, verify_clnt_update).

    client = VerifyClient(cfg)                  # private/$address_verify_service_name
    status, text = await client.query("user@example.com")      # STAT_* below
    status, text = await client.poll("user@example.com", count, delay)
    await client.update(address, STAT_OK, "250 2.1.5 Ok")
    client.close()

poll() asks up to ``count`` times, ``delay`` seconds apart, while the answer is "in
progress" (3) — smtpd's address_verify_poll_count / address_verify_poll_delay — and
returns the last answer.

Failures: the service cannot be reached or answers a failure: VerifyError (the
caller decides: smtpd answers "address verification problem").
"""

from __future__ import annotations

import asyncio

from fastpost.mail import ipc

__all__ = ["VerifyClient", "VerifyError", "PROTOCOL", "STAT_OK", "STAT_DEFER", "STAT_BOUNCE",
           "STAT_TODO"]

PROTOCOL = "verify_protocol"
STAT_OK, STAT_DEFER, STAT_BOUNCE, STAT_TODO = 0, 1, 2, 3


class VerifyError(Exception):
    """The verify service could not answer."""


class VerifyClient:
    def __init__(self, cfg, *, queue_directory: str | None = None, path: str | None = None):
        qdir = queue_directory if queue_directory is not None else cfg.get("queue_directory")
        service = cfg.get("address_verify_service_name") or "verify"
        self.path = path or ipc.endpoint(qdir, service, ipc.PRIVATE)
        timeout = float(cfg.get_time("ipc_timeout"))
        self._client = ipc.AsyncAttrClient(self.path, PROTOCOL, connect_timeout=timeout,
                                           timeout=timeout)

    async def _ask(self, request: dict) -> dict:
        try:
            reply = await self._client.request(request)
        except (ipc.IPCError, OSError) as exc:
            raise VerifyError(str(exc)) from None
        if reply.get("status") != 0:
            raise VerifyError(f"{self.path}: request {request.get('request')} failed")
        return reply

    async def query(self, address: str) -> tuple[int, str]:
        reply = await self._ask({"request": "query", "address": address})
        try:
            return int(reply["recipient_status"]), str(reply.get("reason", ""))
        except (KeyError, TypeError, ValueError):
            raise VerifyError(f"{self.path}: malformed reply") from None

    async def poll(self, address: str, count: int, delay: float) -> tuple[int, str]:
        status, text = await self.query(address)
        for _ in range(max(0, count - 1)):
            if status != STAT_TODO:
                break
            await asyncio.sleep(delay)
            status, text = await self.query(address)
        return status, text

    async def update(self, address: str, status: int, text: str) -> None:
        await self._ask({"request": "update", "address": address, "recipient_status": status,
                         "reason": text})

    def close(self) -> None:
        self._client.close()
