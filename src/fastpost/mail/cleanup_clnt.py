"""The cleanup client: many messages at once over one persistent connection.

Postfix counterpart: src/global/mail_stream.c (mail_stream_service: connect to
cleanup, send records, wait for the status) as smtpd, pickup and qmqpd use it; but
multiplexed: a Postfix smtpd opens one cleanup connection per message, a fastpost
smtpd worker sends every message of every session over one connection, and cleanup's
replies come back batched per commit.

    client = CleanupClient(path, timeout=..., idle=..., ttl=...)
    txn = client.open(meta)             # meta: the OPEN frame's fields (see cleanup_proto)
    queue_id = await txn.opened         # cleanup gave the message its ID
    txn.add_recipient(address, orcpt, notify_bits)
    waiter = txn.write(data)            # None, or a future while the socket is full
    code, text, queue_id = await txn.finish(extra)   # after cleanup's fsync
    txn.abort()                         # forget it (any time before finish)

A caller on the hot path (smtpd's CleanupSink) passes a ``listener`` to open()
instead: the connection then calls it directly when cleanup answers, and neither
``opened`` nor finish()'s future exists (no futures, no done-callbacks, no extra turn
of the event loop per answer):

    txn = client.open(meta, listener)
    listener.cleanup_opened(queue_id)          # cleanup gave the message its ID
    listener.cleanup_answered(code, text, queue_id)   # after finish(): the commit
    listener.cleanup_failed(exc)               # refused OPEN (CleanupRefused) or a
                                               # CleanupError, at any time before the end

smtpd goes one step further: its transaction is a CleanupTxn subclass that is its own
listener (fastpost.daemons.smtpd.cleanupsink), made by the caller and started with

    client.start(txn, frame)                   # frame: this message's OPEN fields

so that a message costs one object, not a transaction and a listener calling each other.

Frames of all transactions are collected during one event-loop turn and written
together (one system call); content is sent in frames of up to CHUNK bytes
(recipients ride on the first one). ``open()`` never blocks: the connection is made
in the background and frames wait for it.

Connections: one at a time per client; it is replaced when it fails, when it is older
than ``ttl`` (ipc_ttl: new messages go to a new connection, the old one is closed
when its messages are done), and closed when it has had no message for ``idle``
seconds (ipc_idle), so that cleanup processes can retire. A connection whose oldest
outstanding reply is older than ``timeout`` (ipc_timeout) is given up.

Parameters: none read here (the caller passes ipc_timeout, ipc_idle, ipc_ttl and the
endpoint).
Diagnostics: CleanupError (an IPCError naming the endpoint) from ``opened`` and
``finish()`` when cleanup cannot be reached, goes away, or answers garbage; the caller
turns it into a 451 4.3.0.
"""

from __future__ import annotations

import asyncio
import time

from fastpost._accel import select
from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P
from fastpost.mail.attrtype import DEFAULT_MAX_DEPTH, AttrError
from fastpost.mail.ipc import IPCClosed, IPCConnectError, IPCError, IPCProtocolError, IPCTimeout

#: The connection's per-message fields and attach(), compiled (_cleanupconn_py.py).
ConnFields = select("fastpost.mail._cleanupconn_c", "fastpost.mail._cleanupconn_py").ConnFields

__all__ = ["CleanupClient", "CleanupTxn", "CleanupError", "CleanupRefused", "CHUNK"]

#: Content is sent in frames of this size (a message smaller than this in one frame).
CHUNK = 65536
#: Largest reply frame accepted.
MAX_REPLY = 1 << 16


class CleanupError(IPCError):
    """cleanup could not be reached or failed mid-conversation."""


#: CleanupTxn.state: waiting for the answer to OPEN, opened, finished (waiting for
#: the commit's answer), answered or failed.
_OPENING, _OPEN, _FINISHED, _OVER = 0, 1, 2, 3


class CleanupTxn:
    """One message on its way to cleanup (see the module docstring)."""

    __slots__ = ("conn", "tid", "opened", "result", "_rcpts", "_data", "_size", "done", "error",
                 "listener", "state")

    def __init__(self, conn: "_Conn", tid: int, listener=None):
        self.conn = conn
        self.tid = tid
        #: the answers' receiver (module docstring), or None: the futures below
        self.listener = listener
        self.state = _OPENING
        self.opened: asyncio.Future | None = \
            conn.loop.create_future() if listener is None else None
        self.result: asyncio.Future | None = None
        self._rcpts: list = []
        self._data: list = []
        self._size = 0
        self.done = False
        #: the CleanupError that ended the transaction when its connection went away
        self.error: CleanupError | None = None

    def add_recipient(self, address: str, orcpt: str = "", notify: int = 0) -> None:
        """Add one envelope recipient (before any content)."""
        self._rcpts.append([address, orcpt or "", notify])

    def write(self, data: bytes):
        """Queue content; return None, or a future to wait on while cleanup's socket is full."""
        if self.done:
            return None
        self._data.append(data)
        size = self._size + len(data)
        self._size = size
        if size >= CHUNK:
            self._flush_data(P.DATA)
        conn = self.conn
        return conn.drain_waiter() if conn.paused else None

    def _flush_data(self, op: int, extra: dict | None = None) -> None:
        frame = {"o": op, "t": self.tid}
        if self._rcpts:
            frame["r"] = self._rcpts
            self._rcpts = []
        if self._data:
            frame["d"] = self._data[0] if len(self._data) == 1 else b"".join(self._data)
            self._data = []
            self._size = 0
        if extra:
            frame.update(extra)
        conn = self.conn
        conn.out.append(frame)
        if not conn.flush_scheduled and conn.ready:
            conn.flush_scheduled = True
            conn.loop.call_soon(conn.flush)

    def finish(self, extra: dict | None = None) -> asyncio.Future | None:
        """End the message; the future gives (code, text, queue_id) after cleanup's commit
        (with a listener: None, and the listener hears the answer)."""
        if self.error is not None:  # the connection went away during the content
            raise self.error
        if self.done:
            raise RuntimeError("transaction already finished")
        self.done = True
        if self.state == _OPEN:
            self.state = _FINISHED
        if self.listener is None:
            self.result = self.conn.loop.create_future()
        self._flush_data(P.END, extra)
        if self.conn.watch_handle is None:
            self.conn.armed(self)
        return self.result

    def returned(self, text: str) -> asyncio.Future:
        """After this held stand-in's 250: ask cleanup, on the same connection, to mark
        its recipients bounced with ``text`` (cleanup_proto RETURNED); the future gives
        (code, text, queue_id). Without a listener only (pickup)."""
        conn = self.conn
        if conn.closed:
            raise CleanupError(conn.client.path, "connection closed before RETURNED")
        tid = conn.next_tid
        conn.next_tid = tid + 1
        req = CleanupTxn(conn, tid)
        req.opened.set_result(self.result.result()[2])
        req.done = True
        req.state = _FINISHED
        req.result = conn.loop.create_future()
        conn.txns[tid] = req
        if conn.idle_handle is not None:
            conn.idle_handle.cancel()
            conn.idle_handle = None
        conn.send({"o": P.RETURNED, "t": tid, "id": req.opened.result(), "x": text})
        conn.armed(req)
        return req.result

    def waiting(self) -> bool:
        """True while an answer from cleanup is due (to OPEN, or to the end)."""
        if self.listener is None:
            return not self.opened.done() or (self.result is not None and not self.result.done())
        return self.state == _OPENING or self.state == _FINISHED

    def abort(self) -> None:
        """Forget the message (cleanup throws away what it has)."""
        if self.done:
            return
        self.done = True
        self._rcpts = []
        self._data = []
        conn = self.conn
        if conn.txns.pop(self.tid, None) is not None and not conn.closed:
            conn.send({"o": P.ABORT, "t": self.tid})
        conn.maybe_idle()

    def answer(self, conn: "_Conn", frame: dict) -> None:
        """cleanup's reply ``frame`` to this transaction, from ``conn``'s read: the
        queue ID (or a refusal) for the OPEN, then the commit's answer. A reply that
        cannot come now is a ValueError (the connection fails as malformed).

        smtpd's compiled transaction (daemons/smtpd/_cleanuptxn_py.py, ``answer``) has
        its own copy of the listener branch below, so that a reply costs no interpreted
        frame there: a change of these rules goes into both (tests/unit/daemons/
        test_cleanupsink_answers.py drives that copy, the cleanup client's tests this one)."""
        tid = self.tid
        listener = self.listener
        if listener is not None:
            state = self.state
            if state == _OPENING:
                if frame.get("c") is None:
                    self.state = _FINISHED if self.done else _OPEN
                    listener.cleanup_opened(frame["id"])
                    return
                del conn.txns[tid]
                self.state = _OVER
                self.done = True
                listener.cleanup_failed(_refusal(frame))
                conn.maybe_idle()
                return
            if state != _FINISHED:
                raise ValueError(f"reply for transaction {tid} before its end")
            txns = conn.txns
            del txns[tid]
            self.state = _OVER
            listener.cleanup_answered(int(frame["c"]), frame.get("x", ""), frame.get("id", ""))
            if not txns:
                conn.maybe_idle()
            return
        if not self.opened.done():
            code = frame.get("c")
            if code is None:
                self.opened.set_result(frame["id"])
                return
            del conn.txns[tid]
            self.fail(_refusal(frame))
            conn.maybe_idle()
            return
        if self.result is None or self.result.done():
            raise ValueError(f"reply for transaction {tid} before its end")
        del conn.txns[tid]
        code = int(frame["c"])
        self.result.set_result((code, frame.get("x", ""), frame.get("id", "")))
        conn.maybe_idle()

    def fail(self, exc: BaseException) -> None:
        """The connection went away: fail what is still waiting (and finish())."""
        self.done = True
        if isinstance(exc, CleanupError):
            self.error = exc
        listener = self.listener
        if listener is not None:
            if self.state != _OVER:
                self.state = _OVER
                listener.cleanup_failed(exc)
            return
        for fut in (self.opened, self.result):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a session may have gone away meanwhile


class _Conn(ConnFields, asyncio.BufferedProtocol):
    """One connection to cleanup, shared by many transactions. The fields each
    message touches, and attach(), are ConnFields' (compiled: C members)."""

    def __init__(self, client: "CleanupClient", loop):
        ConnFields.__init__(self, loop, client.ttl)
        self.client = client
        self.decoder = attr.FrameDecoder(MAX_REPLY, DEFAULT_MAX_DEPTH)
        self.transport = None
        self.progress = time.monotonic()  # last reply received
        self.drain: asyncio.Future | None = None
        self.greeted: asyncio.Future = loop.create_future()

    # -- sending ----------------------------------------------------------------------

    def send(self, frame: dict) -> None:
        self.out.append(frame)
        if not self.flush_scheduled and self.ready:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.closed or not self.out:
            return
        out, self.out = self.out, []
        self.transport.write(attr.encode_many(out))

    def drain_waiter(self):
        if not self.paused:
            return None
        if self.drain is None or self.drain.done():
            self.drain = self.loop.create_future()
        return self.drain

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    # -- transactions -----------------------------------------------------------------

    def open(self, meta: dict, listener=None) -> CleanupTxn:
        # With a listener (smtpd) meta is a dict made for this message: it becomes the
        # frame. Other callers may reuse theirs.
        return self.attach(CleanupTxn(self, 0, listener),
                           meta if listener is not None else dict(meta))

    # (attach(txn, frame): ConnFields')

    def armed(self, txn) -> None:
        """A reply is now awaited: make sure the watchdog runs."""
        if self.watch_handle is None and not self.closed:
            self.progress = time.monotonic()
            self.watch_handle = self.loop.call_later(self.client.watch_interval, self.watch)

    def watch(self) -> None:
        self.watch_handle = None
        if self.closed:
            return
        waiting = any(t.waiting() for t in self.txns.values())
        if not waiting:
            return
        if time.monotonic() - self.progress > self.client.timeout:
            self.fail(IPCTimeout(self.client.path, f"no reply within {self.client.timeout:g}s"))
            return
        self.watch_handle = self.loop.call_later(self.client.watch_interval, self.watch)

    def maybe_idle(self) -> None:
        """Close a connection without transactions after ipc_idle (or now, if replaced)."""
        if self.txns or self.closed:
            return
        if self.client.conn is not self:
            self.close()
            return
        if self.idle_handle is None and self.client.idle > 0:
            self.idle_handle = self.loop.call_later(self.client.idle, self._idle_close)

    def _idle_close(self) -> None:
        self.idle_handle = None
        if not self.txns:
            self.close()

    # -- receiving --------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes):
        self.decoder.buffer_updated(nbytes)
        self.progress = time.monotonic()  # (once per read, not per reply)
        try:
            while (frame := self.decoder.next_frame()) is not None:
                if not self.ready:
                    self._hello(frame)
                    continue
                # (the lookup here, the rest in the transaction's answer(): smtpd's
                # compiled transaction answers without an interpreted frame per reply)
                txn = self.txns.get(frame["t"])
                if txn is not None:  # (None: aborted meanwhile)
                    txn.answer(self, frame)
        except (AttrError, KeyError, TypeError, ValueError) as exc:
            self.fail(IPCProtocolError(self.client.path, f"malformed reply: {exc}"))

    def _hello(self, frame: dict) -> None:
        if frame.get("protocol") != P.PROTOCOL:
            raise ValueError(f"unexpected greeting {frame!r}")
        self.ready = True
        if not self.greeted.done():
            self.greeted.set_result(None)
        if self.out and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def _reply(self, frame: dict) -> None:
        """One reply frame to its transaction (buffer_updated does this inline)."""
        txn = self.txns.get(frame["t"])
        if txn is not None:  # (None: aborted meanwhile)
            txn.answer(self, frame)

    # -- the end ----------------------------------------------------------------------

    def fail(self, exc: IPCError) -> None:
        if self.closed:
            return
        self.closed = True
        for handle in (self.idle_handle, self.watch_handle):
            if handle is not None:
                handle.cancel()
        if self.transport is not None:
            self.transport.close()
        txns, self.txns = self.txns, {}
        err = CleanupError(exc.path, str(exc).split(": ", 1)[-1])
        for txn in txns.values():
            txn.fail(err)
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        if not self.greeted.done():
            self.greeted.set_exception(exc)
            self.greeted.exception()
        if self.client.conn is self:
            self.client.conn = None

    def close(self) -> None:
        self.fail(IPCClosed(self.client.path, "connection closed by client"))

    def connection_lost(self, exc):
        partial = self.decoder.buffered
        text = "connection closed by cleanup"
        if partial:
            text += f" in the middle of a reply ({partial} bytes)"
        self.fail(IPCClosed(self.client.path, text))


def _refusal(frame: dict) -> Exception:
    """An OPEN refused by cleanup (full disk, internal error)."""
    return CleanupRefused(int(frame["c"]), str(frame.get("x", "")))


class CleanupRefused(Exception):
    """cleanup refused to open a message: ``code`` and ``text`` are the SMTP reply."""

    def __init__(self, code: int, text: str):
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class CleanupClient:
    """Transactions to one cleanup service (see the module docstring)."""

    def __init__(self, path: str, *, connect_timeout: float = 10.0, timeout: float = 3600.0,
                 idle: float = 5.0, ttl: float = 1000.0):
        self.path = path
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.idle = idle
        self.ttl = ttl
        self.watch_interval = max(0.5, min(10.0, timeout / 4))
        self.conn: _Conn | None = None
        self.connections = 0  # statistics: connections made

    def _connection(self) -> _Conn:
        conn = self.conn
        if conn is not None and not conn.closed:
            if time.monotonic() - conn.started <= self.ttl:
                return conn
            self.conn = None  # too old: finish what it has, new messages go elsewhere
            conn.maybe_idle()
        loop = asyncio.get_running_loop()
        conn = _Conn(self, loop)
        self.conn = conn
        self.connections += 1
        loop.create_task(self._connect(conn))
        return conn

    async def _connect(self, conn: _Conn) -> None:
        loop = conn.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_unix_connection(lambda: conn, self.path)
                await conn.greeted
        except IPCError:
            pass  # conn.fail() has told its transactions
        except TimeoutError:
            conn.fail(IPCConnectError(self.path, "timeout while connecting"))
        except OSError as exc:
            conn.fail(IPCConnectError(self.path, f"connect: {exc.strerror or exc}"))

    def open(self, meta: dict, listener=None) -> CleanupTxn:
        """Start a message (never blocks; see the module docstring). With a listener,
        ``meta`` itself becomes the OPEN frame (pass a dict made for this message)."""
        return self._connection().open(meta, listener)

    def start(self, txn: CleanupTxn, frame: dict) -> CleanupTxn:
        """Start a message whose transaction the caller made: ``txn`` is an instance of
        a CleanupTxn subclass that is its own listener (``CleanupTxn.__init__(txn,
        None, 0, txn)``; smtpd's), ``frame`` a dict made for this message that becomes
        the OPEN frame. One object per message instead of a transaction and a listener."""
        conn = self.conn
        if conn is None or not conn.usable():
            conn = self._connection()
        return conn.attach(txn, frame)

    def close(self) -> None:
        """Close the connection; messages in flight fail."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
