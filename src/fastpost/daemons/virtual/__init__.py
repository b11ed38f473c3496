"""virtual: final delivery to mailboxes of hosted (virtual) domains.

Postfix counterpart: src/virtual/virtual.c, recipient.c, mailbox.c, maildir.c,
unknown.c (virtual(8))

    virtual   unix  -       n       n       -       -       virtual

For each recipient of a delivery request (domains in virtual_mailbox_domains, whose
transport is $virtual_transport):

 1. a Delivered-To: header naming the recipient already bounces (5.4.6 ``mail
    forwarding loop for ADDR``);
 2. the mailbox is found in virtual_mailbox_maps with the full address, folded to
    lower case: ``user+ext@domain``, ``user@domain``, then ``@domain`` (pattern tables
    see only the full address); not found bounces (5.1.1 ``unknown user: "ADDR"``);
 3. the owner comes from virtual_uid_maps and virtual_gid_maps (the same search); a
    missing entry or a uid below virtual_minimum_uid (a gid <= 0) defers with a
    warning (4.3.5 ``mail system configuration error``);
 4. ``$virtual_mailbox_base/<result>``: a Maildir when it ends in ``/``, else a UNIX
    mailbox locked as virtual_mailbox_lock says; everything as that uid:gid, with
    ``Return-Path:``, ``X-Original-To:`` and ``Delivered-To:`` on top (and the From_
    line, >From quoting and a blank line for mbox); at most virtual_mailbox_limit
    bytes per mailbox or Maildir file.

Status texts are Postfix 3.7's: ``delivered to mailbox``, ``delivered to maildir``,
``delivery failed to mailbox PATH: why`` (4.2.0 unless the mailbox is full: 5.2.2).

Process model as local's (fastpost.daemons.local): one multi-client process, file
work in worker threads with a per-thread file-system identity (fastpost.util.privs).

Parameters: virtual_mailbox_base, virtual_mailbox_maps, virtual_uid_maps,
virtual_gid_maps, virtual_minimum_uid, virtual_mailbox_limit, virtual_mailbox_lock,
recipient_delimiter, strict_mailbox_ownership, deliver_lock_attempts,
deliver_lock_delay, stale_lock_time, fastpost_delivery_thread_limit.
Diagnostics: fatal at start for a relative virtual_mailbox_base or an unknown lock
method; a table that cannot be read defers (4.3.0 ``table lookup failure``).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastpost.mail import asuser
from fastpost.mail.address import split_extension
from fastpost.mail.agent import MessageSource, Outcome, log_outcome, status_of, summarize
from fastpost.mail.config import ConfigError
from fastpost.mail.deliver import DEFERRED, RecipientResult, delivery_service
from fastpost.mail.mailcopy import (
    COPY_DELIVERED, COPY_MBOX, COPY_ORIG_RCPT, COPY_RETURN_PATH, COPY_TOFILE, copy_bytes,
    delivered_key,
)
from fastpost.mail.maps import MapList, MapRetry
from fastpost.mail.maps.search import Key, asearch
from fastpost.mail.mbox import lock_mask
from fastpost.mail.queue.store import QueueStore
from fastpost.server import multi_server_main
from fastpost.util import log, privs

PARAMS = (
    "virtual_mailbox_base", "virtual_mailbox_maps", "virtual_uid_maps", "virtual_gid_maps",
    "virtual_minimum_uid", "virtual_mailbox_limit", "virtual_mailbox_lock",
    "recipient_delimiter", "strict_mailbox_ownership", "deliver_lock_attempts",
    "deliver_lock_delay", "stale_lock_time", "delay_logging_resolution_limit",
    "enable_original_recipient", "fastpost_delivery_thread_limit",
)


@dataclass
class VirtualSettings:
    service: str
    base: str
    mailbox_maps: MapList
    uid_maps: MapList
    gid_maps: MapList
    minimum_uid: int
    size_limit: int
    locks: asuser.LockPolicy
    delimiters: str
    strict_owner: bool
    resolution: int
    original_recipient: bool

    @classmethod
    def from_config(cls, cfg, service: str) -> "VirtualSettings":
        base = cfg.get("virtual_mailbox_base").strip()
        if not base.startswith("/"):
            raise ConfigError(f"{cfg.where('virtual_mailbox_base')}: do not specify relative "
                              f"pathname: virtual_mailbox_base = {base}")
        try:
            mask = lock_mask(cfg.get_list("virtual_mailbox_lock"), "virtual_mailbox_lock")
        except ValueError as exc:
            raise ConfigError(f"{cfg.where('virtual_mailbox_lock')}: {exc}") from None
        if not mask:
            raise ConfigError(f"{cfg.where('virtual_mailbox_lock')}: parameter "
                              "virtual_mailbox_lock specifies no applicable mailbox locking method")
        return cls(
            service=service, base=base.rstrip("/") or "/",
            mailbox_maps=MapList.from_param(cfg, "virtual_mailbox_maps"),
            uid_maps=MapList.from_param(cfg, "virtual_uid_maps"),
            gid_maps=MapList.from_param(cfg, "virtual_gid_maps"),
            minimum_uid=cfg.get_int("virtual_minimum_uid"),
            size_limit=cfg.get_int("virtual_mailbox_limit"),
            locks=asuser.LockPolicy(mask, max(1, cfg.get_int("deliver_lock_attempts")),
                                    float(cfg.get_time("deliver_lock_delay")),
                                    float(cfg.get_time("stale_lock_time"))),
            delimiters=cfg.get("recipient_delimiter"),
            strict_owner=cfg.get_bool("strict_mailbox_ownership"),
            resolution=cfg.get_int("delay_logging_resolution_limit"),
            original_recipient=cfg.get_bool("enable_original_recipient"),
        )


def virtual_keys(address: str, delimiters: str) -> list[Key]:
    """Keys of a virtual(8) table search: full address, without extension, @domain."""
    local, at, domain = address.rpartition("@")
    keys = [Key(address, False)]
    if not at:
        return keys
    base, ext = split_extension(local, delimiters)
    if ext:
        keys.append(Key(f"{base}@{domain}", True))
    keys.append(Key(f"@{domain}", True))
    return keys


class VirtualDelivery:
    def __init__(self, cfg: VirtualSettings, source: MessageSource, pool):
        self.cfg = cfg
        self.source = source
        self.pool = pool

    async def blocking(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def deliver(self, request) -> list[RecipientResult]:
        started = time.time()
        try:
            msg = self.source.load(request.queue_id)
        except Exception as exc:  # QueueError, CorruptMessage
            log.warn("%s: cannot read the message: %s", request.queue_id, log.printable(str(exc)))
            msg = None
        results = []
        for rcpt in request.recipients:
            orig = rcpt.orig or (rcpt.address if self.cfg.original_recipient else "")
            if msg is None:
                out = Outcome(rcpt.address, orig, DEFERRED, "4.3.0",
                              "error reading message: queue file unreadable", relay=self.cfg.service)
            else:
                dsn, text = await self.deliver_one(request, rcpt.address, orig, msg)
                out = Outcome(rcpt.address, orig, status_of(dsn), dsn, text, relay=self.cfg.service)
            log_outcome(request, rcpt.offset, out, started=started, resolution=self.cfg.resolution)
            results.append(summarize(rcpt.offset, [out], self.cfg.service))
        return results

    async def _find(self, maps: MapList, address: str):
        found = await asearch(maps, virtual_keys(address, self.cfg.delimiters))
        return None if found is None else found.value

    async def deliver_one(self, request, recipient: str, orig: str, msg) -> tuple[str, str]:
        cfg = self.cfg
        if delivered_key(recipient) in msg.delivered:
            return "5.4.6", f"mail forwarding loop for {recipient}"
        address = recipient.lower()
        shown = log.printable(address)
        try:
            mailbox = await self._find(cfg.mailbox_maps, address)
            if mailbox is None:
                return "5.1.1", f'unknown user: "{address}"'
            uid_text = await self._find(cfg.uid_maps, address)
            gid_text = await self._find(cfg.gid_maps, address)
        except MapRetry as exc:
            log.warn("%s: table lookup for %s: %s", request.queue_id, shown, log.printable(str(exc)))
            return "4.3.0", "table lookup failure"
        config_error = ("4.3.5", "mail system configuration error")
        if uid_text is None:
            log.warn("recipient %s: not found in virtual_uid_maps", shown)
            return config_error
        try:
            uid = int(uid_text.strip())
        except ValueError:
            uid = -1
        if uid < cfg.minimum_uid:
            log.warn("recipient %s: bad uid %s in virtual_uid_maps", shown, log.printable(uid_text))
            return config_error
        if gid_text is None:
            log.warn("recipient %s: not found in virtual_gid_maps", shown)
            return config_error
        try:
            gid = int(gid_text.strip())
        except ValueError:
            gid = 0
        if gid <= 0:
            log.warn("recipient %s: bad gid %s in virtual_gid_maps", shown, log.printable(gid_text))
            return config_error
        path = f"{cfg.base}/{mailbox.strip()}"
        user = asuser.Ids(uid, gid)
        if path.endswith("/"):
            flags = COPY_TOFILE | COPY_DELIVERED | COPY_RETURN_PATH | COPY_ORIG_RCPT
            data = copy_bytes(msg.text, sender=request.sender, orig_rcpt=orig,
                              delivered=recipient, flags=flags)
            res = await self.blocking(asuser.maildir, path, data, user=user, size_limit=cfg.size_limit)
            if not res.ok:
                dsn = "5.2.2" if res.dsn == "5.2.2" else "4.2.0"
                return dsn, f"delivery failed to maildir {path}: {res.text}"
            return "2.0.0", "delivered to maildir"
        data = copy_bytes(msg.text, sender=request.sender, orig_rcpt=orig, delivered=recipient,
                          flags=COPY_MBOX)
        res = await self.blocking(asuser.mailbox_file, path, data, spool=user, user=user, chown=None,
                                  locks=cfg.locks, size_limit=cfg.size_limit,
                                  strict_owner=cfg.strict_owner, default_dsn="4.2.0")
        for w in res.warnings:
            log.warn("%s", log.printable(w))
        if not res.ok:
            return res.dsn, f"delivery failed to mailbox {path}: {res.text}"
        return "2.0.0", "delivered to mailbox"


class _State:
    settings: VirtualSettings | None = None
    engine: VirtualDelivery | None = None
    store = None
    pool: ThreadPoolExecutor | None = None


_state = _State()


def pre_init(ctx) -> None:
    _state.settings = VirtualSettings.from_config(ctx.cfg, ctx.service_name or "virtual")
    privs.drop_supplementary_groups()


def post_init(ctx) -> None:
    _state.store = QueueStore.open(str(ctx.p["queue_directory"]), ctx.cfg, recover=False)
    _state.pool = ThreadPoolExecutor(max_workers=int(ctx.p["fastpost_delivery_thread_limit"]),
                                     thread_name_prefix="virtual-deliver")
    _state.engine = VirtualDelivery(_state.settings, MessageSource(_state.store), _state.pool)


def on_exit(ctx) -> None:
    if _state.pool is not None:
        _state.pool.shutdown(wait=True)
    if _state.store is not None:
        _state.store.close()


async def handle(request, ctx):
    return await _state.engine.deliver(request)


def main(argv: list[str]) -> None:
    multi_server_main(argv, delivery_service(handle), name="virtual", params=PARAMS,
                      pre_init=pre_init, post_init=post_init, on_exit=on_exit)
