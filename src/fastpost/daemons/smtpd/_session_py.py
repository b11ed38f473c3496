"""The smtpd session's per-command plumbing: reference and specification.

Postfix counterpart: src/smtpd/smtpd.c's smtpd_proto() loop and smtpd_chat.c's
reply/flush side (the per-command bookkeeping around the protocol core).

SessionCore is the base class of fastpost.daemons.smtpd.session.SmtpdProtocol: it
holds the fields every command touches (the core connection, the transport, the
pending replies, the busy/closed/paused flags, the per-command statistics, the error
count, the byte counters) and the methods that run once or more per command:

    buffer_updated(nbytes)   bytes from the shared read buffer into the core, then _run()
    _run()                   pull the core's events and hand each to its handler
    _respond(verb, reply, ok=None, close=False, error=None)
                             error counting, the error sleep, then _send()
    _send(verb, reply, ok, close)
                             the reply through the core, the statistics, the hard limit
    _flush()                 one write of every pending reply; close after a closing one
    _close(), _pause_reading(), _resume_reading(), _count(verb, ok), _stats_text()

Everything else (handlers, policy, sink, TLS, AUTH, XCLIENT, the greeting and the
tear-down) is the Python subclass's; the core calls back into it by name:
``_handlers`` (event type -> function), ``_notes_stop()``, ``_protocol_error(err)``,
``_abort_txn()``, ``_slept(verb, reply, ok, close)`` and the ``client`` and ``where``
attributes.

The compiled version is ext/fastpost/daemons/smtpd/_session_c.pyx (a cdef class with
typed fields, the same methods, arguments and results); selector:
fastpost.daemons.smtpd.sessioncore. Checked against each other by
tests/unit/daemons/smtpd/test_sessioncore.py (generated sessions through both).

Parameters honoured (read from the session's settings at each use):
smtpd_soft_error_limit, smtpd_error_sleep_time, smtpd_hard_error_limit, myhostname.

Diagnostics: none of its own; RemoteProtocolError from the core goes to the
subclass's _protocol_error(), "too many errors after CMD from name[addr]" is logged
when the hard limit closes the session.
"""

from __future__ import annotations

from fastpost.smtp import replies
from fastpost.smtp import state as smtp_state
from fastpost.smtp.errors import RemoteProtocolError
from fastpost.smtp.events import NEED_DATA, PAUSED
from fastpost.util import log

__all__ = ["SessionCore", "STATS_ORDER"]

#: The order of the per-command counts on the "disconnect from" line (Postfix's).
STATS_ORDER = ("helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt",
               "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown")

#: The core's input mode after a closing reply.
_CLOSED = smtp_state.CLOSED


class SessionCore:
    """The per-command part of one smtpd session (module docstring)."""

    __slots__ = ("service", "settings", "loop", "transport", "conn", "client", "where",
                 "stats", "errors", "bytes_in", "bytes_out", "waiting", "_out", "_busy",
                 "_read_paused", "_write_paused", "_closed", "_early", "_last_io",
                 "_in_data")

    def __init__(self, service):
        self.service = service
        self.settings = service.settings
        self.loop = service.loop
        self.transport = None
        self.conn = None
        self.client = None
        self.where = "CONNECT"  # what "lost connection after ..." names
        self.stats: dict[str, list[int]] = {}
        self.errors = 0
        self.bytes_in = 0  # bytes received from the client
        self.bytes_out = 0  # bytes written to the client
        self.waiting = False  # the last pass ended waiting for client input
        self._out: list[bytes] = []
        self._busy = True  # until the greeting is sent
        self._read_paused = False
        self._write_paused = False
        self._closed = False
        self._early: list[bytes] = []  # bytes read before the greeting
        self._last_io = 0.0
        self._in_data = False  # 354 sent, the final DATA reply not yet

    # ---------------------------------------------------------------- reading

    def buffer_updated(self, nbytes: int) -> None:
        self._last_io = self.loop.time()
        self.bytes_in += nbytes
        self.waiting = False
        data = self.service.read_view[:nbytes]
        conn = self.conn
        if conn is None:
            self._early.append(bytes(data))
            self._pause_reading()
            return
        conn.receive_data(data)
        if not self._busy:
            self._run()
        else:
            # Waiting (policy, sink, greeting): keep what came, read no more until
            # then. Pausing only now saves two epoll changes per wait for clients
            # that do not send before our reply, i.e. nearly all of them.
            self._pause_reading()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            try:
                self.transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass

    def _resume_reading(self) -> None:
        if self._read_paused and not self._write_paused and self.transport is not None:
            self._read_paused = False
            try:
                self.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    # ---------------------------------------------------------------- the loop

    def _run(self) -> None:
        conn = self.conn
        handlers = self._handlers
        while not self._busy and not self._closed:
            try:
                event = conn.next_event()
            except RemoteProtocolError as err:
                if conn.notes and self._notes_stop():
                    continue
                self._protocol_error(err)
                continue
            if event is NEED_DATA or event is PAUSED:
                self.waiting = event is NEED_DATA
                break
            if conn.notes and self._notes_stop():
                continue
            handlers[type(event)](self, event)
        if conn.notes:
            self._notes_stop()
        self._flush()

    # ---------------------------------------------------------------- replies

    def _respond(self, verb: str, reply, ok: bool | None = None, close: bool = False,
                 error: bool | None = None) -> None:
        """Send the reply to ``verb``: error counting, error sleep, hard limit."""
        if error is None:
            error = reply.code >= 400
        if error:
            self.errors += 1
        settings = self.settings
        if (error and not close and self.errors > settings.soft_error_limit
                and settings.error_sleep_time > 0):
            self._busy = True
            self._pause_reading()
            self._flush()
            self.loop.call_later(settings.error_sleep_time, self._slept, verb, reply, ok, close)
            return
        self._send(verb, reply, ok, close)

    def _send(self, verb: str, reply, ok: bool | None, close: bool) -> None:
        conn = self.conn
        if conn.input == _CLOSED:
            return
        self._out.append(conn.send(reply, close=close))
        if verb:
            if verb == "data":
                self._in_data = False
            counts = self.stats.get(verb)
            if counts is None:
                counts = self.stats[verb] = [0, 0]
            counts[1] += 1
            if (reply.code < 400 if ok is None else ok):
                counts[0] += 1
        limit = self.settings.hard_error_limit
        if self.errors >= limit and limit > 0 and conn.input != _CLOSED:
            log.info("too many errors after %s from %s", verb.upper() or self.where,
                     self.client.text)
            self._out.append(conn.send(replies.too_many_errors(self.settings.hostname),
                                       close=True))

    def _flush(self) -> None:
        out = self._out
        if out and self.transport is not None:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            self.bytes_out += len(data)
            self.transport.write(data)
        conn = self.conn
        if conn is not None and conn.input == _CLOSED and not self._closed:
            self._close()

    def _close(self) -> None:
        self._closed = True
        self._abort_txn()
        if self.transport is not None:
            self.transport.close()

    # ---------------------------------------------------------------- statistics

    def _count(self, verb: str, ok: bool) -> None:
        counts = self.stats.get(verb)
        if counts is None:
            counts = self.stats[verb] = [0, 0]
        counts[1] += 1
        if ok:
            counts[0] += 1

    def _stats_text(self) -> str:
        parts = []
        ok_total = 0
        total = 0
        stats = self.stats
        for name in STATS_ORDER:
            counts = stats.get(name)
            if counts is None:
                continue
            ok, n = counts
            ok_total += ok
            total += n
            parts.append(f"{name}={ok}" if ok == n else f"{name}={ok}/{n}")
        parts.append(f"commands={ok_total}" if ok_total == total and total
                     else f"commands={ok_total}/{total}")
        return " ".join(parts)
