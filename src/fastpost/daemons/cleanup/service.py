"""CleanupService: what one cleanup process shares between its clients; the protocol.

Postfix counterpart: src/cleanup/cleanup.c (cleanup_service, pre/post jail init) and
cleanup_api.c (cleanup_open, cleanup_flush: status back to the client after the
fsync), on Postfix's multi_server idea rather than single_server: one process, one
event loop, every client connection of this worker multiplexed (see
fastpost.mail.cleanup_proto for the frames).

One CleanupService per worker process owns the queue store's Committer, so every
message of every connection this process serves shares its group commit: a batch of
messages is written with one writev and made durable with one fdatasync, and the
replies of the whole batch go out together, each connection's in one write.

Which messages may take CleanupState's common-case pass is decided here once from the
settings (``fast_path``, ``fast_maps``, ``fast_classes``) and per message in
CleanupState._fast (compiled: fastpost.daemons.cleanup.statecore); ``fast_messages``
counts those that took it.

After each indexed batch, qmgr is woken (``I`` to public/$queue_service_name) - once
per batch, never more than one trigger in flight; a qmgr that is not running is
reported once a minute (``warning: unable to look up public/qmgr``).

A connection stops taking new messages when the process retires (reload, max_idle):
it is closed as soon as its messages are answered, and the client opens a new one
(to a fresh worker).

Parameters: see settings.py; queue_directory (the working directory after the
skeleton's chdir/chroot), the queue store's own (fastpost.mail.queue).
Diagnostics: a malformed frame closes that connection with a warning; an OPEN the
store cannot take (full disk, index broken) is refused with 452 4.3.1 / 451 4.3.0.
"""

from __future__ import annotations

import asyncio
import time

from fastpost.daemons.cleanup import addrmap
from fastpost.daemons.cleanup.addrmap import AddressMapper
from fastpost.daemons.cleanup.state import CleanupState
from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P
from fastpost.mail import ipc
from fastpost.mail.attrtype import DEFAULT_MAX_DEPTH, DEFAULT_MAX_FRAME, AttrError
from fastpost.mail.queue import InsufficientStorage, QueueError
from fastpost.util import log

__all__ = ["CleanupService", "CleanupServerProtocol"]

#: How often a missing qmgr is reported.
QMGR_WARN_INTERVAL = 60.0
#: How many refused messages' IDs a connection keeps for an OPEN's ``reuse_id``.
REFUSED_IDS_KEPT = 64


class CleanupService:
    """Per-process cleanup state (see the module docstring)."""

    #: delay_logging_resolution_limit, for a returned message's ``status=bounced`` lines
    #: (returned.py; set by _post_init)
    delay_limit = 2

    def __init__(self, settings, store, committer, rewriter, *, loop=None, long_ids=False,
                 queue_directory: str = ".", trigger_qmgr: bool = True):
        self.settings = settings
        self.store = store
        self.committer = committer
        self.loop = loop
        self.long_ids = long_ids
        self.queue_directory = queue_directory
        self.mapper = AddressMapper(settings, rewriter)
        s = settings
        self.header_checks = s.header_checks
        self.mime_header_checks = s.mime_header_checks
        self.nested_header_checks = s.nested_header_checks
        self.body_checks = s.body_checks
        self.checks_in_use = s.checks_in_use
        # The common-case pass (CleanupState._fast): what the settings allow once.
        self.fast_path = not s.strict_8bitmime_body
        self.fast_maps = bool(s.canonical or s.sender_canonical or s.recipient_canonical
                              or s.masquerade_domains or s.virtual or s.sender_bcc
                              or s.recipient_bcc)
        self.drop_bytes = frozenset(n.encode("latin-1") for n in s.drop_headers
                                    if n.isascii() or _latin1(n))
        m = self.mapper
        self.fast_classes = {
            ok: (addrmap.SENDER_HEADER if m.header_cacheable(addrmap.SENDER_HEADER, ok) else None,
                 addrmap.RECIPIENT_HEADER if m.header_cacheable(addrmap.RECIPIENT_HEADER, ok) else None)
            for ok in (False, True)}
        #: the class of a message's state (tests put the interpreted core's in its place)
        self.state_class = CleanupState
        self.connections: set = set()
        self.retiring = False
        self._trigger_qmgr = trigger_qmgr
        self._trigger_busy = False
        self._trigger_again = False
        self._qmgr_warned = float("-inf")  # monotonic() may be below the interval after boot
        #: statistics
        self.messages = 0
        self.fast_messages = 0  # of which the common-case pass took (CleanupState._fast)
        committer.on_indexed = self._indexed

    def protocol(self) -> "CleanupServerProtocol":
        """A protocol for one client connection (the multi skeleton's factory)."""
        return CleanupServerProtocol(self)

    async def commit(self, builder, state: int) -> str:
        """Make a message durable (group commit); return its queue ID."""
        queue_id = await self.committer.commit(builder, state)
        self.messages += 1
        return queue_id

    def open_builder(self):
        return self.committer.builder()

    # -- waking qmgr ----------------------------------------------------------------------

    def _indexed(self, queue_ids) -> None:
        if not self._trigger_qmgr:
            return
        if self._trigger_busy:
            self._trigger_again = True
            return
        self._trigger_busy = True
        self.loop.create_task(self._wake_qmgr())

    async def _wake_qmgr(self) -> None:
        name = self.settings.queue_service_name
        try:
            while True:
                self._trigger_again = False
                try:
                    await ipc.async_mail_trigger(self.queue_directory, name, ipc.QMGR_SCAN_INCOMING,
                                                 timeout=5)
                except ipc.IPCError as exc:
                    now = time.monotonic()
                    if now - self._qmgr_warned > QMGR_WARN_INTERVAL:
                        self._qmgr_warned = now
                        log.warn("unable to look up public/%s: %s", name,
                                 str(exc).split(": ", 1)[-1])
                if not self._trigger_again:
                    return
        finally:
            self._trigger_busy = False

    # -- retirement -----------------------------------------------------------------------

    def retire(self) -> None:
        """Stop taking messages; close each connection once its messages are answered."""
        self.retiring = True
        for conn in list(self.connections):
            conn.close_when_idle()

    async def close(self) -> None:
        for conn in list(self.connections):
            conn.close_when_idle()
        await self.committer.close()
        self.store.close()
        log.flush()


def _latin1(name: str) -> bool:
    try:
        name.encode("latin-1")
    except UnicodeEncodeError:
        return False  # such a name can never match a header's (latin-1 decoded) name
    return True


class CleanupServerProtocol(asyncio.BufferedProtocol):
    """One client connection: many messages, replies batched (module docstring)."""

    def __init__(self, svc: CleanupService):
        self.svc = svc
        self.decoder = attr.FrameDecoder(DEFAULT_MAX_FRAME, DEFAULT_MAX_DEPTH)
        # the transport asks the decoder for its buffer directly (the compiled method,
        # no interpreted call per read); get_buffer below says the same for a reader
        self.get_buffer = self.decoder.get_buffer
        self.transport = None
        self.states: dict[int, CleanupState] = {}
        self.out: list = []
        self.flush_scheduled = False
        self.final = False  # a final reply (not a queue ID) waits in ``out``
        self.closing = False
        self.closed = False
        #: queue IDs of this connection's messages refused for good (5xx), newest last:
        #: an OPEN with ``reuse_id`` may take one again (pickup's returned rejects)
        self.refused_ids: dict[str, None] = {}
        #: stand-ins this connection opened (``reuse_id``) -> the ID their bounced
        #: lines carry: RETURNED may name them, once (returned.py)
        self.stand_ins: dict[str, str] = {}

    def connection_made(self, transport):
        self.transport = transport
        self.svc.connections.add(self)
        transport.write(attr.encode({"protocol": P.PROTOCOL}))

    def get_buffer(self, sizehint):
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes):
        decoder = self.decoder
        decoder.buffer_updated(nbytes)
        states = self.states
        try:
            while (frame := decoder.next_frame()) is not None:
                # _dispatch's common cases without its call: an OPEN, a frame of an open
                # message (its END)
                tid = frame["t"]
                op = frame["o"]
                if op == P.OPEN:
                    self._open(tid, frame)
                elif (state := states.get(tid)) is not None:
                    state.handle(frame)
                else:
                    self._dispatch(frame)
        except AttrError as exc:
            log.warn("cleanup client sent a malformed frame: %s", exc)
            self._drop()
        except (KeyError, TypeError, ValueError) as exc:
            log.warn("cleanup client sent a bad request: %s: %s", type(exc).__name__, exc)
            self._drop()

    def _dispatch(self, frame: dict) -> None:
        tid = frame["t"]
        op = frame["o"]
        if op == P.OPEN:
            self._open(tid, frame)
            return
        state = self.states.get(tid)
        if state is None:
            if op == P.END:
                self.reply(None, {"t": tid, "c": 451, "x": "4.3.0 Error: unknown transaction"})
            elif op == P.RETURNED:
                self.svc.loop.create_task(self._returned(tid, frame["id"], str(frame["x"])))
            return
        state.handle(frame)

    def _open(self, tid: int, frame: dict) -> None:
        svc = self.svc
        if tid in self.states:
            raise ValueError(f"transaction {tid} is already open")
        if self.closing:
            self.reply(None, {"t": tid, "c": 421, "x": "4.3.0 Error: cleanup is restarting"})
            return
        try:
            state = svc.state_class(svc, self, tid, frame)
        except InsufficientStorage as exc:
            log.warn("cannot open a queue file: %s", exc)
            self.reply(None, {"t": tid, "c": 452, "x": "4.3.1 Insufficient system storage"})
            return
        except (QueueError, OSError, RuntimeError) as exc:
            log.warn("cannot open a queue file: %s", exc)
            self.reply(None, {"t": tid, "c": 451, "x": "4.3.0 Error: queue file write error"})
            return
        self.states[tid] = state
        self.reply(None, {"t": tid, "id": state.queue_id})

    # -- a refused message's ID, taken again ----------------------------------------------

    def refused(self, queue_id: str) -> None:
        """Remember the ID of a message refused for good (nothing of it was written)."""
        self.refused_ids[queue_id] = None
        if len(self.refused_ids) > REFUSED_IDS_KEPT:
            del self.refused_ids[next(iter(self.refused_ids))]

    def reusable(self, queue_id) -> str | None:
        """``queue_id`` when this connection was told it for a refused message (once
        only), else None: the new message gets an ID of its own."""
        if isinstance(queue_id, str) and queue_id in self.refused_ids:
            del self.refused_ids[queue_id]
            return queue_id
        return None

    def stand_in(self, queue_id: str, refused_id: str | None) -> None:
        """An OPEN with ``reuse_id`` made ``queue_id``: a RETURNED request may mark it
        bounced, logged under ``refused_id`` (when it was this connection's) or its own."""
        self.stand_ins[queue_id] = refused_id or queue_id
        if len(self.stand_ins) > REFUSED_IDS_KEPT:
            del self.stand_ins[next(iter(self.stand_ins))]

    async def _returned(self, tid: int, queue_id, text: str) -> None:
        """RETURNED: the held stand-in's recipients are bounced (returned.py)."""
        from fastpost.daemons.cleanup.returned import mark_bounced

        log_id = self.stand_ins.pop(queue_id, None) if isinstance(queue_id, str) else None
        if log_id is None:
            code, text = 550, "5.5.1 Error: not a returned message of this connection"
        else:
            code, text = await mark_bounced(self.svc.store, queue_id, log_id, text,
                                            self.svc.delay_limit)
        self.reply(None, {"t": tid, "c": code, "x": text, "id": queue_id if code == 250 else ""})

    # -- replies --------------------------------------------------------------------------

    def reply(self, state, frame: dict) -> None:
        """Queue a reply; a state that gets its final reply is forgotten."""
        if state is not None:
            self.states.pop(state.tid, None)
            self.final = True
        if self.closed:
            if state is not None:
                log.flush()  # no reply flush here: the message-id= line now
            return
        self.out.append(frame)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.svc.loop.call_soon(self._flush)

    def forget(self, state) -> None:
        self.states.pop(state.tid, None)
        if self.closing and not self.states:
            self._close()

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.final:
            # a message's final reply: its message-id= line (StateCore, log.info_later)
            # goes first, with those of the messages that ended since the last one
            self.final = False
            log.flush()
        if self.out and not self.closed:
            out, self.out = self.out, []
            self.transport.write(attr.encode_many(out))
        if self.closing and not self.states:
            self._close()

    # -- closing --------------------------------------------------------------------------

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.states and not self.flush_scheduled:
            self._close()

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()

    def _drop(self) -> None:
        """A protocol error: abandon this connection's messages and close."""
        for state in list(self.states.values()):
            state.builder.abort()
        self.states.clear()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc):
        self.closed = True
        self.svc.connections.discard(self)
        # Messages not yet at their END are abandoned; a commit already under way
        # completes (as Postfix's cleanup finishes a message whose client went away).
        for state in list(self.states.values()):
            if not state.blocked:
                state.builder.abort()
        self.states.clear()
