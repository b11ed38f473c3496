"""Client of the fast-flush service: add, send_site, send_file, refresh, purge.

Postfix counterpart: src/global/flush_clnt.c (and the call in src/global/defer.c that
tells the service about deferred mail).

    FlushClient(cfg, queue_directory=None)          synchronous (commands)
        .send_site(site) / .send_file(queue_id) / .refresh() / .purge() -> (status, reply)
    AsyncFlushClient(cfg, queue_directory=".")       asyncio (qmgr, smtpd)
        await .add(site, queue_id) -> status
        await .send_site(site) -> status

Statuses (Postfix's names): FLUSH_STAT_OK, FLUSH_STAT_FAIL (the service could not do
it, or could not be reached), FLUSH_STAT_BAD (a malformed request), FLUSH_STAT_DENY
(the site is not eligible: fast_flush_domains does not list it). ``add`` checks
eligibility here first and sends nothing for other sites (most deferred mail is not
for a fast-flush site), so an empty fast_flush_domains costs nothing.

Parameters: fast_flush_domains, flush_service_name, queue_directory, ipc_timeout,
ipc_idle, ipc_ttl.
Diagnostics: none logged here; callers decide (a failed ``add`` is a warning in qmgr,
a failed ``send_site`` is ``458 Unable to queue messages`` in smtpd). A fast_flush_domains
table that cannot answer makes ``add`` return FLUSH_STAT_FAIL.
"""

from __future__ import annotations

from fastpost.mail import ipc
from fastpost.mail.domain_list import DomainList
from fastpost.mail.maps import MapRetry

PROTOCOL = "flush_protocol"

FLUSH_STAT_OK = 0
FLUSH_STAT_FAIL = -1
FLUSH_STAT_BAD = -2
FLUSH_STAT_DENY = -3


def _endpoint(cfg, queue_directory: str | None) -> str:
    qdir = cfg.get("queue_directory") if queue_directory is None else queue_directory
    return ipc.endpoint(qdir, cfg.get("flush_service_name"), ipc.PUBLIC)


class FlushClient:
    """Synchronous requests to the flush service; each returns (status, reply dict)."""

    def __init__(self, cfg, queue_directory: str | None = None):
        self.client = ipc.AttrClient(_endpoint(cfg, queue_directory), PROTOCOL,
                                     timeout=cfg.get_time("ipc_timeout"))
        self.error = ""  # why the last request failed, when it did

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, attrs: dict) -> tuple[int, dict]:
        try:
            reply = self.client.request(attrs, retry=False)
        except ipc.IPCError as exc:
            self.error = str(exc)
            return FLUSH_STAT_FAIL, {}
        status = reply.get("status")
        if not isinstance(status, int):
            self.error = "malformed reply"
            return FLUSH_STAT_FAIL, reply
        self.error = str(reply.get("error", ""))
        return status, reply

    def send_site(self, site: str) -> tuple[int, dict]:
        return self._request({"request": "send_site", "site": site})

    def send_file(self, queue_id: str) -> tuple[int, dict]:
        return self._request({"request": "send_file", "queue_id": queue_id})

    def refresh(self) -> tuple[int, dict]:
        return self._request({"request": "refresh"})

    def purge(self) -> tuple[int, dict]:
        return self._request({"request": "purge"})


class AsyncFlushClient:
    """The same for asyncio daemons; one persistent connection, requests pipelined."""

    def __init__(self, cfg, queue_directory: str = "."):
        self.domains = DomainList.from_param(cfg, "fast_flush_domains")
        self.client = ipc.AsyncAttrClient(
            _endpoint(cfg, queue_directory), PROTOCOL, timeout=cfg.get_time("ipc_timeout"),
            idle=cfg.get_time("ipc_idle"), ttl=cfg.get_time("ipc_ttl"))
        self.error = ""

    def eligible(self, site: str) -> bool:
        """Whether fast_flush_domains lists the site (MapRetry when a table fails)."""
        return bool(self.domains) and self.domains.match(site)

    async def _request(self, attrs: dict) -> int:
        try:
            reply = await self.client.request(attrs, retry=False)
        except ipc.IPCError as exc:
            self.error = str(exc)
            return FLUSH_STAT_FAIL
        status = reply.get("status")
        self.error = str(reply.get("error", ""))
        return status if isinstance(status, int) else FLUSH_STAT_FAIL

    async def add(self, site: str, queue_id: str) -> int:
        try:
            if not self.eligible(site):
                return FLUSH_STAT_DENY
        except MapRetry as exc:
            self.error = str(exc)
            return FLUSH_STAT_FAIL
        return await self._request({"request": "add", "site": site, "queue_id": queue_id})

    async def send_site(self, site: str) -> int:
        return await self._request({"request": "send_site", "site": site})

    def close(self) -> None:
        self.client.close()
