"""verify: the address verification service (a cache of probe results, and the probes).

Postfix counterpart: verify(8) (src/verify/verify.c) and its client library
src/global/verify_clnt.c (here fastpost.mail.verify_clnt).

master.cf: ``verify unix - - n - 1 verify`` (one resident process: it owns the cache).
Requests on private/verify (address_verify_service_name), attribute frames as every
fastpost service (docs/ipc.md), protocol ``verify_protocol``:

    {"request": "query", "address": A}
        -> {"status": 0, "recipient_status": S, "reason": TEXT}
    {"request": "update", "address": A, "recipient_status": S, "reason": TEXT}
        -> {"status": 0}
    anything else -> {"status": 1} and a warning

S is 0 deliverable, 1 temporarily undeliverable, 2 undeliverable, 3 in progress. A query
that needs a probe (fastpost.daemons.verify.cache) starts it in this process
(fastpost.daemons.verify.probe) and answers at once; the probe's result updates the
cache when it arrives, so the client's next poll (smtpd: address_verify_poll_count
times, address_verify_poll_delay apart) sees it. At most 20 probes run at a time;
more wait their turn, up to address_verify_pending_request_limit (beyond it a query
answers "in progress" without a probe, and a warning is logged once a minute).

The cache is address_verify_map (Postfix's default ``btree:$data_directory/verify_cache``:
here one LMDB file ``verify_cache.lmdb`` that ``fastpost map -q ADDR
btree:$data_directory/verify_cache`` and ``-s`` read); empty keeps it in memory.
Every address_verify_cache_cleanup_interval (0: never) expired entries are removed and
``cache MAP full cleanup: retained=N dropped=M entries`` is logged, as Postfix does.

Parameters: address_verify_map, address_verify_positive_expire_time,
address_verify_positive_refresh_time, address_verify_negative_cache,
address_verify_negative_expire_time, address_verify_negative_refresh_time,
address_verify_cache_cleanup_interval, address_verify_pending_request_limit,
address_verify_sender and the probe's (probe.py).
Diagnostics: an unusable address_verify_map is fatal at start (naming it); a cache
read/write error answers status 1 with "address verification cache problem" and a
warning; a request without an address gets {"status": 1} and a warning.
"""

from __future__ import annotations

import asyncio
import time

from fastpost.daemons.verify.cache import (
    STAT_DEFER, STAT_TODO, VerifyCache, Policy, open_table,
)
from fastpost.util import log

__all__ = ["main", "PROTOCOL"]

PROTOCOL = "verify_protocol"
MAX_RUNNING = 20


class _State:
    cache: VerifyCache | None = None
    prober = None
    running: asyncio.Semaphore | None = None
    pending = 0
    limit = 5000
    warned = float("-inf")  # monotonic() counts from boot
    tasks: set = set()


_st = _State()


def _cleanup(ctx, interval: float) -> None:
    try:
        retained, dropped = _st.cache.cleanup()
        log.info("cache %s full cleanup: retained=%d dropped=%d entries",
                 _st.cache.table.spec, retained, dropped)
    except Exception as exc:  # noqa: BLE001 - the next round tries again
        log.warn("cache %s cleanup: %s", _st.cache.table.spec, exc)
    ctx.loop.call_later(interval, _cleanup, ctx, interval)


def _pre_init(ctx) -> None:
    """Open the cache with root privileges (data_directory is mail_owner's, 0700, and
    may be out of reach of the queue directory); a new file is given to mail_owner."""
    import os
    import pwd

    from fastpost.mail.config import ConfigError

    spec = str(ctx.p["address_verify_map"])
    try:
        table = open_table(spec)
        if os.geteuid() == 0 and getattr(table, "path", None):
            owner = pwd.getpwnam(str(ctx.p["mail_owner"]))
            st = os.stat(table.path)
            if st.st_uid == 0:
                os.chown(table.path, owner.pw_uid, owner.pw_gid)
    except Exception as exc:  # noqa: BLE001 - ValueError, lmdb.Error, OSError, KeyError
        raise ConfigError(f"address_verify_map = {spec}: {exc}") from None
    _st.cache = VerifyCache(table, Policy.from_config(ctx.cfg))
    from fastpost.daemons.verify.probe import Prober
    from fastpost.mail.rewrite_clnt import RewriteClient

    from fastpost.daemons.cleanup.addrmap import AddressMapper
    from fastpost.daemons.cleanup.settings import CleanupSettings

    rewriter = RewriteClient(ctx.cfg, queue_directory=".")
    # cleanup's tables (canonical, virtual aliases), opened while they are in reach
    mapper = AddressMapper(CleanupSettings.from_config(ctx.cfg), rewriter)
    _st.prober = Prober(ctx.cfg, rewriter, mapper=mapper)
    _st.prober.programs()  # master.cf, while the configuration directory is in reach


def _post_init(ctx) -> None:
    _st.running = asyncio.Semaphore(MAX_RUNNING)
    _st.limit = int(ctx.p["address_verify_pending_request_limit"]) or 5000
    interval = float(ctx.p["address_verify_cache_cleanup_interval"])
    if interval > 0:
        ctx.loop.call_soon(_cleanup, ctx, interval)


def _on_exit(ctx) -> None:
    if _st.cache is not None:
        _st.cache.table.close()


async def _run_probe(address: str) -> None:
    try:
        async with _st.running:
            status, text = await _st.prober.probe(address)
        try:
            _st.cache.update(address, status, text)
        except Exception as exc:  # noqa: BLE001
            log.warn("cache %s update for %s: %s", _st.cache.table.spec,
                     log.printable(address), exc)
    except Exception as exc:  # noqa: BLE001 - a probe must never take the service down
        log.warn("probe for <%s> failed: %s", log.printable(address), exc)
    finally:
        _st.pending -= 1


def _start_probe(address: str) -> None:
    if _st.pending >= _st.limit:
        now = time.monotonic()
        if now - _st.warned > 60:
            _st.warned = now
            log.warn("address_verify_pending_request_limit (%d) reached: not probing <%s>",
                     _st.limit, log.printable(address))
        return
    _st.pending += 1
    task = asyncio.ensure_future(_run_probe(address))
    _st.tasks.add(task)
    task.add_done_callback(_st.tasks.discard)


def handle(request: dict, conn=None) -> dict:
    """One request (module docstring); no I/O but the cache and starting probes."""
    what = request.get("request")
    address = request.get("address")
    shown = log.printable(address) if isinstance(address, str) else address
    if what not in ("query", "update") or not isinstance(address, str):
        log.warn("verify: bad request: %r", {k: request.get(k) for k in ("request", "address")})
        return {"status": 1}
    try:
        if what == "query":
            status, text, probe = _st.cache.query(address)
            if probe:
                _start_probe(address)
            return {"status": 0, "recipient_status": status, "reason": text}
        try:
            status = int(request.get("recipient_status"))
        except (TypeError, ValueError):
            log.warn("verify: bad update status for <%s>", shown)
            return {"status": 1}
        if not 0 <= status < STAT_TODO:
            log.warn("verify: bad update status %d for <%s>", status, shown)
            return {"status": 1}
        _st.cache.update(address, status, str(request.get("reason", "")))
        return {"status": 0}
    except Exception as exc:  # noqa: BLE001 - lmdb.Error, OSError
        log.warn("cache %s: %s: %s", _st.cache.table.spec, shown, exc)
        return {"status": 0, "recipient_status": STAT_DEFER,
                "reason": "address verification cache problem"}


def main(argv: list[str]) -> None:
    """Run verify on the multi skeleton (resident, one process)."""
    from fastpost.mail.ipc import attr_service
    from fastpost.server.multi import multi_server_main

    multi_server_main(argv, attr_service(PROTOCOL, handle), name="verify",
                      params=("address_verify_map", "address_verify_pending_request_limit",
                              "address_verify_cache_cleanup_interval"),
                      pre_init=_pre_init, post_init=_post_init, on_exit=_on_exit,
                      resident=True, solitary=True)
