# cython: language_level=3
"""The smtpd session's per-command plumbing: the compiled version.

Reference and specification: src/fastpost/daemons/smtpd/_session_py.py (SessionCore:
the same fields, methods, arguments and results; STATS_ORDER is imported from there).
Here SessionCore is a cdef class: the fields every command touches are typed C
fields, and the per-command path (buffer_updated -> _run -> the handler's _respond ->
_send -> _flush) calls between its own parts as C functions; the Python-visible
methods are thin wrappers over those. The session's Python subclass
(fastpost.daemons.smtpd.session.SmtpdProtocol) is called back by name as in the
reference.

Diagnostics: as the reference.
"""

from fastpost.smtp import replies
from fastpost.smtp import state as smtp_state
from fastpost.smtp.errors import RemoteProtocolError
from fastpost.smtp.events import NEED_DATA, PAUSED
from fastpost.util import log
from fastpost.daemons.smtpd._session_py import STATS_ORDER

__all__ = ["SessionCore", "STATS_ORDER"]

cdef str _CLOSED = smtp_state.CLOSED
cdef object _NEED_DATA = NEED_DATA
cdef object _PAUSED = PAUSED
cdef tuple _STATS_ORDER = STATS_ORDER


cdef class SessionCore:
    """The per-command part of one smtpd session (reference: _session_py)."""

    cdef public object service
    cdef public object settings
    cdef public object loop
    cdef public object transport
    cdef public object conn
    cdef public object client
    cdef public object where
    cdef public dict stats
    cdef public long errors
    cdef public long long bytes_in
    cdef public long long bytes_out
    cdef public bint waiting
    cdef public list _out
    cdef public bint _busy
    cdef public bint _read_paused
    cdef public bint _write_paused
    cdef public bint _closed
    cdef public list _early
    cdef public double _last_io
    cdef public bint _in_data

    def __init__(self, service):
        self.service = service
        self.settings = service.settings
        self.loop = service.loop
        self.transport = None
        self.conn = None
        self.client = None
        self.where = "CONNECT"
        self.stats = {}
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.waiting = False
        self._out = []
        self._busy = True
        self._read_paused = False
        self._write_paused = False
        self._closed = False
        self._early = []
        self._last_io = 0.0
        self._in_data = False

    # ---------------------------------------------------------------- reading

    def buffer_updated(self, Py_ssize_t nbytes):
        self._last_io = self.loop.time()
        self.bytes_in += nbytes
        self.waiting = False
        data = self.service.read_view[:nbytes]
        conn = self.conn
        if conn is None:
            self._early.append(bytes(data))
            self._c_pause_reading()
            return
        conn.receive_data(data)
        if not self._busy:
            self._c_run()
        else:
            self._c_pause_reading()

    cdef _c_pause_reading(self):
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            try:
                self.transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass

    def _pause_reading(self):
        self._c_pause_reading()

    def _resume_reading(self):
        if self._read_paused and not self._write_paused and self.transport is not None:
            self._read_paused = False
            try:
                self.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    # ---------------------------------------------------------------- the loop

    cdef _c_run(self):
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
            if event is _NEED_DATA or event is _PAUSED:
                self.waiting = event is _NEED_DATA
                break
            if conn.notes and self._notes_stop():
                continue
            handlers[type(event)](self, event)
        if conn.notes:
            self._notes_stop()
        self._c_flush()

    def _run(self):
        self._c_run()

    # ---------------------------------------------------------------- replies

    def _respond(self, verb, reply, ok=None, close=False, error=None):
        """Send the reply to ``verb``: error counting, error sleep, hard limit."""
        cdef bint err
        if error is None:
            err = reply.code >= 400
        else:
            err = error
        if err:
            self.errors += 1
        settings = self.settings
        if (err and not close and self.errors > settings.soft_error_limit
                and settings.error_sleep_time > 0):
            self._busy = True
            self._c_pause_reading()
            self._c_flush()
            self.loop.call_later(settings.error_sleep_time, self._slept, verb, reply, ok, close)
            return
        self._c_send(verb, reply, ok, close)

    cdef _c_send(self, verb, reply, ok, close):
        cdef list counts
        conn = self.conn
        if conn.input == _CLOSED:
            return
        self._out.append(conn.send(reply, close=close))
        if verb:
            if verb == "data":
                self._in_data = False
            counts = self.stats.get(verb)
            if counts is None:
                counts = [0, 0]
                self.stats[verb] = counts
            counts[1] += 1
            if (reply.code < 400 if ok is None else ok):
                counts[0] += 1
        limit = self.settings.hard_error_limit
        if self.errors >= limit and limit > 0 and conn.input != _CLOSED:
            log.info("too many errors after %s from %s", verb.upper() or self.where,
                     self.client.text)
            self._out.append(conn.send(replies.too_many_errors(self.settings.hostname),
                                       close=True))

    def _send(self, verb, reply, ok, close):
        self._c_send(verb, reply, ok, close)

    cdef _c_flush(self):
        cdef list out = self._out
        cdef bytes data
        if out and self.transport is not None:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            self.bytes_out += len(data)
            self.transport.write(data)
        conn = self.conn
        if conn is not None and conn.input == _CLOSED and not self._closed:
            self._close()

    def _flush(self):
        self._c_flush()

    def _close(self):
        self._closed = True
        self._abort_txn()
        if self.transport is not None:
            self.transport.close()

    # ---------------------------------------------------------------- statistics

    def _count(self, verb, ok):
        cdef list counts = self.stats.get(verb)
        if counts is None:
            counts = [0, 0]
            self.stats[verb] = counts
        counts[1] += 1
        if ok:
            counts[0] += 1

    def _stats_text(self):
        cdef list parts = []
        cdef long ok_total = 0, total = 0, ok, n
        cdef dict stats = self.stats
        for name in _STATS_ORDER:
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
