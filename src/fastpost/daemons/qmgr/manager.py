"""The queue manager's work: feeding the active queue, scheduling, outcomes, retries.

Postfix counterpart: src/qmgr/qmgr.c, qmgr_active.c, qmgr_message.c, qmgr_deliver.c,
qmgr_defer.c, qmgr_bounce.c (with qmgr_transport/queue/entry in scheduler.py).

Life of a message here:

 1. **Feed.** On a trigger (``I``/``W`` incoming, ``D`` deferred, ``A`` everything
    now, ``F`` forget dead destinations) and every ``queue_run_delay`` for the
    deferred queue, due messages are read in batches while fewer than
    ``qmgr_message_active_limit`` messages and ``qmgr_message_recipient_limit``
    recipients are in core: the store thread reads each queue file's envelope, sets
    its state to active and drops its previous defer log, in one index transaction per
    batch. A message with more live recipients than the room left is read in slices
    (at least ``qmgr_message_recipient_minimum`` recipients; the next slice when the
    previous one has all its outcomes, which are recorded first). Logged:
    ``ID: from=<sender>, size=N, nrcpt=N (queue active)``.
 2. **Resolve.** Each recipient not yet done goes through trivial-rewrite (a cached
    client: one round trip per distinct address and burst): a table failure defers it
    (4.3.0 address resolver failure), a malformed address bounces it (5.1.3 bad address
    syntax), a transport in ``defer_transports`` defers it unless the run was ``A``
    (4.3.2 deferred transport), a suspended transport or a dead destination defers it
    without an attempt (4.3.0 mail transport unavailable; delivery temporarily
    suspended: <reason>). The rest become entries of the scheduler (scheduler.py),
    per transport and next hop, up to ``<transport>_destination_recipient_limit``
    recipients each; a transport over ``<transport>_recipient_limit`` recipients in
    core keeps the rest back until it has room.
 3. **Deliver.** Entries start as the scheduler allows; each is one request on
    fastpost.mail.deliver's protocol to ``private/<transport>``, over a pool of
    persistent connections (one request in flight per connection). An agent that
    cannot be reached or fails mid-request suspends its transport for
    ``transport_retry_time`` and defers its waiting mail. The reply's hop status is
    the destination feedback.
 4. **Finish.** When every recipient of the message has an outcome: the bounce, defer
    and trace entries are committed to the queue index, then the bounce service is
    asked for the notices they call for (non-delivery, expiry, delay warning after
    ``delay_warning_time`` once, success for NOTIFY=SUCCESS). Then the message is
    removed (``ID: removed``), or returned to the sender when deferred recipients
    remain and it is older than ``maximal_queue_lifetime`` (``bounce_queue_lifetime``
    for the null sender) or was force-expired (``ID: from=<sender>, status=expired,
    returned to sender``), or deferred (and the fast-flush service told about each
    deferred site that ``fast_flush_domains`` lists) until ``now + max(min(age,
    maximal_backoff_time), minimal_backoff_time)`` plus a random 0..
    ``fastpost_backoff_jitter`` percent. A notice that cannot be sent keeps the message
    (deferred) and is tried again at the next attempt. A message put on hold while it
    was active stays on hold.

At start the active queue is moved back to incoming (Postfix's recovery): a message
whose delivery was not recorded before a crash is delivered again (at least once).

Log lines for outcomes qmgr decides itself (no agent involved) have the agents'
format with ``relay=none`` (and ``status=SOFTBOUNCE`` for a bounce under soft_bounce).

Parameters: qmgr_message_active_limit, qmgr_message_recipient_limit,
qmgr_message_recipient_minimum, fast_flush_domains, flush_service_name, queue_run_delay,
minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime,
bounce_queue_lifetime, delay_warning_time, defer_transports, transport_retry_time,
soft_bounce, default_process_limit and master.cf's maxproc, initial_destination_concurrency
and every ``default_``/``<transport>_`` parameter of scheduler.py, ipc_timeout,
ipc_idle, ipc_ttl, fastpost_backoff_jitter.
Diagnostics: warnings for unreachable services (trivial-rewrite, an agent, bounce),
malformed agent replies, corrupt queue files (moved to corrupt by the store).
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import random
import time

from fastpost.mail import deliver as D
from fastpost.mail import ipc
from fastpost.mail.bounce_log import (
    ACTION_DELAYED, ACTION_DELIVERED, ACTION_FAILED, ACTION_RELAYED, LogEntry,
)
from fastpost.mail.bounce_clnt import BounceClient
from fastpost.mail.config import parse_time
from fastpost.mail.envelope import read_envelope, read_recipient_window
from fastpost.mail.flush_clnt import FLUSH_STAT_DENY, FLUSH_STAT_OK, AsyncFlushClient
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import CorruptQueueFile
from fastpost.mail.queue.store import CorruptMessage, QueueError
from fastpost.mail.resolve import FLAG_ERROR, FLAG_FAIL
from fastpost.mail.rewrite_clnt import RewriteClient
from fastpost.daemons.qmgr.scheduler import Entry, Transport, TransportLimits, parse_feedback
from fastpost.daemons.qmgr.writer import StoreThread
from fastpost.util import log

#: Messages read per store-thread activation job.
FEED_BATCH = 500


class Rcpt:
    """One recipient of an active message."""

    __slots__ = ("offset", "address", "orig", "notify", "orcpt", "transport")

    def __init__(self, offset: int, address: str, orig: str, notify: int, orcpt: str):
        self.offset = offset
        self.address = address
        self.orig = orig
        self.notify = notify
        self.orcpt = orcpt
        self.transport = ""


class Message:
    """A message in the active queue."""

    __slots__ = ("queue_id", "info", "env", "active_time", "outstanding", "rcpts", "done",
                 "deferred", "logs", "bounced", "traced", "had_bounce_log", "had_trace_log",
                 "dfxp", "incore", "finishing", "client", "next_pos", "any_deferred", "sites",
                 "slice_end")

    def __init__(self, info: ix.MessageInfo, env, active_time: float, dfxp: bool):
        self.queue_id = info.queue_id
        self.info = info
        self.env = env
        self.active_time = active_time
        self.outstanding = 0
        self.rcpts: list[Rcpt] = []
        self.done: list[int] = []  # offsets finished (sent or bounced)
        self.deferred: list[int] = []
        self.logs: list[tuple[str, bytes]] = []  # (bounce|defer|trace, block)
        self.bounced = 0
        self.traced = 0
        self.had_bounce_log = False
        self.had_trace_log = False
        self.dfxp = dfxp  # an "A" run: deliver even on defer_transports
        self.incore = 0
        self.finishing = False
        self.next_pos = None  # recipient slicing: where the next slice starts (index order)
        self.slice_end = None  # the R record offset of the current slice's last recipient
        self.any_deferred = False  # an earlier slice deferred a recipient
        self.sites: set[str] = set()  # domains of deferred recipients (fast flush)
        a = env.attrs
        self.client = {k: a[src] for k, src in (
            ("name", "log_client_name"), ("addr", "log_client_address"),
            ("port", "log_client_port"), ("proto", "log_protocol_name"),
            ("helo", "log_helo_name"), ("sasl_method", "sasl_method"),
            ("sasl_username", "sasl_username"), ("origin", "log_message_origin"),
            ("rewrite_context", "rewrite_context"), ("ident", "log_ident")) if src in a}

    @property
    def sender(self) -> str:
        return self.env.sender


def _slice(store, info, start: int, count: int) -> tuple[list, int | None]:
    """The next slice of a message's live recipients, in index (R record offset) order
    from the offset ``start`` (0: the first): (at most ``count`` live RcptInfo, the
    offset where the next slice starts or None). Read from the index a chunk at a time,
    so a message with 100,000 recipients costs a slice's worth of objects, not all."""
    live = store.recipients(info.queue_id, start, count + 1, live_only=True)
    if len(live) > count:
        return live[:count], live[count].offset
    return live, None


def _requeue_now(store, queue_id: str, pickup_service: str = "pickup") -> bool:
    """Store thread: carry out ``fastpost super -r`` of a message that was active when
    it was asked (FLAG_REQUEUE, fastpost.mail.queue.requeue): now that no delivery of
    it is under way, its recipients not yet delivered go to maildrop (qmgr runs as
    mail_owner: pickup trusts the file) and it leaves the queue. On failure it stays
    deferred and marked, and is tried again when it is next due."""
    from fastpost.cli.sendmail import wake_pickup
    from fastpost.mail.queue.requeue import requeue

    try:
        done = requeue(store, queue_id, "maildrop", None, {ix.INCOMING, ix.DEFERRED})
    except (CorruptMessage, CorruptQueueFile, QueueError, OSError) as exc:
        log.warn("%s: cannot requeue: %s", queue_id, exc)
        return False
    if done:
        log.info("%s: requeued (postsuper -r while active)", queue_id)
        try:
            wake_pickup(".", pickup_service)
        except OSError as exc:  # its timer finds the file
            log.warn("cannot wake the %s service: %s", pickup_service, exc)
    else:  # nothing left to deliver: an ordinary message again
        with store.edit() as ed:
            ed.set_flags(queue_id, remove=ix.FLAG_REQUEUE)
    return done


def _activate(store, states: list, until: float | None, limit: int, skip: frozenset,
              rcpt_room: int = 1 << 62, take_one: bool = True, minimum: int = 1,
              pickup_service: str = "pickup"):
    """Store thread: read due messages of ``states`` and make them active: at most
    ``limit`` messages, and no more than ``rcpt_room`` live recipients in all. A message
    with more live recipients than the room left is taken in slices (at least
    ``minimum`` recipients, or whatever is left of the room when ``take_one``: nothing
    else is in core); its other recipients are read when the slice is done.

    Return ([(info, envelope, had_bounce_log, had_trace_log, next_pos, live_rcpts)], more,
    blocked): ``info`` without its recipient list, ``live_rcpts`` the slice's.
    ``more`` says there may be more to take, ``blocked`` that the recipient room stopped it.
    """
    picked = []
    rcpts = 0
    full = False
    blocked = False
    marked = []  # to requeue instead of activating (super -r while they were active)
    for state in states:
        limit_t = until if state == ix.DEFERRED else None
        for info in store.due(state, limit_t, batch=FEED_BATCH, recipients=False):
            if info.queue_id in skip:
                continue
            if info.flags & ix.FLAG_REQUEUE:
                marked.append(info.queue_id)
                continue
            live = info.live
            left = rcpt_room - rcpts
            take = live
            if live > left:
                if (picked or not take_one) and left < minimum:
                    full = blocked = True
                    break
                take = max(left, minimum)
            picked.append((info, take))
            rcpts += take
            if len(picked) >= limit:
                full = True
                break
        if full:
            break
    for qid in marked:
        _requeue_now(store, qid, pickup_service)
    out = []
    for info, take in picked:
        rcpts, next_pos = _slice(store, info, 0, take)
        try:
            env = read_envelope(store.read(info.queue_id, info), {r.offset for r in rcpts})
        except CorruptMessage:
            continue  # the store moved it to corrupt and said so
        except CorruptQueueFile as exc:
            log.warn("%s: corrupt queue file (%s): moved to the corrupt queue", info.queue_id, exc)
            with store.edit() as ed:
                ed.set_state(info.queue_id, ix.CORRUPT)
            continue
        except QueueError:
            continue  # deleted meanwhile
        out.append([info, env, False, False, next_pos, rcpts])
    if out:
        index = store.index
        with store.edit() as ed:
            txn = ed.txn
            for item in out:
                qid = item[0].queue_id
                # the state may have changed since the scan
                cur = index.get(txn, qid, recipients=False)
                if cur is None or cur.state not in (ix.INCOMING, ix.DEFERRED) \
                        or cur.flags & ix.FLAG_REQUEUE:
                    item[0] = None  # deleted, held or being requeued meanwhile
                    continue
                new = ix.copy_info(cur)
                new.state = ix.ACTIVE
                new.next_retry = 0.0
                index.update(txn, cur, new)
                item[0] = new
                if _has_logs(index, txn, qid):  # rare: most messages have none
                    ed.clear_log(qid, "defer")
                    item[2] = bool(ed.logs(qid, "bounce"))
                    item[3] = bool(ed.logs(qid, "trace"))
    return [tuple(i) for i in out if i[0] is not None], full, blocked


#: _read_slice's answer when super -r asked for the message while it was active.
REQUEUE_ASKED = "requeue"


class _SliceRecords:
    """The queue file records of a slice's recipients (what _load takes from an
    envelope: ``recipients``); the message's envelope stays the one read at activation."""

    __slots__ = ("recipients", "window")

    def __init__(self, recipients: list, window: bool):
        self.recipients = recipients
        self.window = window  # read in place (True) or from the whole file (False)


def _read_slice(store, queue_id: str, start: int, count: int, after: int | None = None):
    """Store thread: the next slice of an active message (after the previous slice's
    outcomes were recorded): (info, records, next_pos, live_rcpts), None when the
    message is gone or no longer active (deleted, put on hold), REQUEUE_ASKED when
    ``fastpost super -r`` marked it (the caller finishes it, which requeues the rest).

    Only what the slice needs is read: its recipients from the index's rcp chunks, and
    their records from the queue file in place, from ``after`` (the previous slice's
    last R record) to the slice's last one (read_recipient_window; the message's
    envelope was read, and the whole file checked, at activation). When that window
    holds anything else (the slice starts in the extracted section, a Postfix file
    with pointer records), the whole file is read as at activation."""
    info = store.get(queue_id, recipients=False)
    if info is None or info.state != ix.ACTIVE:
        return None
    if info.flags & ix.FLAG_REQUEUE:  # super -r meanwhile: finish here (notices for the
        return REQUEUE_ASKED          # slices so far), then requeue what is left
    rcpts, next_pos = _slice(store, info, start, count)
    if after is not None and rcpts:
        try:
            found = read_recipient_window(lambda off, n: store.read_range(info, off, n), after,
                                          [r.offset for r in rcpts])
        except OSError:
            found = None
        if found is not None:
            return info, _SliceRecords(found, True), next_pos, rcpts
    try:
        env = read_envelope(store.read(queue_id, info), {r.offset for r in rcpts})
    except (CorruptMessage, CorruptQueueFile, QueueError):
        return None
    return info, _SliceRecords(env.recipients, False), next_pos, rcpts


def next_retry(now: float, arrival: float, min_backoff: float, max_backoff: float,
               jitter: float = 0.0, rand=random.random) -> float:
    """When a deferred message is tried again: its age bounded by the backoff times (so
    the interval roughly doubles per attempt), plus up to ``jitter`` (a fraction) more."""
    delay = min(max(now - arrival, min_backoff), max_backoff)
    if jitter:
        delay += rand() * jitter * delay
    return now + delay


def _has_logs(index, txn, queue_id: str) -> bool:
    """Whether a message has any bounce, defer or trace log entry (one cursor step)."""
    prefix = ix.log_prefix(queue_id)
    cur = txn.cursor(db=index.log)
    return cur.set_range(prefix) and bytes(cur.key()).startswith(prefix)


def _requeue(store) -> int:
    return store.requeue_active()


class Qmgr:
    """One queue manager process (see the module docstring)."""

    def __init__(self, ctx, store, maxproc: dict[str, int | None], *, flush=None):
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.loop = ctx.loop
        self.thread = StoreThread(store, self.loop)
        self.rewrite = RewriteClient(cfg, queue_directory=".")
        self.bounce = BounceClient(cfg, queue_directory=".")
        self.flush = flush if flush is not None else AsyncFlushClient(cfg, queue_directory=".")
        self.maxproc = maxproc
        p = ctx.p
        self.active_limit = max(1, int(p["qmgr_message_active_limit"]))
        self.rcpt_limit = max(1, int(p["qmgr_message_recipient_limit"]))
        self.rcpt_minimum = max(1, min(self.rcpt_limit, int(p["qmgr_message_recipient_minimum"])))
        self.peak_incore = 0  # the most recipients in core at once (tests, -v)
        self.queue_run_delay = max(1, int(p["queue_run_delay"]))
        self.pickup_service = cfg.get("pickup_service_name")  # super -r while active
        self.min_backoff = max(1, int(p["minimal_backoff_time"]))
        self.max_backoff = max(self.min_backoff, int(p["maximal_backoff_time"]))
        self.max_lifetime = int(p["maximal_queue_lifetime"])
        self.bounce_lifetime = int(p["bounce_queue_lifetime"])
        self.warn_delay = int(p["delay_warning_time"])
        self.defer_transports = set(p["defer_transports"])
        self.retry_time = max(1, int(p["transport_retry_time"]))
        self.soft_bounce = bool(p["soft_bounce"])
        D.set_soft_bounce(self.soft_bounce)  # for the status lines qmgr writes itself
        self.jitter = int(p["fastpost_backoff_jitter"]) / 100.0
        self.ipc_timeout = float(p["ipc_timeout"])
        self.ipc_idle = float(p["ipc_idle"])
        self.ipc_ttl = float(p["ipc_ttl"])
        self.transports: dict[str, Transport] = {}
        self.pools: dict[str, list] = {}
        self.messages: dict[str, Message] = {}
        self.incore_rcpts = 0
        self.need: set[str] = set()
        self.feed_event = asyncio.Event()
        self.dispatch_pending = False
        self.timers: list[tuple[float, int, object]] = []  # (when, seq, callback)
        self.timer_seq = 0
        self.timer_handle = None
        self.timer_when = 0.0  # when timer_handle fires (wall clock)
        self.dead_timers: dict = {}
        self.tasks: set = set()
        self.feeder = None
        self.stopping = False
        self.stats = {"activated": 0, "deliveries": 0, "removed": 0, "deferred": 0,
                      "expired": 0, "notices": 0, "slices": 0,
                      # later slices' records read in place / from the whole file
                      "slice_window_reads": 0, "slice_file_reads": 0}

    # -- start, triggers, stop ----------------------------------------------------------

    async def start(self) -> None:
        moved = await self.thread.call(_requeue)
        if moved:
            log.info("recovered %d message(s) from the active queue", moved)
        self.need |= {"incoming", "deferred"}
        self.feeder = self._spawn(self._feeder())
        self.loop.call_later(self.queue_run_delay, self._queue_run)

    def _queue_run(self) -> None:
        self.request("deferred")
        self.loop.call_later(self.queue_run_delay, self._queue_run)

    def trigger(self, data: bytes) -> None:
        """Handle a trigger's letters (W, I, D, A, F)."""
        for c in data.decode("ascii", "replace"):
            if c in "WI":
                self.request("incoming")
            elif c == "D":
                self.request("deferred")
            elif c == "A":
                self.request("all")
            elif c == "F":
                self.forget_dead()
            elif not c.isspace():
                log.warn("qmgr: unknown trigger request %r", c)

    def request(self, what: str) -> None:
        self.need.add(what)
        self.feed_event.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop feeding and starting deliveries; let those in flight finish and be
        recorded (up to ``grace`` seconds), so a reload or stop does not deliver them twice."""
        self.stopping = True
        deadline = self.loop.time() + grace
        while self.tasks and self.loop.time() < deadline:
            busy = [t for t in self.tasks if t is not self.feeder]
            if not busy:
                break
            await asyncio.wait(busy, timeout=max(0.0, deadline - self.loop.time()))
        for t in list(self.tasks):
            t.cancel()
        await self.thread.flush()
        self.rewrite.close()
        self.bounce.close()
        self.flush.close()
        for pool in self.pools.values():
            for c in pool:
                c.close()
        self.thread.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            from fastpost.server.lifecycle import describe_exception

            log.error("qmgr: %s", describe_exception(task.exception()))

    # -- feeding the active queue -------------------------------------------------------

    def _room(self) -> int:
        if not self.messages:
            return self.active_limit
        if self.incore_rcpts >= self.rcpt_limit:
            return 0
        return self.active_limit - len(self.messages)

    async def _feeder(self) -> None:
        while True:
            await self.feed_event.wait()
            self.feed_event.clear()
            while self.need and not self.stopping:
                room = self._room()
                if room <= 0:
                    break  # _leave() sets the event when room comes back
                if self.messages and self.incore_rcpts >= self.rcpt_limit:
                    break
                need, self.need = self.need, set()
                states = []
                if need & {"incoming", "all"}:
                    states.append(ix.INCOMING)
                if need & {"deferred", "all"}:
                    states.append(ix.DEFERRED)
                until = None if "all" in need else time.time()
                try:
                    rcpt_room = self.rcpt_limit - self.incore_rcpts
                    batch, more, blocked = await self.thread.call(
                        _activate, states, until, min(room, FEED_BATCH), frozenset(self.messages),
                        rcpt_room, not self.messages, self.rcpt_minimum, self.pickup_service)
                except Exception as exc:  # noqa: BLE001 - a store problem must not stop qmgr
                    from fastpost.server.lifecycle import describe_exception

                    log.warn("cannot read the queue: %s; trying again in 5s", describe_exception(exc))
                    self.need |= need
                    await asyncio.sleep(5)
                    continue
                now = time.time()
                for info, env, had_bounce, had_trace, next_pos, rcpts in batch:
                    self._admit(info, env, had_bounce, had_trace, now, "all" in need, next_pos,
                                rcpts)
                if more:
                    self.need |= need
                if blocked:
                    break  # no recipient room: _leave() wakes the feeder when there is

    def _admit(self, info, env, had_bounce: bool, had_trace: bool, now: float, dfxp: bool,
               next_pos: int | None = None, rcpts: list | None = None) -> None:
        msg = Message(info, env, now, dfxp)
        msg.had_bounce_log = had_bounce
        msg.had_trace_log = had_trace
        self.messages[msg.queue_id] = msg
        self.stats["activated"] += 1
        log.info("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", msg.queue_id,
                 log.printable(env.sender), env.size, env.rcpt_total)
        self._load(msg, info, env, next_pos, rcpts or [])

    def _load(self, msg: Message, info, env, next_pos: int | None, live: list) -> None:
        """Put a message's recipients (all of them, or a slice: ``live``, the index's
        live recipients, and ``env``, their queue file records) in core and start
        placing them."""
        by_offset = {r.offset: r for r in env.recipients}
        sliced = msg.next_pos is not None or next_pos is not None
        msg.rcpts = []
        for r in live:
            if r.status == ix.RCPT_DONE:
                continue
            e = by_offset.get(r.offset)
            if e is not None:
                if e.done:
                    continue
                msg.rcpts.append(Rcpt(r.offset, e.address, e.orig, e.notify, e.orcpt))
            elif not sliced:
                msg.rcpts.append(Rcpt(r.offset, r.address, "", 0, ""))
        msg.next_pos = next_pos
        msg.slice_end = live[-1].offset if live else None
        if sliced:  # the index's recipient list is read again for the next slice
            msg.info = copy.copy(info)
            msg.info.recipients, msg.info.rcpts_loaded = [], False
            self.stats["slices"] += 1
        msg.outstanding = len(msg.rcpts)
        msg.incore = len(msg.rcpts)
        self.incore_rcpts += msg.incore
        if self.incore_rcpts > self.peak_incore:
            self.peak_incore = self.incore_rcpts
            if log.verbose():
                log.info("qmgr: %d recipients in core", self.peak_incore)
        if info.flags & ix.FLAG_FORCE_EXPIRE:
            for rcpt in msg.rcpts:
                self._outcome(msg, rcpt, D.DEFERRED, "4.7.0", "message is administratively expired")
            return
        if not msg.rcpts:
            self._check_done(msg)
            return
        # Most messages resolve from the client's cache: no task, no await.
        cached = [self.rewrite.resolve_cached(msg.sender, r.address) for r in msg.rcpts]
        if None in cached:
            self._spawn(self._resolve_message(msg, cached))
        else:
            self._place(msg, cached)

    async def _resolve_message(self, msg: Message, cached: list) -> None:
        for i, rcpt in enumerate(msg.rcpts):
            if cached[i] is None:
                try:
                    cached[i] = await self.rewrite.resolve(msg.sender, rcpt.address)
                except ipc.IPCError as exc:
                    log.warn("%s: %s", msg.queue_id, exc)
        self._place(msg, cached)

    def _place(self, msg: Message, resolved: list) -> None:
        """Turn resolved recipients into entries (or immediate outcomes)."""
        groups: dict[tuple[str, str], list[Rcpt]] = {}
        for rcpt, r in zip(list(msg.rcpts), resolved):
            if r is None or r.flags & FLAG_FAIL:
                self._outcome(msg, rcpt, D.DEFERRED, "4.3.0", "address resolver failure")
                continue
            if r.flags & FLAG_ERROR:
                self._outcome(msg, rcpt, D.BOUNCED, "5.1.3", "bad address syntax")
                continue
            rcpt.address = r.recipient  # the canonical form (orig_to= comes from the O record)
            rcpt.transport = r.transport
            if r.transport in self.defer_transports and not msg.dfxp:
                self._outcome(msg, rcpt, D.DEFERRED, "4.3.2", "deferred transport")
                continue
            groups.setdefault((r.transport, r.nexthop), []).append(rcpt)
        now = time.time()
        per_transport: dict[str, list[Entry]] = {}
        for (tname, nexthop), rcpts in groups.items():
            t = self._transport(tname)
            if t.suspended_until > now:
                for rcpt in rcpts:
                    self._outcome(msg, rcpt, D.DEFERRED, "4.3.0", t.suspend_reason)
                continue
            q = t.queue(nexthop)
            if q.dead:
                dsn, text = q.dead_reason or ("4.0.0", "destination is unavailable")
                for rcpt in rcpts:
                    self._outcome(msg, rcpt, D.DEFERRED, dsn, f"delivery temporarily suspended: {text}")
                continue
            lim = t.limits.recipient_limit
            if lim > 0 and t.incore >= lim and (t.incore or t.busy):
                t.backlog.append((msg, q, rcpts))
                continue
            per_transport.setdefault(tname, []).extend(Entry(msg, c, q) for c in t.chunk(rcpts))
        for tname, entries in per_transport.items():
            self.transports[tname].add_entries(entries)
        self._kick()

    # -- transports ------------------------------------------------------------------------

    def _tvalue(self, transport: str, suffix: str, default_name: str) -> tuple[str, str]:
        """(parameter name, value) of ``<transport>_<suffix>``, else of default_name."""
        name = f"{transport}_{suffix}"
        if self.cfg.raw(name) is None:
            name = default_name
        return name, self.cfg.get(name).strip()

    def _tint(self, transport: str, suffix: str, default_name: str) -> int:
        name, value = self._tvalue(transport, suffix, default_name)
        try:
            return int(value)
        except ValueError:
            log.warn("%s: bad numerical value %r; using %s", name, value, default_name)
            return int(self.cfg.get(default_name))

    def _ttime(self, transport: str, suffix: str, default_name: str) -> float:
        name, value = self._tvalue(transport, suffix, default_name)
        seconds = parse_time(value, "s")
        if seconds is None:
            log.warn("%s: bad time value %r; using %s", name, value, default_name)
            seconds = parse_time(self.cfg.get(default_name), "s") or 0
        return float(seconds)

    def _tfeedback(self, transport: str, suffix: str, default_name: str):
        name, value = self._tvalue(transport, suffix, default_name)
        try:
            return parse_feedback(value)
        except ValueError as exc:
            log.warn("%s: %s; using %s", name, exc, default_name)
            return parse_feedback(self.cfg.get(default_name))

    def limits_for(self, name: str) -> TransportLimits:
        proc = self.maxproc.get(name, None)
        if proc is None:
            proc = int(self.cfg.get_int("default_process_limit"))
        return TransportLimits(
            process_limit=proc,
            dest_concurrency_limit=self._tint(name, "destination_concurrency_limit",
                                              "default_destination_concurrency_limit"),
            initial_concurrency=max(1, self._tint(name, "initial_destination_concurrency",
                                                  "initial_destination_concurrency")),
            positive=self._tfeedback(name, "destination_concurrency_positive_feedback",
                                     "default_destination_concurrency_positive_feedback"),
            negative=self._tfeedback(name, "destination_concurrency_negative_feedback",
                                     "default_destination_concurrency_negative_feedback"),
            cohort_limit=self._tint(name, "destination_concurrency_failed_cohort_limit",
                                    "default_destination_concurrency_failed_cohort_limit"),
            dest_rate_delay=self._ttime(name, "destination_rate_delay", "default_destination_rate_delay"),
            transport_rate_delay=self._ttime(name, "transport_rate_delay", "default_transport_rate_delay"),
            dest_recipient_limit=self._tint(name, "destination_recipient_limit",
                                            "default_destination_recipient_limit"),
            recipient_limit=self._tint(name, "recipient_limit", "default_recipient_limit"),
            dead_time=float(self.min_backoff),
        )

    def _transport(self, name: str) -> Transport:
        t = self.transports.get(name)
        if t is None:
            t = self.transports[name] = Transport(name, self.limits_for(name))
            self.pools[name] = []
        return t

    def forget_dead(self) -> None:
        """The F trigger: retry dead destinations and suspended transports now."""
        for t in self.transports.values():
            t.suspended_until = 0.0
            for q in t.queues.values():
                if q.dead:
                    q.revive()
                    t.mark_ready(q)
        for h in self.dead_timers.values():
            h.cancel()
        self.dead_timers.clear()
        self._kick()

    # -- dispatching -----------------------------------------------------------------------

    def _kick(self) -> None:
        if not self.dispatch_pending:
            self.dispatch_pending = True
            self.loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self.dispatch_pending = False
        if self.stopping:
            return
        now = time.time()
        for t in self.transports.values():
            if not t.ready:
                continue
            while True:
                entry, wake = t.next_entry(now)
                for q in t.take_later():
                    self._at(q.next_start, lambda t=t, q=q: t.mark_ready(q))
                if entry is None:
                    if wake:
                        self._at(wake, None)
                    break
                self.stats["deliveries"] += 1
                self._spawn(self._deliver(t, entry))

    def _at(self, when: float, callback) -> None:
        """Run callback (may be None) then dispatch, at ``when``."""
        self.timer_seq += 1
        heapq.heappush(self.timers, (when, self.timer_seq, callback))
        if self.timer_handle is None or self.timers[0][0] < self.timer_when:
            if self.timer_handle is not None:
                self.timer_handle.cancel()
            self.timer_when = self.timers[0][0]
            self.timer_handle = self.loop.call_at(
                self.loop.time() + max(0.0, self.timer_when - time.time()), self._timer)

    def _timer(self) -> None:
        self.timer_handle = None
        now = time.time()
        while self.timers and self.timers[0][0] <= now + 0.001:
            _, _, cb = heapq.heappop(self.timers)
            if cb is not None:
                cb()
        if self.timers:
            self.timer_when = self.timers[0][0]
            self.timer_handle = self.loop.call_at(
                self.loop.time() + max(0.0, self.timer_when - now), self._timer)
        self._kick()

    # -- delivery -----------------------------------------------------------------------

    def _client(self, t: Transport) -> ipc.AsyncAttrClient:
        pool = self.pools[t.name]
        if pool:
            return pool.pop()
        return ipc.AsyncAttrClient(ipc.endpoint(".", t.name, ipc.PRIVATE), D.PROTOCOL,
                                   timeout=self.ipc_timeout, idle=self.ipc_idle, ttl=self.ipc_ttl)

    async def _deliver(self, t: Transport, entry: Entry) -> None:
        msg = entry.message
        q = entry.queue
        env = msg.env
        by_offset = {r.offset: r for r in entry.rcpts}
        request = D.DeliveryRequest(
            msg.queue_id, t.name, q.name, env.sender,
            [D.Recipient(r.offset, r.address, r.orig, r.notify, r.orcpt) for r in entry.rcpts],
            env.arrival, msg.active_time, size=env.size, encoding=env.encoding,
            smtputf8=bool(env.smtputf8), dsn_envid=env.envid, dsn_ret=env.ret,
            client=msg.client, request_time=time.time())
        client = self._client(t)
        broken = False
        result = None
        failure = None
        try:
            reply = await client.request(request.to_attrs())
            if "error" in reply:
                raise ValueError(str(reply["error"]))
            result = D.DeliveryResult.from_attrs(reply)
        except ipc.IPCConnectError as exc:
            broken = True
            failure = ("4.3.0", "mail transport unavailable", f"connect to transport {exc}")
        except (ipc.IPCError, ValueError) as exc:
            broken = True
            failure = ("4.3.0", "unknown mail transport error", f"transport {t.name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. a request that does not encode
            from fastpost.server.lifecycle import describe_exception

            broken = True
            failure = ("4.3.0", "unknown mail transport error",
                       f"{msg.queue_id}: transport {t.name}: {describe_exception(exc)}")
        finally:
            t.finished(entry)
            if broken:
                client.close()
            else:
                self.pools[t.name].append(client)
        now = time.time()
        if failure is not None:
            dsn, text, why = failure
            log.warn("%s", why)
            for rcpt in entry.rcpts:
                self._outcome(msg, rcpt, D.DEFERRED, dsn, text)
            self._suspend(t, now, text)
        else:
            seen = set()
            for res in result.results:
                rcpt = by_offset.get(res.offset)
                if rcpt is None or res.offset in seen:
                    continue
                seen.add(res.offset)
                self._outcome(msg, rcpt, res.status, res.dsn, res.text, res.relay, logged=True,
                              transport=t.name)
            for rcpt in entry.rcpts:
                if rcpt.offset not in seen:
                    self._outcome(msg, rcpt, D.DEFERRED, "4.3.0",
                                  "delivery agent did not report this recipient")
            if result.hop_status:
                hop = result.hop_status
                if q.negative_feedback(now, str(hop.get("dsn", "4.0.0")), str(hop.get("text", ""))):
                    self._dead(t, q)
            else:
                q.positive_feedback()
        self._refill(t)
        if q.entries:
            t.mark_ready(q)
        elif q.busy == 0 and not q.dead:
            t.queues.pop(q.name, None)  # an idle destination is forgotten, as Postfix does
        self._kick()

    def _dead(self, t: Transport, q) -> None:
        """A destination was declared dead: defer what waits for it; revive it later."""
        dsn, text = q.dead_reason or ("4.0.0", "destination is unavailable")
        log.warn("%s: destination %s is not responding; suspended for %ds: %s",
                 t.name, q.name, int(t.limits.dead_time), log.printable(text))
        for e in t.drop_entries(q):
            for rcpt in e.rcpts:
                self._outcome(e.message, rcpt, D.DEFERRED, dsn, f"delivery temporarily suspended: {text}")
        key = (t.name, q.name)
        old = self.dead_timers.pop(key, None)
        if old is not None:
            old.cancel()

        def revive():
            self.dead_timers.pop(key, None)
            if q.dead:
                q.revive()
                if t.queues.get(q.name) is q and not q.entries and q.busy == 0:
                    t.queues.pop(q.name, None)
                t.mark_ready(q)
                self._kick()

        self.dead_timers[key] = self.loop.call_later(t.limits.dead_time, revive)

    def _suspend(self, t: Transport, now: float, text: str) -> None:
        """The transport's agent failed: defer its waiting mail; try again later."""
        if t.suspended_until > now:
            return
        t.suspended_until = now + self.retry_time
        t.suspend_reason = text
        for q in list(t.queues.values()):
            for e in t.drop_entries(q):
                for rcpt in e.rcpts:
                    self._outcome(e.message, rcpt, D.DEFERRED, "4.3.0", text)
        for msg, q, rcpts in t.backlog:
            for rcpt in rcpts:
                self._outcome(msg, rcpt, D.DEFERRED, "4.3.0", text)
        t.backlog.clear()
        self._at(t.suspended_until, None)

    def _refill(self, t: Transport) -> None:
        """Turn recipients kept back by <transport>_recipient_limit into entries."""
        lim = t.limits.recipient_limit
        while t.backlog and (lim <= 0 or t.incore < lim):
            msg, q, rcpts = t.backlog.pop(0)
            if q.dead:
                dsn, text = q.dead_reason or ("4.0.0", "destination is unavailable")
                for rcpt in rcpts:
                    self._outcome(msg, rcpt, D.DEFERRED, dsn, f"delivery temporarily suspended: {text}")
                continue
            if t.queues.get(q.name) is not q:
                q = t.queue(q.name)
            t.add_entries([Entry(msg, c, q) for c in t.chunk(rcpts)])

    # -- outcomes -------------------------------------------------------------------------

    def _outcome(self, msg: Message, rcpt: Rcpt, status: str, dsn: str, text: str,
                 relay: str = "none", *, logged: bool = False, transport: str = "") -> None:
        """Record one recipient's outcome; log it unless the agent did."""
        now = time.time()
        if not logged:  # with soft_bounce a bounce is logged status=SOFTBOUNCE, dsn=4.x.x
            line = D.format_status_line(
                msg.queue_id, D.Recipient(rcpt.offset, rcpt.address, rcpt.orig),
                D.RecipientResult(rcpt.offset, status, dsn, text, relay),
                arrival_time=msg.env.arrival, active_time=msg.active_time, request_time=now,
                conn_time=now, done_time=now)
            log.info("%s", log.printable(line))
        if status == D.BOUNCED and self.soft_bounce:
            status, dsn = D.DEFERRED, "4" + dsn[1:]
        if status == D.SENT:
            msg.done.append(rcpt.offset)
            if rcpt.notify & D.NOTIFY_SUCCESS:
                action = ACTION_RELAYED if transport in ("smtp", "relay") else ACTION_DELIVERED
                msg.logs.append(("trace", self._entry(rcpt, dsn, action, text, relay, now)))
                msg.traced += 1
        elif status == D.BOUNCED:
            msg.done.append(rcpt.offset)
            msg.logs.append(("bounce", self._entry(rcpt, dsn, ACTION_FAILED, text, relay, now)))
            msg.bounced += 1
        else:
            msg.deferred.append(rcpt.offset)
            msg.logs.append(("defer", self._entry(rcpt, dsn, ACTION_DELAYED, text, relay, now)))
        msg.outstanding -= 1
        if msg.outstanding <= 0:
            self._check_done(msg)

    @staticmethod
    def _entry(rcpt: Rcpt, dsn: str, action: str, text: str, relay: str, now: float) -> bytes:
        return LogEntry(rcpt.address, rcpt.offset, dsn, action, text,
                        rcpt.orig if rcpt.orig != rcpt.address else "", rcpt.orcpt, rcpt.notify,
                        relay, now).encode()

    def _check_done(self, msg: Message) -> None:
        if msg.outstanding <= 0 and not msg.finishing:
            msg.finishing = True
            if msg.next_pos is not None:  # more recipients to read: the next slice
                self._spawn(self._next_slice(msg))
                return
            if not msg.deferred and not msg.bounced and not msg.traced and \
                    not msg.any_deferred and not msg.had_bounce_log and not msg.had_trace_log:
                # Everything delivered, nothing to report: no task, one index operation.
                qid = msg.queue_id
                self.thread.edit(lambda ed: ed.delete(qid))
                log.info("%s: removed", qid)
                self.stats["removed"] += 1
                self._leave(msg)
            else:
                self._spawn(self._finish(msg))

    # -- finishing a message ----------------------------------------------------------------

    def _backoff(self, msg: Message, now: float) -> float:
        return next_retry(now, msg.env.arrival, self.min_backoff, self.max_backoff, self.jitter)

    def _deferred_sites(self, msg: Message) -> None:
        if msg.deferred and self.flush.domains:
            offsets = set(msg.deferred)
            msg.sites.update(r.address.rpartition("@")[2].lower().rstrip(".")
                             for r in msg.rcpts if r.offset in offsets)

    async def _next_slice(self, msg: Message) -> None:
        """A slice is done: record its outcomes, let its recipients go, read the next."""
        qid = msg.queue_id
        try:
            logs, done, deferred = msg.logs, msg.done, msg.deferred

            def record(ed):
                for kind, block in logs:
                    ed.append_log(qid, kind, block)
                if done:
                    ed.mark_recipients(qid, done, ix.RCPT_DONE)
                if deferred:
                    ed.mark_recipients(qid, deferred, ix.RCPT_DEFERRED)

            self._deferred_sites(msg)
            msg.any_deferred = msg.any_deferred or bool(deferred)
            msg.logs, msg.done, msg.deferred = [], [], []
            self.thread.edit(record)
            await self.thread.flush()
            self.incore_rcpts -= msg.incore
            msg.incore = 0
            msg.rcpts = []
            room = max(self.rcpt_minimum, self.rcpt_limit - self.incore_rcpts)
            got = await self.thread.call(_read_slice, qid, msg.next_pos, room, msg.slice_end)
        except Exception as exc:  # noqa: BLE001 - never leave a message stuck in core
            from fastpost.server.lifecycle import describe_exception

            log.error("%s: reading the next recipients: %s; message deferred", qid,
                      describe_exception(exc))
            got = None
            when = self._backoff(msg, time.time())
            self.thread.edit(lambda ed: (cur := ed.get(qid, False)) is not None
                             and cur.state == ix.ACTIVE
                             and ed.set_state(qid, ix.DEFERRED, next_retry=when))
        if got is None or self.stopping:  # gone, held meanwhile, or qmgr is stopping:
            self._leave(msg)               # what is not recorded is tried again later
            return
        if got is REQUEUE_ASKED:
            # the recipients not read yet are left to the requeued copy: finish as a
            # deferred message (notices for what the slices so far bounced), whose final
            # transaction sees FLAG_REQUEUE and requeues it
            msg.next_pos = None
            msg.any_deferred = True
            await self._finish(msg)
            return
        info, records, next_pos, rcpts = got
        self.stats["slice_window_reads" if records.window else "slice_file_reads"] += 1
        msg.finishing = False
        self._load(msg, info, records, next_pos, rcpts)

    async def _finish(self, msg: Message) -> None:
        try:
            await self._finish_message(msg)
        except Exception as exc:  # noqa: BLE001 - never leave a message stuck in core
            from fastpost.server.lifecycle import describe_exception

            log.error("%s: %s; message deferred", msg.queue_id, describe_exception(exc))
            qid, when = msg.queue_id, self._backoff(msg, time.time())
            self.thread.edit(lambda ed: (cur := ed.get(qid, False)) is not None
                             and cur.state == ix.ACTIVE
                             and ed.set_state(qid, ix.DEFERRED, next_retry=when))
            self._leave(msg)

    async def _finish_message(self, msg: Message) -> None:
        qid = msg.queue_id
        now = time.time()
        deferred = bool(msg.deferred) or msg.any_deferred
        lifetime = self.bounce_lifetime if msg.sender == "" else self.max_lifetime
        expired = deferred and (bool(msg.info.flags & ix.FLAG_FORCE_EXPIRE) or
                                now - msg.env.arrival > lifetime)
        warn_at = msg.env.warn_time or (msg.env.arrival + self.warn_delay if self.warn_delay > 0 else 0)
        warn = deferred and not expired and warn_at and now >= warn_at and \
            not msg.info.flags & ix.FLAG_DELAY_WARNED
        bounce_logs = msg.bounced > 0 or msg.had_bounce_log
        trace_logs = msg.traced > 0 or msg.had_trace_log
        logs, done, deferred_offsets = msg.logs, msg.done, msg.deferred

        def record(ed):
            for kind, block in logs:
                ed.append_log(qid, kind, block)
            if done:
                ed.mark_recipients(qid, done, ix.RCPT_DONE)
            if deferred_offsets:
                ed.mark_recipients(qid, deferred_offsets, ix.RCPT_DEFERRED)

        keep = False
        warned = False
        if bounce_logs or trace_logs or expired or warn:
            self.thread.edit(record)
            await self.thread.flush()
            try:
                if bounce_logs or expired:
                    kinds = (["bounce"] if bounce_logs else []) + (["defer"] if expired else [])
                    self.stats["notices"] += len(await self.bounce.flush(qid, kinds, expired=expired))
                if trace_logs:
                    self.stats["notices"] += len(await self.bounce.trace(qid))
            except ipc.IPCError as exc:
                log.warn("%s: status notice not sent, message kept: %s", qid, exc)
                keep = True
                expired = False
            if warn and not keep:
                try:
                    self.stats["notices"] += len(await self.bounce.warn(qid))
                    warned = True
                except ipc.IPCError as exc:
                    log.warn("%s: delay warning not sent: %s", qid, exc)
            record = None
        if expired:
            log.info("%s: from=<%s>, status=expired, returned to sender", qid, log.printable(msg.sender))
            self.stats["expired"] += 1
        remove = not keep and (expired or not deferred)
        next_retry = self._backoff(msg, now)
        cleared_logs = (bounce_logs or trace_logs) and not keep

        requeue_it = False

        def final(ed):
            nonlocal requeue_it
            if remove:  # its logs and recipient marks go with it
                ed.delete(qid)  # (False when an administrator deleted it meanwhile)
                return
            if record is not None:
                record(ed)
            cur = ed.get(qid, recipients=False)
            if cur is None:
                return  # deleted by an administrator meanwhile
            if cleared_logs:
                ed.clear_log(qid, "bounce")
                ed.clear_log(qid, "trace")
            if warned:
                ed.set_flags(qid, add=ix.FLAG_DELAY_WARNED)
            if cur.state == ix.ACTIVE:  # not put on hold meanwhile
                ed.set_state(qid, ix.DEFERRED, next_retry=next_retry)
                # super -r while it was active: now that its deliveries are recorded
                requeue_it = bool(cur.flags & ix.FLAG_REQUEUE)

        self.thread.edit(final)
        if not remove:
            self._spawn(self._requeue_if_asked(qid, lambda: requeue_it))
        if remove:
            log.info("%s: removed", qid)
            self.stats["removed"] += 1
        else:
            self.stats["deferred"] += 1
            if deferred and self.flush.domains:
                self._deferred_sites(msg)
                self._spawn(self._flush_add(qid, msg.sites))
        self._leave(msg)

    async def _requeue_if_asked(self, qid: str, asked) -> None:
        """After a message left the active queue: requeue it if super -r asked for it
        while it was active (``asked()``: what the final transaction found)."""
        await self.thread.flush()
        if asked():
            await self.thread.call(_requeue_now, qid, self.pickup_service)

    async def _flush_add(self, qid: str, sites: set) -> None:
        """Tell the fast-flush service about deferred mail for its sites (after the
        deferral is committed, so that a flush right after finds the message deferred)."""
        await self.thread.flush()
        for site in sorted(sites):
            if not site:
                continue
            status = await self.flush.add(site, qid)
            if status not in (FLUSH_STAT_OK, FLUSH_STAT_DENY):
                log.warn("%s: cannot tell the %s service about deferred mail for %s: %s",
                         qid, "flush", log.printable(site), self.flush.error or status)

    def _leave(self, msg: Message) -> None:
        if self.messages.pop(msg.queue_id, None) is not None:
            self.incore_rcpts -= msg.incore
            if self.need:  # the feeder stopped for lack of room: there is some now
                self.feed_event.set()


__all__ = ["Qmgr", "next_retry"]
