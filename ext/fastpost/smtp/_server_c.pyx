# cython: language_level=3
"""The SMTP server core: the compiled version.

Reference and specification: src/fastpost/smtp/_server_py.py (ServerConnection: the
same methods, arguments, results, exceptions and state; ServerOptions, soften() and
the verb table are imported from there, not repeated). The class is a cdef class with
typed fields; the per-command path (next_event in COMMAND and DATA mode, the
common-command kernel, send() and the state it applies) runs as C calls, the rest is
the reference's code compiled.

Diagnostics: as the reference (RemoteProtocolError, LocalProtocolError).
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject, PyTypeObject, Py_TYPE
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.string cimport memcmp

from fastpost.smtp._command_c cimport quick_ptr
from fastpost.smtp._lines_c cimport _split
# (the compiled ServerState: its fields as C struct members where the state is one)
from fastpost.smtp._state_c cimport ServerState as _CState
from fastpost.smtp._reply_c cimport Reply as _CReply

import base64
import binascii
import dataclasses
from dataclasses import replace

from fastpost.smtp import events as ev
from fastpost.smtp import grammar, replies, state
from fastpost.smtp.data import ChunkDecoder
from fastpost.smtp.errors import LocalProtocolError, RemoteProtocolError
from fastpost.smtp.events import NEED_DATA, PAUSED
from fastpost.smtp.grammar import GrammarError
from fastpost.smtp._lines_c import BARE_LF, OVERLONG
from fastpost.smtp.replies import Reply
from fastpost.smtp._server_py import (
    BARE_LF_MODES, ServerOptions, soften, _decode, _HANDLERS, _HEADER_VERB,
    _PIPELINING_SHOW, _OVERLONG_SHOW, _Q_VERBS, _DATA_EVENT, _NOARG_EVENTS,
)

__all__ = ["ServerConnection", "ServerOptions", "BARE_LF_MODES", "use_fast_path",
           "fast_path_taken"]

# The common-command kernel's kinds, as C integers (compared without objects).
from fastpost.smtp._server_py import _Q_HELO as _PY_Q_HELO, _Q_EHLO as _PY_Q_EHLO, \
    _Q_MAIL as _PY_Q_MAIL, _Q_RCPT as _PY_Q_RCPT, _Q_DATA as _PY_Q_DATA, \
    _Q_QUIT as _PY_Q_QUIT
cdef int _Q_HELO = _PY_Q_HELO
cdef int _Q_EHLO = _PY_Q_EHLO
cdef int _Q_MAIL = _PY_Q_MAIL
cdef int _Q_RCPT = _PY_Q_RCPT
cdef int _Q_DATA = _PY_Q_DATA
cdef int _Q_QUIT = _PY_Q_QUIT
cdef tuple _VERBS = _Q_VERBS

# The state module's names, bound once (no module attribute lookups per command).
cdef str _READY = state.READY
cdef str _MAIL = state.MAIL
cdef str _RCPT = state.RCPT
cdef str _BDAT_OPEN = state.BDAT_OPEN
cdef str _BDAT_FAILED = state.BDAT_FAILED
cdef str _BDAT_FAILED_IDLE = state.BDAT_FAILED_IDLE
cdef str _GREETING = state.GREETING
cdef str _COMMAND = state.COMMAND
cdef str _DATA = state.DATA
cdef str _CHUNK = state.CHUNK
cdef str _AUTH = state.AUTH
cdef str _TLS = state.TLS
cdef str _CLOSED = state.CLOSED
cdef frozenset _CLOSING_CODES = state.CLOSING_CODES
#: (below it no reply code closes: the set is not asked about 250s and 354s)
cdef int _MIN_CLOSING = min(_CLOSING_CODES)
cdef frozenset _LAST_IN_GROUP = state.LAST_IN_GROUP


# The events of the per-command path, made as their dataclass __init__ makes them
# without running it (an interpreted function, and a call per field): a new object,
# then every field, in order and with its default when not given, set as
# object.__setattr__ sets it (through the field's slot descriptor; the classes are
# frozen, so their own __setattr__ refuses). Each class: a tuple of (the field's
# slot descriptor, its default or MISSING).
cdef dict _EVENT_FIELDS = {}
cdef tuple _NO_ARGS = ()


cdef void _event_fields(type cls) except *:
    fields = []
    for f in dataclasses.fields(cls):
        descr = cls.__dict__.get(f.name)
        if (f.default_factory is not dataclasses.MISSING or not f.init
                or Py_TYPE(descr).tp_descr_set == NULL):
            raise TypeError(f"{cls.__name__}.{f.name}: _event() sets slotted plain fields only")
        fields.append((descr, f.default))
    _EVENT_FIELDS[cls] = tuple(fields)


for _cls in (ev.Helo, ev.Ehlo, ev.Mail, ev.Rcpt, ev.DataChunk, ev.EndOfData):
    _event_fields(_cls)


cdef object _event(type cls, tuple values):
    """``cls(*values)`` for the event classes above (the same object, fields and
    defaults; tests/unit/smtp/test_command.py compares them with the reference's)."""
    cdef tuple fields = <tuple>_EVENT_FIELDS[cls]
    cdef Py_ssize_t i, given = len(values)
    obj = (<PyTypeObject *>cls).tp_new(cls, <PyObject *>_NO_ARGS, NULL)
    for i in range(len(fields)):
        descr, value = <tuple>fields[i]
        if i < given:
            value = values[i]
        elif value is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}: a field without a default is missing")
        Py_TYPE(descr).tp_descr_set(descr, obj, value)
    return obj


#: The common-command fast path is on (tests switch it off: use_fast_path()), and
#: how many command lines it has answered (tests: fast_path_taken()).
cdef bint _fast_path = True
cdef unsigned long long _fast_taken = 0


def use_fast_path(enabled: bool) -> bool:
    """Switch the common-command fast path on or off; return whether it was on.

    For the differential tests: with it off, every command takes the general path
    (as the reference does with its ``quick`` module replaced)."""
    global _fast_path
    was = _fast_path
    _fast_path = bool(enabled)
    return was


def fast_path_taken() -> int:
    """How many command lines the fast path has answered in this process (tests)."""
    return _fast_taken




cdef int _reset_transaction(st) except -1:
    """st.reset_transaction() (state.ServerState's, without the interpreted call)."""
    cdef _CState cst
    if type(st) is _CState:  # (the compiled class: its fields directly)
        cst = <_CState>st
        cst.phase = _READY
        cst.rcpt_accepted = 0
        cst.rcpt_tried = 0
        cst.bdat_first = True
        return 0
    st.reset_transaction()
    return 0


cdef inline bint _eq(str a, str b) noexcept:
    """``a == b`` for the names this class compares on every command (input modes,
    the verb whose reply is due, the transaction phase): those are nearly always the
    same object (the module's constants); otherwise the lengths, then the characters
    (equal strings have the same kind: CPython keeps each in its narrowest form), with
    no call (hash() of each cost two calls per comparison, and most are unequal)."""
    cdef Py_ssize_t n
    cdef unsigned int kind
    if a is b:
        return True
    if a is None or b is None:
        return False
    n = PyUnicode_GET_LENGTH(a)
    kind = PyUnicode_KIND(a)
    if n != PyUnicode_GET_LENGTH(b) or kind != PyUnicode_KIND(b):
        return False
    return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), <size_t>n * kind) == 0


cdef inline bint _is_ws(unsigned char c) noexcept:
    # (fastpost.smtp.lines' white space between a verb and its arguments)
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


cdef inline unsigned char _upper(unsigned char c) noexcept:
    return c - 32 if 97 <= c <= 122 else c


cdef class _OptionCopies:
    """The fields of one ServerOptions that the quick path reads, as C members
    (ServerConnection.options' setter makes them; see there)."""

    def __init__(self, options=None):
        if options is None:
            options = ServerOptions()
        self.options = options
        self.allowed = options.access_denied is None
        self.soft_bounce = bool(options.soft_bounce)
        self.helo_required = bool(options.helo_required)
        self.tls_required = bool(options.tls_required)
        self.strict = bool(options.strict_rfc821)
        self.size_limit = options.message_size_limit
        self.rcpt_limit = options.recipient_limit


#: The copies of the options object assigned last (the usual next one: shared).
cdef _OptionCopies _last_copies = None


cdef class ServerConnection:
    """The server side of one SMTP conversation, without I/O (reference: _server_py).

    Fields and the methods other kernels call at C level: _server_c.pxd.
    """

    @property
    def options(self):
        """The ServerOptions in force (read-only: assign a new one to change them)."""
        return self._options

    @options.setter
    def options(self, value):
        # The options the per-command quick path reads, kept as C members
        # (_OptionCopies): each read of the (Python) options object from here was a
        # generic attribute lookup. ServerOptions is treated as read-only (its
        # docstring): a change is a new object assigned here. Sessions with the same
        # settings share one options object, so its copies are made once for it.
        global _last_copies
        cdef _OptionCopies copies = _last_copies
        if copies is None or copies.options is not value:
            copies = _OptionCopies(value)
            _last_copies = copies
        self._options = value
        self._o = copies

    def __init__(self, options: ServerOptions | None = None):
        self.options = options or ServerOptions()
        self.state = state.ServerState()
        self.input = _GREETING
        self._reader = LineReader(self.options.line_length_limit)
        self._pending: str | None = None  # the command whose reply is due
        self._pending_last = False  # for CHUNK/BDAT-ERROR replies: it was BDAT LAST
        self._pending_name = ""  # the HELO/EHLO name waiting for its reply
        self._error: RemoteProtocolError | None = None  # raised after a dropped chunk
        #: What take_notes() returns (read-only for callers: its truth value is
        #: has_notes without a call, for the session's per-event loop).
        self.notes: list[tuple[str, str, str]] = []
        self._eof = False
        self._closed_event_sent = False
        # DATA / BDAT content.
        self._decoder = None
        self._chunks: list[bytes] = []
        self._content_done = False
        self._chunk_left = 0
        self._chunk_last = False
        self._chunk_keep = False
        self._chunk_size = 0
        self._chunk_raw_total = 0  # raw BDAT bytes of this message so far
        self._bdat_decoder = None
        self._data_bytes = 0  # raw bytes read in DATA/BDAT (for "lost connection" logs)

    # ---------------------------------------------------------------- public API

    @property
    def closed(self) -> bool:
        """True after a closing reply was sent; the session closes the transport."""
        return self.input == _CLOSED

    @property
    def awaiting_reply(self) -> str | None:
        """The command whose reply is due ("MAIL", "EOD", "CHUNK", ...), or None."""
        return self._pending

    @property
    def data_bytes(self) -> int:
        """Raw bytes read in the current DATA/BDAT transfer (for log lines)."""
        return self._data_bytes

    @property
    def has_notes(self) -> bool:
        """True when take_notes() has something."""
        return bool(self.notes)

    def take_notes(self) -> list[tuple[str, str, str]]:
        """Return and forget what happened that Postfix logs but does not answer."""
        notes = self.notes
        if notes:
            self.notes = []
        return notes

    cpdef receive_data(self, data):
        """Add bytes received from the peer; b"" means the peer closed its side."""
        cdef Py_buffer view
        if not data:
            self._eof = True
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._receive_ptr(<const unsigned char *>view.buf, view.len, data)
        finally:
            PyBuffer_Release(&view)

    cpdef receive_from(self, buffer, Py_ssize_t nbytes):
        """receive_data() of the first ``nbytes`` of ``buffer`` (a read buffer shared
        by many connections: no slice object is made)."""
        cdef Py_buffer view
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
        try:
            if nbytes > view.len:
                nbytes = view.len
            if nbytes <= 0:
                self._eof = True
                return
            self._receive_ptr(<const unsigned char *>view.buf, nbytes, None)
        finally:
            PyBuffer_Release(&view)

    cdef int _receive_ptr(self, const unsigned char *p, Py_ssize_t n, data) except -1:
        """The n bytes at p, received (``data``: the object they are in, or None)."""
        mode = self.input
        if _eq(mode, _DATA) and not self._content_done:
            self._feed_data(p, n)
        elif _eq(mode, _CHUNK) and self._chunk_left:
            # (BDAT is not on the common path: the chunk reader takes an object)
            self._feed_chunk(<bytes>(<const char *>p)[:n] if data is None else data)
        elif not _eq(mode, _CLOSED):
            self._reader.feed_ptr(p, n)
        return 0

    cpdef next_event(self):
        """Return the next Event, NEED_DATA or PAUSED; raise RemoteProtocolError."""
        if self._pending is not None:
            return PAUSED
        mode = self.input
        if _eq(mode, _COMMAND):
            return self._next_command()
        if _eq(mode, _DATA):
            return self._next_data_event()
        if _eq(mode, _CHUNK):
            return self._next_chunk_event()
        if _eq(mode, _AUTH):
            return self._next_auth_event()
        if _eq(mode, _CLOSED):
            return self._starved()
        return PAUSED  # GREETING, TLS

    cpdef bytes send(self, reply, bint close=False):
        """Return the bytes of ``reply`` and apply what it means to the state.

        ``close`` ends the conversation after this reply (as do 421, 521 and any
        reply to QUIT).
        """
        cdef int code
        cdef _CReply creply = None
        if _eq(self.input, _CLOSED):
            raise LocalProtocolError("send() after the connection was closed")
        if type(reply) is _CReply:
            # (the compiled Reply, i.e. every reply of a running smtpd: its fields as C
            # members; another object through its attributes)
            creply = <_CReply>reply
            code = creply.code
        else:
            code = reply.code
        pending = self._pending
        if _eq(self.input, _GREETING):
            if code != 220 and self._o.allowed:
                close = True
            self.input = _COMMAND
        elif pending is None:
            if code not in _CLOSING_CODES and not close:
                raise LocalProtocolError(f"no reply is due (sending {code})")
        else:
            self._pending = None
            self._apply(pending, reply, code)
        if (close or (code >= _MIN_CLOSING and code in _CLOSING_CODES)
                or _eq(pending, "QUIT")):
            self._close()
        if code >= 500 and self._o.soft_bounce:
            return soften(reply).wire
        if creply is not None:
            return creply.wire
        return reply.wire

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: start over (RFC 3207 4.2).

        The plaintext the client sent before our 220 was dropped when the 220 was
        sent; bytes received since come from inside the TLS session (the caller
        only feeds those) and are kept: a client may send EHLO right after its
        Finished message, before the caller learns the handshake is over.
        """
        if self.input != _TLS:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self.state.reset_session()
        self.state.tls = True
        self.options = replace(self.options, starttls=False)
        self.input = _COMMAND

    def wrapper_mode(self) -> None:
        """The connection is TLS from the start (smtpd_tls_wrappermode)."""
        self.state.tls = True
        self.options = replace(self.options, starttls=False)

    # ---------------------------------------------------------------- internals

    cdef void _close(self):
        self.input = _CLOSED
        self._reader.clear()
        self._decoder = None
        self._chunks.clear()

    cdef object _starved(self):
        if self._eof and not self._closed_event_sent:
            self._closed_event_sent = True
            return ev.ConnectionClosed()
        return NEED_DATA

    def _fail(self, reply: Reply, verb: str, *, fatal: bool = False, kind: str = "",
              detail: str = ""):
        """Raise RemoteProtocolError for ``verb`` and expect its reply next."""
        self._pending = "ERROR"
        return RemoteProtocolError(reply, verb, fatal=fatal, kind=kind, detail=detail)

    cdef _apply(self, str pending, reply, int code):
        # (code: reply.code, read by send())
        cdef _CState cst
        st = self.state
        if type(st) is _CState:
            # The transitions of a plain session's replies, as state.REPLY_TRANSITIONS
            # makes them, on the compiled ServerState's C fields (no interpreted call;
            # the differential tests hold the two to each other): MAIL, RCPT, the end
            # of DATA, QUIT. (Another state class takes on_reply below.)
            cst = <_CState>st
            if _eq(pending, "MAIL"):
                if code < 400:
                    cst.phase = _MAIL
                return
            if _eq(pending, "RCPT"):
                cst.rcpt_tried += 1
                if code < 400:
                    cst.rcpt_accepted += 1
                    cst.phase = _RCPT
                return
            if _eq(pending, "QUIT"):
                return
            if _eq(pending, "EOD"):
                self.input = _COMMAND
                self._decoder = None
                _reset_transaction(st)
                self._chunk_raw_total = 0  # (the message is over: as below)
                self._bdat_decoder = None
                return
        if _eq(pending, "HELO") or _eq(pending, "EHLO"):
            if code < 400:
                _reset_transaction(st)
                st.helo = self._pending_name
                st.esmtp = _eq(pending, "EHLO")
            return
        if _eq(pending, "DATA"):
            if code == 354:
                self._start_data()
            return
        if pending == "STARTTLS":
            if code == 220:
                dropped = self._reader.clear()
                if dropped:
                    self.notes.append(("starttls-plaintext", "STARTTLS", str(dropped)))
                self.input = _TLS
            return
        if pending == "AUTH":
            st.on_reply("AUTH", code)
            if code == 334:
                self.input = _AUTH
                self._reader.limit = max(self.options.auth_response_limit,
                                         self.options.line_length_limit)
            else:
                self._end_auth()
            return
        if pending in ("EOD", "CHUNK", "BDAT-ERROR"):
            self.input = _COMMAND
            self._decoder = None
            st.on_reply(pending, code, self._pending_last)
            if st.phase in (_READY, _BDAT_FAILED, _BDAT_FAILED_IDLE):
                # The message is over (or lost): the next BDAT starts afresh.
                self._chunk_raw_total = 0
                self._bdat_decoder = None
            return
        st.on_reply(pending, code)

    cdef void _end_auth(self):
        self.input = _COMMAND
        self._reader.limit = self.options.line_length_limit

    # ------------------------------------------------------------ command lines

    cdef object _next_command(self):
        """The next command line's event (reference: read_command() then _command()).

        The common commands in their simple forms (fastpost.smtp.command) are parsed
        in one compiled pass over the line where it lies in the reader's buffer; the
        rest, and a simple command not allowed now, take the general path with the
        line's verb and argument bytes.
        """
        cdef const unsigned char *p
        cdef Py_ssize_t n, used, i, j, k
        cdef int flags
        cdef unsigned char verb[4]
        global _fast_taken
        reader = self._reader
        used = reader.peek_line(&p, &n, &flags)
        if used == 0:
            return self._starved()
        if _fast_path and not flags and self._o.allowed:
            i = 0
            while i < n and _is_ws(p[i]):
                i += 1
            j = i
            while j < n and not _is_ws(p[j]):
                j += 1
            if j - i == 4:
                for k in range(4):
                    verb[k] = _upper(p[i + k])
                while j < n and _is_ws(p[j]):
                    j += 1
                got = quick_ptr(verb, 4, p + j, n - j)
                if got is not None:
                    event = self._quick_event(<int>got[0], <str>got[1], <long long>got[2])
                    if event is not None:
                        reader.consume(used)
                        _fast_taken += 1
                        return self._quick(<int>got[0], <str>got[1], event)
        raw_verb, raw_args = _split(p, n)
        reader.consume(used)
        return self._command(raw_verb, raw_args, flags)

    cdef object _command(self, bytes raw_verb, bytes raw_args, int flags):
        """The general path of one command line (reference: _command())."""
        opts = self.options
        if flags & OVERLONG:
            self.notes.append(("overlong", raw_verb.decode("utf-8", "replace"),
                                (raw_verb + b" " + raw_args)[:_OVERLONG_SHOW]
                                .decode("utf-8", "replace")))
        if flags & BARE_LF:
            if opts.bare_lf == "reject":
                # Not counted as a command, as Postfix does.
                raise self._fail(replies.bare_lf(opts.bare_lf_reject_code, opts.hostname),
                                 "", fatal=True, kind="bare-lf")
            if opts.bare_lf == "note":
                self.notes.append(("bare-lf", raw_verb.decode("utf-8", "replace"), ""))
        if not raw_verb:
            # Not a command at all: Postfix does not count it in its statistics.
            raise self._fail(replies.BAD_SYNTAX, "")
        if opts.access_denied is not None and raw_verb != b"QUIT":
            known = raw_verb in _HANDLERS
            raise self._fail(opts.access_denied, raw_verb.decode("ascii") if known else "UNKNOWN")
        name = _HANDLERS.get(raw_verb)
        handler = getattr(self, name) if name else None
        verb = raw_verb.decode("ascii") if handler else "UNKNOWN"
        args = _decode(raw_args, opts.smtputf8)
        if args is None or (opts.smtputf8 and not handler and _decode(raw_verb, True) is None):
            raise self._fail(replies.BAD_UTF8, "")  # not counted either
        if handler is None:
            if (raw_verb in opts.forbidden or _HEADER_VERB.match(raw_verb)
                    or self._forbidden(raw_verb, raw_args)):
                raise self._fail(replies.FORBIDDEN_COMMAND, "UNKNOWN", fatal=True, kind="non-smtp",
                                 detail=(raw_verb + b" " + raw_args).rstrip()
                                 .decode("utf-8", "replace"))
            raise self._fail(replies.UNRECOGNIZED, "UNKNOWN")
        pending_bytes = self._reader.buffered
        if pending_bytes and (verb in _LAST_IN_GROUP or not self.state.esmtp):
            # BDAT: its chunk follows; QUIT: nothing follows; STARTTLS: the pending
            # plaintext is discarded at the 220 instead (Postfix does not call it
            # pipelining either).
            if verb != "BDAT" and verb != "QUIT" and verb != "STARTTLS":
                self.notes.append(("pipelining", verb, self._reader.peek(_PIPELINING_SHOW)
                                    .decode("utf-8", "replace")))
        return handler(verb, args)

    cdef object _quick_event(self, int kind, str text, long long size):
        """The event of a simple-form command when it is allowed now, else None.

        Decides only what the general path would let through without an error;
        every refusal (sequence, smtpd_helo_required, TLS, size and recipient limits,
        strict_rfc821_envelopes) is left to the general path, which answers it. No
        effects: _quick() applies them once the line is consumed.
        """
        cdef _CState st
        if type(self.state) is not _CState:
            return None  # (another state class: the general path asks it)
        st = <_CState>self.state  # (its fields as C members)
        # (the options it reads are the copies options' setter keeps: C members)
        if kind == _Q_MAIL:
            if ((self._o.helo_required and st.helo is None) or not _eq(st.phase, _READY)
                    or (self._o.tls_required and not st.tls) or self._o.strict
                    or (size >= 0 and self._o.size_limit
                        and size > self._o.size_limit)):
                return None
            event = _event(ev.Mail, (text, size if size >= 0 else None))
        elif kind == _Q_RCPT:
            if ((not _eq(st.phase, _MAIL) and not _eq(st.phase, _RCPT)) or self._o.strict
                    or (self._o.rcpt_limit and st.rcpt_accepted >= self._o.rcpt_limit)):
                return None
            event = _event(ev.Rcpt, (text,))
        elif kind == _Q_DATA:
            if not _eq(st.phase, _RCPT):
                return None
            event = _DATA_EVENT
        elif kind == _Q_EHLO:
            event = _event(ev.Ehlo, (text,))
        elif kind == _Q_HELO:
            event = _event(ev.Helo, (text,))
        else:
            event = _NOARG_EVENTS[kind]
        return event

    cdef object _quick(self, int kind, str text, event):
        """The effects of an allowed simple-form command, in the general path's order
        (the pipelining note, then the reply due); returns ``event``."""
        cdef _CState st = <_CState>self.state  # (_quick_event let only this type through)
        verb = _VERBS[kind]
        if (self._reader._end > self._reader._start and (verb in _LAST_IN_GROUP or not st.esmtp)
                and kind != _Q_QUIT):
            self.notes.append(("pipelining", verb, self._reader.peek(_PIPELINING_SHOW)
                                .decode("utf-8", "replace")))
        self._pending = verb
        self._pending_name = text if kind <= _Q_EHLO else ""
        return event

    def _forbidden(self, raw_verb: bytes, raw_args: bytes) -> bool:
        if not self.options.forbidden_patterns:
            return False
        line = (raw_verb + b" " + raw_args).decode("latin-1")
        return any(p.search(line) for p in self.options.forbidden_patterns)

    def _expect(self, verb: str, event: ev.Event, name: str = ""):
        self._pending = verb
        self._pending_name = name
        return event

    def _helo(self, verb: str, args: str):
        name = args.strip(" \t")
        if not name:
            raise self._fail(replies.HELO_SYNTAX, verb)
        return self._expect(verb, ev.Helo(name), name)

    def _ehlo(self, verb: str, args: str):
        name = args.strip(" \t")
        if not name:
            raise self._fail(replies.EHLO_SYNTAX, verb)
        return self._expect(verb, ev.Ehlo(name), name)

    def _sequence(self, verb: str):
        rule = self.state.check(verb)
        if rule is None:
            return
        if rule is state._NO_RCPT:
            raise self._fail(self.state.no_rcpt_reply(), verb)
        raise self._fail(rule, verb)

    def _mail(self, verb: str, args: str):
        opts = self.options
        st = self.state
        if opts.helo_required and st.helo is None:
            raise self._fail(replies.NEED_HELO, verb)
        self._sequence(verb)
        if opts.tls_required and not st.tls:
            raise self._fail(replies.MUST_STARTTLS, verb)
        path = ""
        try:
            path, tokens = grammar.split_mail_from(args)
            params = grammar.parse_mail_params(
                tokens, size_limit=opts.message_size_limit, smtputf8=opts.smtputf8,
                binarymime=opts.binarymime, auth=opts.auth)
            address = grammar.parse_path(
                path, replies.BAD_SENDER, utf8=params.smtputf8,
                strict=opts.strict_rfc821, allow_empty=True)
        except GrammarError as exc:
            kind = "address" if exc.reply is replies.BAD_SENDER and not exc.quiet else ""
            detail = path
            if exc.reply is replies.SIZE_EXCEEDED:
                # Postfix logs this one as a reject, with the sender.
                kind = "size"
                try:
                    detail = grammar.parse_path(path, replies.BAD_SENDER, utf8=True,
                                                allow_empty=True)
                except GrammarError:
                    detail = path
            raise self._fail(exc.reply, verb, kind=kind, detail=detail) from None
        return self._expect(verb, ev.Mail(address, params.size, params.body, params.smtputf8,
                                          params.ret, params.envid, params.auth))

    def _rcpt(self, verb: str, args: str):
        opts = self.options
        st = self.state
        # (smtpd_helo_required is checked at MAIL only: RCPT first needs a MAIL.)
        self._sequence(verb)
        path = ""
        try:
            path, tokens = grammar.split_rcpt_to(args)
            params = grammar.parse_rcpt_params(tokens)
            address = grammar.parse_path(
                path, replies.BAD_RECIPIENT, utf8=True, strict=opts.strict_rfc821,
                allow_empty=False)
        except GrammarError as exc:
            kind = "address" if exc.reply is replies.BAD_RECIPIENT and not exc.quiet else ""
            raise self._fail(exc.reply, verb, kind=kind, detail=path) from None
        if opts.recipient_limit and st.rcpt_accepted >= opts.recipient_limit:
            # Counted as tried, like Postfix; the session counts the overshoot.
            st.rcpt_tried += 1
            raise self._fail(replies.TOO_MANY_RECIPIENTS, verb, kind="rcpt-limit")
        return self._expect(verb, ev.Rcpt(address, params.notify, params.orcpt))

    def _data(self, verb: str, args: str):
        self._sequence(verb)
        if args.strip():
            # RFC 5321: DATA takes no argument; Postfix answers with its syntax.
            raise self._fail(Reply(501, "Syntax: DATA", "5.5.4"), verb)
        return self._expect(verb, ev.Data())

    def _rset(self, verb: str, args: str):
        if args.strip():
            raise self._fail(replies.RSET_SYNTAX, verb)
        return self._expect(verb, ev.Rset())

    def _noop(self, verb: str, args: str):
        return self._expect(verb, ev.Noop())

    def _quit(self, verb: str, args: str):
        return self._expect(verb, ev.Quit())

    def _help(self, verb: str, args: str):
        return self._expect(verb, ev.Help(args.strip()))

    def _vrfy(self, verb: str, args: str):
        if not self.options.vrfy:
            raise self._fail(replies.VRFY_DISABLED, verb)
        try:
            argument, address, smtputf8 = grammar.parse_vrfy(args, utf8=self.options.smtputf8)
        except GrammarError as exc:
            kind = "address" if exc.reply is replies.BAD_RECIPIENT and not exc.quiet else ""
            raise self._fail(exc.reply, verb, kind=kind, detail=args.strip()) from None
        return self._expect(verb, ev.Vrfy(argument, address, smtputf8))

    def _etrn(self, verb: str, args: str):
        st = self.state
        if st.helo is None and self.options.helo_required:
            raise self._fail(replies.ETRN_NEED_HELO, verb)
        if st.in_transaction():
            raise self._fail(replies.ETRN_IN_MAIL, verb)
        try:
            domain = grammar.parse_etrn(args)
        except GrammarError as exc:
            raise self._fail(exc.reply, verb) from None
        return self._expect(verb, ev.Etrn(domain))

    def _starttls(self, verb: str, args: str):
        if args.strip():
            raise self._fail(replies.STARTTLS_SYNTAX, verb)
        if self.state.tls:
            raise self._fail(replies.TLS_ACTIVE, verb)
        if not self.options.starttls:
            raise self._fail(replies.NOT_IMPLEMENTED, verb)
        return self._expect(verb, ev.StartTls())

    def _auth(self, verb: str, args: str):
        st = self.state
        # Postfix's order; AUTH needs no EHLO unless smtpd_helo_required says so.
        if st.helo is None and self.options.helo_required:
            raise self._fail(replies.NEED_HELO, verb)
        if not self.options.auth:
            raise self._fail(replies.AUTH_NOT_ENABLED, verb)
        if st.in_transaction():
            raise self._fail(replies.MAIL_IN_PROGRESS, verb)
        if st.authenticated:
            raise self._fail(replies.AUTH_ALREADY, verb)
        words = args.split()
        if not words or len(words) > 2:
            raise self._fail(replies.AUTH_SYNTAX, verb)
        initial = None
        if len(words) == 2:
            initial = self._b64(words[1], verb)
        return self._expect(verb, ev.Auth(words[0].upper(), initial))

    def _b64(self, text: str, verb: str) -> bytes:
        if text == "=":
            return b""
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            self._end_auth()
            raise self._fail(replies.AUTH_BAD_RESPONSE, verb) from None

    def _next_auth_event(self):
        got = self._reader.read_line()
        if got is None:
            return self._starved()
        line, flags = got
        if flags & OVERLONG:
            self._end_auth()
            raise self._fail(replies.AUTH_LINE_TOO_LONG, "AUTH")
        text = line.decode("ascii", "replace").strip()
        if text == "*":
            self._end_auth()
            raise self._fail(replies.AUTH_ABORTED, "AUTH")
        data = self._b64(text, "AUTH")
        return self._expect("AUTH", ev.AuthResponse(data))

    def _attributes(self, verb: str, args: str, allowed: bool):
        if not allowed:
            raise self._fail(replies.NOT_AUTHORIZED, verb)
        if self.state.in_transaction():
            raise self._fail(replies.MAIL_IN_PROGRESS, verb)
        try:
            return grammar.parse_attributes(verb, args)
        except GrammarError as exc:
            raise self._fail(exc.reply, verb) from None

    def _xclient(self, verb: str, args: str):
        attrs = self._attributes(verb, args, self.options.xclient)
        return self._expect(verb, ev.Xclient(attrs))

    def _xforward(self, verb: str, args: str):
        attrs = self._attributes(verb, args, self.options.xforward)
        return self._expect(verb, ev.Xforward(attrs))

    # ------------------------------------------------------------------- DATA

    cdef _start_data(self):
        """Enter DATA mode after our 354; decode what the client already sent."""
        opts = self.options
        self.input = _DATA
        self._content_done = False
        self._data_bytes = 0
        self._decoder = DotDecoder(opts.message_size_limit, opts.bare_lf != "no", True)
        cdef bytes early = self._reader.take_all()
        if early:
            self._feed_data(<const unsigned char *>PyBytes_AS_STRING(early),
                            PyBytes_GET_SIZE(early))

    cdef int _feed_data(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef Py_ssize_t used
        dec = self._decoder
        out, used, done = dec.feed_ptr(p, n)
        self._data_bytes = dec.raw_lines  # complete lines only, as Postfix counts
        if out:
            self._chunks.append(out)
        if done:
            self._content_done = True
            if used < n:
                # The bytes after the terminator are the next command(s).
                self._reader.feed_ptr(p + used, n - used)
        return 0

    cdef object _next_data_event(self):
        if self._chunks:
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks.clear()
            return _event(ev.DataChunk, (data,))
        if self._content_done:
            dec = self._decoder
            self._pending = "EOD"
            self._pending_last = True
            return _event(ev.EndOfData, (dec.size, dec.too_big, dec.bare_lf))
        if self._eof and not self._closed_event_sent:
            self._closed_event_sent = True
            return ev.ConnectionClosed()
        return NEED_DATA

    # ------------------------------------------------------------------- BDAT

    def _bdat(self, verb: str, args: str):
        opts = self.options
        words = args.split()
        if not opts.chunking:
            raise self._fail(replies.BDAT_NOT_IMPLEMENTED, verb, fatal=True)
        if (not words or len(words) > 2 or not words[0].isdigit() or not words[0].isascii()
                or len(words[0]) > 18 or (len(words) == 2 and words[1].upper() != "LAST")):
            raise self._fail(replies.BDAT_SYNTAX, verb, fatal=True, kind="bdat-syntax",
                             detail=f"BDAT {args}".rstrip())
        size = int(words[0])
        last = len(words) == 2
        self._chunk_left = size
        self._chunk_last = last
        self._chunk_size = size
        self._data_bytes = 0 if self.state.bdat_first else self._data_bytes
        rule = self.state.check(verb)
        error = None
        kind = ""
        if size == 0 and not last:
            error = replies.NULL_BDAT
            kind = "bdat-null"
        elif rule is state._DISCARD:
            error = replies.bdat_discarded(size)
        elif rule is state._NO_RCPT:
            error = self.state.no_rcpt_reply()
        elif rule is not None:
            error = rule
        elif opts.message_size_limit and self._chunk_raw_total + size > opts.message_size_limit:
            error = replies.CHUNK_TOO_BIG
            kind = "bdat-size"
        if error is not None:
            self._chunk_keep = False
            self._error = RemoteProtocolError(error, verb, kind=kind)
        else:
            self._chunk_keep = True
            self._chunk_raw_total += size
            if self.state.bdat_first or self._bdat_decoder is None:
                self._bdat_decoder = ChunkDecoder(opts.message_size_limit)
        first = self.state.bdat_first
        self.input = _CHUNK
        if size == 0:
            self._chunk_complete()
        else:
            early = self._reader.take(size)
            if early:
                self._feed_chunk(early)
        if error is not None:
            return self._next_chunk_event()
        return ev.Bdat(size, last, first)

    def _feed_chunk(self, data) -> None:
        take = min(self._chunk_left, len(data))
        part = data[:take] if take < len(data) else data
        self._chunk_left -= take
        self._data_bytes += take
        if self._chunk_keep and take:
            out = self._bdat_decoder.feed(part)
            if out:
                self._chunks.append(out)
        if not self._chunk_left:
            self._chunk_complete()
        if take < len(data):
            # Bytes after the chunk are the next command(s); the reader is empty
            # whenever chunk bytes are fed directly.
            self._reader.feed(data[take:])

    def _chunk_complete(self) -> None:
        """The whole chunk was read: end the message content after BDAT LAST."""
        if self._chunk_keep and self._chunk_last:
            tail = self._bdat_decoder.finish()
            if tail:
                self._chunks.append(tail)

    def _next_chunk_event(self):
        if self._chunks:
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks.clear()
            return ev.DataChunk(data)
        if self._chunk_left:
            if self._eof and not self._closed_event_sent:
                self._closed_event_sent = True
                return ev.ConnectionClosed()
            return NEED_DATA
        last = self._chunk_last
        self._pending_last = last
        if not self._chunk_keep:
            error = self._error
            self._error = None
            self._pending = "BDAT-ERROR"
            raise error
        dec = self._bdat_decoder
        self._pending = "CHUNK"
        return ev.ChunkEnd(self._chunk_size, last, dec.size, dec.too_big, dec.bare_lf)
