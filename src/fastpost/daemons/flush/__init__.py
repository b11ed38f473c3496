"""flush: the fast-flush service — per-destination logs of deferred mail, for ETRN,
``fastpost queue -s site``, ``-i queue_id`` and ``fastpost flush``.

Postfix counterpart: src/flush/flush.c

master.cf: ``flush  unix  n  -  n  1000?  0  flush`` (private column ``n``: the socket is
``public/flush``, reachable by smtpd and by members of setgid_group). A multi-client
daemon running as mail_owner. The master's wakeup (``W``, every 1000 s once the
service was used) runs a refresh, as ``fastpost flush`` does.

For each destination that ``fast_flush_domains`` lists (default ``$relay_domains``)
it keeps a log, ``$queue_directory/flush/<site>``: one queue ID per line, appended
when qmgr defers a recipient at that site. Protocol ``flush_protocol`` (attribute
frames, fastpost.mail.ipc; client: fastpost.mail.flush_clnt), one reply per request
``{status, error?, ...}`` with flush_clnt's FLUSH_STAT_* values:

    {request: "add", site, queue_id}   append to the site's log (DENY: not eligible)
    {request: "send_site", site}       every deferred message the log names goes back
                                       to the incoming queue; the log is emptied; qmgr
                                       is told to forget dead sites and scan incoming
                                       (``FI``). DENY when the site is not eligible.
                                       Reply ``moved``: how many.
    {request: "send_file", queue_id}   that message, if deferred, goes to incoming;
                                       qmgr scans incoming (``I``). Reply ``moved``: 0/1.
    {request: "refresh"}               send_site for every non-empty log not sent for
                                       fast_flush_refresh_time; remove every empty log
                                       not added to for fast_flush_purge_time.
    {request: "purge"}                 the same, ignoring both times.

A log's modification time is when an ID was last added; its access time is set when
it was last sent (explicitly, so mount options like relatime do not matter). Messages
a log names that are no longer deferred (delivered, active, on hold) are skipped;
a message deferred again is added again by qmgr. Duplicates in a log are sent once.
Logs are locked (flock) while appended or sent, so several flush processes agree.

Sites are lower-cased, one trailing dot dropped, and must be a valid host name or an
address literal (``[192.0.2.1]``): anything else is FLUSH_STAT_BAD, which also keeps
a site from naming a path.

Parameters: fast_flush_domains, fast_flush_refresh_time, fast_flush_purge_time,
queue_service_name, trigger_timeout, queue_directory.
Diagnostics: ``warning: flush_protocol: bad request: ...`` (answered BAD);
``warning: <site>: <reason>`` when a log cannot be read or written, or the queue index
cannot be changed (answered FAIL); ``info: <site>: sent N message(s)`` for send_site
and refresh.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import socket
import time

from fastpost.mail import ipc
from fastpost.mail.ipc import AttrServerProtocol
from fastpost.mail.address import valid_address_literal, valid_hostname
from fastpost.mail.domain_list import DomainList
from fastpost.mail.flush_clnt import (
    FLUSH_STAT_BAD, FLUSH_STAT_DENY, FLUSH_STAT_FAIL, FLUSH_STAT_OK, PROTOCOL,
)
from fastpost.mail.maps import MapRetry
from fastpost.mail.queue import DEFERRED, INCOMING, QueueSettings, QueueStore
from fastpost.server import multi_server_main
from fastpost.util import log

PARAMS = ("fast_flush_domains", "fast_flush_refresh_time", "fast_flush_purge_time",
          "queue_service_name", "trigger_timeout")
LOG_DIR = "flush"
_QUEUE_ID = re.compile(r"[0-9A-Za-z]{1,64}\Z")
_BATCH = 1000


class _State:
    domains: DomainList | None = None
    settings: QueueSettings | None = None
    store: QueueStore | None = None
    refresh_time = 0
    purge_time = 0
    qmgr = "qmgr"
    trigger_timeout = 10.0


_state = _State()


def pre_init(ctx) -> None:
    # fast_flush_domains' tables are opened now, before any chroot
    _state.domains = DomainList.from_param(ctx.cfg, "fast_flush_domains")


def post_init(ctx) -> None:
    cfg = ctx.cfg
    _state.settings = QueueSettings.from_config(cfg, queue_directory=".")
    _state.refresh_time = int(ctx.p["fast_flush_refresh_time"])
    _state.purge_time = int(ctx.p["fast_flush_purge_time"])
    _state.qmgr = str(ctx.p["queue_service_name"])
    _state.trigger_timeout = float(ctx.p["trigger_timeout"])


def on_exit(ctx) -> None:
    if _state.store is not None:
        _state.store.close()


def _store() -> QueueStore | None:
    """The queue store (read-write, no recovery: qmgr and cleanup own that); None
    while no index exists yet (then nothing is deferred)."""
    if _state.store is None:
        if not os.path.exists(os.path.join("index", "data.mdb")):
            return None
        _state.store = QueueStore.open(settings=_state.settings, recover=False)
    return _state.store


# -- helpers --------------------------------------------------------------------------------

class _Bad(Exception):
    pass


def _site(value) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("no site")
    site = value.lower()
    if site.endswith("."):
        site = site[:-1]
    if not (valid_hostname(site) or valid_address_literal(site)) or site.startswith("."):
        raise _Bad(f"bad site name {log.printable(value)!r}")
    return site


def _eligible(site: str) -> bool:
    return bool(_state.domains) and _state.domains.match(site)


def _path(site: str) -> str:
    return os.path.join(LOG_DIR, site)


def _append(site: str, queue_id: str) -> None:
    fd = os.open(_path(site), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, queue_id.encode("ascii") + b"\n")
    finally:
        os.close(fd)


def _take(site: str) -> list[str]:
    """Read and empty a site's log (locked); mark it sent (access time)."""
    try:
        fd = os.open(_path(site), os.O_RDWR)
    except FileNotFoundError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        chunks = []
        while data := os.read(fd, 65536):
            chunks.append(data)
        os.ftruncate(fd, 0)
        st = os.fstat(fd)
        os.utime(fd, ns=(time.time_ns(), st.st_mtime_ns))
    finally:
        os.close(fd)
    seen = {}
    for line in b"".join(chunks).split(b"\n"):
        qid = line.strip().decode("ascii", "replace")
        if qid and _QUEUE_ID.match(qid):
            seen[qid] = None
    return list(seen)


def _requeue(ids: list[str]) -> int:
    """Move the deferred ones among ``ids`` to the incoming queue; return how many."""
    store = _store()
    if store is None:
        return 0
    moved = 0
    for start in range(0, len(ids), _BATCH):
        with store.edit() as ed:
            for qid in ids[start:start + _BATCH]:
                info = ed.get(qid)
                if info is not None and info.state == DEFERRED:
                    moved += bool(ed.set_state(qid, INCOMING))
    return moved


async def _kick(data: bytes) -> None:
    try:
        await ipc.async_mail_trigger(".", _state.qmgr, data, timeout=_state.trigger_timeout)
    except ipc.IPCError as exc:
        log.warn("cannot trigger %s: %s (the mail will go at its next queue run)", _state.qmgr, exc)


async def _send_site(site: str) -> int:
    moved = _requeue(_take(site))
    if moved:
        log.info("%s: sent %d message(s)", site, moved)
    await _kick(ipc.QMGR_FLUSH_DEAD + ipc.QMGR_SCAN_INCOMING)
    return moved


async def _refresh(ignore_times: bool) -> dict:
    now = time.time()
    sent = removed = 0
    try:
        names = sorted(os.listdir(LOG_DIR))
    except OSError as exc:
        return {"status": FLUSH_STAT_FAIL, "error": f"{LOG_DIR}: {exc.strerror}"}
    for name in names:
        try:
            site = _site(name)
        except _Bad:
            continue  # not a log of ours
        try:
            st = os.stat(_path(site))
        except FileNotFoundError:
            continue
        if st.st_size > 0:
            if ignore_times or now - st.st_atime >= _state.refresh_time:
                sent += await _send_site(site)
        elif ignore_times or now - st.st_mtime >= _state.purge_time:
            try:  # only if still empty: an add may have come in meanwhile
                fd = os.open(_path(site), os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if os.fstat(fd).st_size == 0:
                        os.unlink(_path(site))
                        removed += 1
                finally:
                    os.close(fd)
            except FileNotFoundError:
                pass
    return {"status": FLUSH_STAT_OK, "sent": sent, "removed": removed}


# -- requests -------------------------------------------------------------------------------

def _bad(text: str) -> dict:
    log.warn("%s: bad request: %s", PROTOCOL, log.printable(text))
    return {"status": FLUSH_STAT_BAD, "error": text}


async def handle(request: dict, conn) -> dict:
    kind = request.get("request")
    try:
        if kind in ("add", "send_site"):
            site = _site(request.get("site"))
            try:
                if not _eligible(site):
                    return {"status": FLUSH_STAT_DENY, "error": f"{site}: not in fast_flush_domains"}
            except MapRetry as exc:
                return {"status": FLUSH_STAT_FAIL, "error": str(exc)}
            if kind == "add":
                qid = request.get("queue_id")
                if not isinstance(qid, str) or not _QUEUE_ID.match(qid):
                    raise _Bad("bad queue_id")
                _append(site, qid)
                return {"status": FLUSH_STAT_OK}
            return {"status": FLUSH_STAT_OK, "moved": await _send_site(site)}
        if kind == "send_file":
            qid = request.get("queue_id")
            if not isinstance(qid, str) or not _QUEUE_ID.match(qid):
                raise _Bad("bad queue_id")
            moved = _requeue([qid])
            if moved:
                await _kick(ipc.QMGR_SCAN_INCOMING)
            return {"status": FLUSH_STAT_OK, "moved": moved}
        if kind in ("refresh", "purge"):
            return await _refresh(kind == "purge")
        raise _Bad(f"unknown request {kind!r}")
    except _Bad as exc:
        return _bad(str(exc))
    except OSError as exc:
        where = request.get("site") or request.get("queue_id") or kind
        log.warn("%s: %s", log.printable(str(where)), exc)
        return {"status": FLUSH_STAT_FAIL, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the queue index (lmdb) failed
        from fastpost.server.lifecycle import describe_exception

        log.warn("%s: %s", kind, describe_exception(exc))
        return {"status": FLUSH_STAT_FAIL, "error": str(exc)}


class _FlushProtocol(AttrServerProtocol):
    """The attribute protocol, plus the master's wakeup: a connection that brings the
    single byte ``W`` and closes (master.cf wakeup column, Postfix's ``1000?``) runs a
    refresh. The master has written and closed before the connection is accepted, and
    clients of this protocol wait for the greeting before they send anything (and a
    request frame is longer than one byte), so a peek at accept time tells them apart;
    the greeting is not sent to the master's closed socket."""

    def __init__(self, ctx):
        super().__init__(ctx, PROTOCOL, handle)

    def connection_made(self, transport):
        head = b""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                with socket.socket(fileno=os.dup(sock.fileno())) as peek:
                    head = peek.recv(2, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:
                head = b""
        if head == ipc.TRIGGER_WAKEUP:
            self.transport = transport
            transport.close()
            asyncio.get_running_loop().create_task(_wakeup())
            return
        super().connection_made(transport)


async def _wakeup() -> None:
    try:
        await _refresh(False)
    except Exception as exc:  # noqa: BLE001 - logged, the next wakeup tries again
        from fastpost.server.lifecycle import describe_exception

        log.warn("refresh: %s", describe_exception(exc))


def main(argv):
    multi_server_main(argv, _FlushProtocol, name="flush", params=PARAMS, pre_init=pre_init,
                      post_init=post_init, on_exit=on_exit)
