# cython: language_level=3, annotation_typing=False, nonecheck=True
"""The smtpd session's per-command plumbing: one source, run as Python and compiled.

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

and the plain commands (HELO/EHLO, MAIL, RCPT, DATA and its content, RSET, NOOP,
QUIT), the transaction's opening and commit, the connection's set-up, greeting and
tear-down. The rest (policy failures, the sink's errors, TLS, AUTH, XCLIENT, BDAT,
timeouts) is the Python subclass's (session.SessionLogic); the core calls back into
it by name: ``_handlers`` (event type -> function), ``_notes_stop()``,
``_protocol_error(err)``, ``_slept(verb, reply, ok, close)``, ``_await(...)``,
``_limited(...)``, ``_policy_failed(...)``, ``_log_reject(...)``, ``_sink_failed(exc)``,
``_content_failed(exc)``, ``_reject_fields(...)``, ``_last_recipient()``,
``_lookup_done``, ``_check_timeout``, ``_connect_counted``.

One source, two modules (Cython's pure-Python mode): this file is the reference and
specification, imported as fastpost.daemons.smtpd._session_py and run by the
interpreter; setup.py also compiles it, typed by the augmenting declarations in
ext/fastpost/daemons/smtpd/_session_c.pxd, into fastpost.daemons.smtpd._session_c,
where SessionCore is a cdef class with typed C fields and the methods named ``_c_*``
(and ``_idle``, ``_ask``, ``_eom_checked``, ``_rcpt_checked``, ``_helo_checked``) are
C functions that the Python-visible methods wrap. Interpreted, those are ordinary
methods with the same behaviour. The selector is fastpost.daemons.smtpd.sessioncore
(FASTPOST_PURE_PYTHON=1 picks this file as Python); tests/unit/daemons/test_sessioncore.py
drives both builds through generated sessions and compares them. Whatever code outside compares by
identity lives in _session_shared (one object for both builds). Rules for editing
this file: docs/conventions.md ("Kernels in Cython's pure-Python mode").

Parameters honoured (read from the session's settings at each use):
smtpd_soft_error_limit, smtpd_error_sleep_time, smtpd_hard_error_limit,
smtpd_junk_command_limit, myhostname, and what the greeting, HELO/EHLO and the
Received: header read (service.settings).

Diagnostics: none of its own beyond the session's log lines; RemoteProtocolError from
the core goes to the subclass's _protocol_error(), "too many errors after CMD from
name[addr]" is logged when the hard limit closes the session.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time

from dataclasses import replace

from fastpost.daemons.smtpd import tls as tlsmod
from fastpost.daemons.smtpd._session_shared import HANGUP, STATS_ORDER
from fastpost.daemons.smtpd.info import (
    NAME_OK, NAME_PERM, ClientInfo, Envelope, PolicyRequest, Recipient,
)
from fastpost.daemons.smtpd.received import protocol_name, received_header
from fastpost.daemons.smtpd.sink import SinkError
from fastpost.smtp import events as ev
from fastpost.smtp import replies
from fastpost.smtp import state as smtp_state
from fastpost.smtp.errors import RemoteProtocolError
from fastpost.smtp.events import NEED_DATA, PAUSED
from fastpost.smtp.replies import Reply
from fastpost.smtp.server import ServerConnection, soften
from fastpost.util import log
from fastpost.util.log import printable

__all__ = ["SessionCore", "STATS_ORDER", "CORE_HANDLERS", "HANGUP", "neuter_helo", "queued_reply"]

# Module constants: in the compiled build each is a C static (declared in the .pxd),
# read without a lookup in the module's dict.
#: The core's input mode after a closing reply.
_CLOSED = smtp_state.CLOSED
_NEED_DATA = NEED_DATA
_PAUSED = PAUSED
_STATS_ORDER = STATS_ORDER
#: _refused()'s answer after an access(5) HANGUP (_session_shared: one object).
_HANGUP = HANGUP
_UNKNOWN = "unknown"
_Future = asyncio.Future
_MAIL_OK = replies.MAIL_OK
_RCPT_OK = replies.RCPT_OK
_START_DATA = replies.START_DATA
_OK = replies.OK
_BYE = replies.BYE
#: _c_stats_text(): the text of sessions whose commands were each sent once and
#: accepted, by the names of those commands in the order they came.
_ONCE_TEXTS = {}
#: The last of them: [names, text] (_c_stats_text checks it first).
_LAST_ONCE = [(), ""]
_QUEUED = replies.queued
_Reply = Reply
#: The session's usual log lines (connect, client=, disconnect) as finished text to
#: util/_logline_py's keeper: False when the line is not for it (then log.info()).
#: Compiled, a typed LineKeeper (its keep() a C call): this build runs with the
#: compiled keeper, as log.py selects it (not under FASTPOST_PURE_PYTHON=1, where
#: the interpreted session core is selected).
_KEEPER = log.KEEPER
_monotonic = time.monotonic
#: connection_made(): the text of the server ports seen (str() of each per session
#: was ~0.5k instructions); at most 64 ports.
_PORT_TEXTS = {}

#: Characters Postfix replaces with "?" in the HELO name it keeps (and logs, and
#: shows in replies): they could confuse log parsers and address-based tools.
_NEUTER_CHARS = ' <>()\\";@'
#: str.translate's table for them: a string indexed by code point, the ASCII range
#: (a code point past its end is a LookupError to translate(): kept as it is). A
#: dict table costs translate() a KeyError per character it does not list.
_NEUTER = "".join("?" if chr(i) in _NEUTER_CHARS else chr(i) for i in range(128))
#: Whether a name has any of them (the usual HELO name has none: no translate()).
_NEUTER_SEARCH = re.compile("[" + re.escape(_NEUTER_CHARS) + "]").search


def neuter_helo(name: str) -> str:
    """Return the HELO name as smtpd keeps it (Postfix's neutered form)."""
    if _NEUTER_SEARCH(name) is None:
        return name
    return name.translate(_NEUTER)


def queued_reply(queue_id: str) -> Reply:
    """``replies.queued(queue_id)`` made without running Reply.__init__: the same
    fields and wire bytes (tests/unit/daemons/test_received.py), once per message."""
    text = "Ok: queued as " + queue_id
    reply = _Reply.__new__(_Reply)
    reply.code = 250
    reply.enhanced = "2.0.0"
    reply.lines = (text,)
    reply.wire = ("250 2.0.0 " + text + "\r\n").encode("utf-8", "surrogateescape")
    return reply


def _closed(input_mode) -> bool:
    """``input_mode == CLOSED`` (the protocol core's input mode, at every reply and
    write): by identity first, then by length, so that the other modes never reach
    a text comparison (compiled, ``==`` of two str is PyUnicode_Compare)."""
    return input_mode is _CLOSED or (
        input_mode is not None and len(input_mode) == len(_CLOSED) and input_mode == _CLOSED)


def _is_awaitable(value) -> bool:
    return hasattr(value, "__await__") or isinstance(value, _Future)


class _Deadline:
    """One session's timeout check in a _Deadlines queue; cancel() as a TimerHandle's."""

    __slots__ = ("when", "session", "owner")

    def __init__(self, when, session, owner):
        self.when = when
        self.session = session  # None once cancelled or run
        self.owner = owner

    def cancel(self):
        if self.session is not None:
            self.session = None
            self.owner.live -= 1


class _Deadlines:
    """The service's per-connection timeout checks as one FIFO queue under one loop
    timer, instead of a loop timer per connection (a uvloop call_later and its
    cancel were ~3k instructions per session).

    Every check is armed with the same delay (smtpd_timeout), so deadlines come in
    the order they are added: the head is always the earliest, and one loop timer,
    set for the head, runs each check at the moment a call_later of its own would
    have (``loop.call_at`` at the same time). A cancelled check stays in the queue
    until its turn or until the queue is rebuilt without the cancelled ones (when
    more than half of it and 64 entries are cancelled). A check that raises is
    reported to the loop's exception handler, as a callback's exception is, and
    the others still run."""

    __slots__ = ("loop", "delay", "queue", "handle", "live")

    def __init__(self, loop, delay):
        self.loop = loop
        self.delay = delay
        self.queue = collections.deque()
        self.handle = None  # the loop timer set for the head (or _fire running)
        self.live = 0  # entries not cancelled

    def add(self, session):
        """Run ``session._check_timeout()`` after the delay; a _Deadline to cancel."""
        d = _Deadline(self.loop.time() + self.delay, session, self)
        queue = self.queue
        if len(queue) > 2 * self.live + 64:
            queue = self.queue = collections.deque(
                [e for e in queue if e.session is not None])
        queue.append(d)
        self.live += 1
        if self.handle is None:
            self.handle = self.loop.call_at(d.when, self._fire)
        return d

    def _fire(self):
        self.handle = True  # (add() from a check does not set a timer of its own)
        now = self.loop.time()
        while self.queue:
            d = self.queue[0]
            session = d.session
            if session is not None:
                if d.when > now:
                    break
                d.session = None
                self.live -= 1
            self.queue.popleft()
            if session is not None:
                try:
                    session._check_timeout()
                except Exception as exc:
                    self.loop.call_exception_handler({
                        "message": "smtpd session failed in its timeout check",
                        "exception": exc, "protocol": session})
        self.handle = (self.loop.call_at(self.queue[0].when, self._fire)
                       if self.queue else None)


class ServiceFields:
    """What the session core reads of its service: SmtpdService's base (service.py),
    which sets every field in its __init__. Compiled, a cdef class whose fields are
    Python objects the core reads as C members (the service is read at every step of
    a session); the service's other attributes live in its instance dictionary."""

    __slots__ = ("settings", "sink", "policy", "_loop", "read_view", "sessions",
                 "client_counts", "limits", "greet_options", "authenticator",
                 "space_ok_until", "on_connect", "on_disconnect", "on_session_end",
                 "last_session", "greeting", "ehlo_plain", "helo_reply", "deadlines")


class SessionCore:
    """The per-command part of one smtpd session (module docstring)."""

    __slots__ = ("service", "settings", "loop", "transport", "conn", "client", "where",
                 "stats", "errors", "bytes_in", "bytes_out", "waiting", "_out", "_busy",
                 "_read_paused", "_write_paused", "_closed", "_early", "_last_io",
                 "_in_data", "envelope", "txn", "junk", "overshoot", "_data_rejected",
                 "_received_done", "_skip_log", "_greeted", "_timer", "_timeout",
                 "_auth_state", "_counted_addr", "_real_client", "_anvil_ident",
                 "_anvil_unknown", "_direct", "_sink_wait", "_sink_verb", "_sink_fn",
                 "_read_view", "_idle_stages", "_handler_table")

    def __init__(self, service):
        self.service = service
        self.settings = service.settings
        loop = service._loop  # (SmtpdService.loop without its property's frame)
        self.loop = loop if loop is not None else service.loop
        service.last_session = self  # (what tests and transcripts follow)
        self.transport = None
        self.conn = None
        self.client = ClientInfo()
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
        self.envelope = None  # the transaction's Envelope, from MAIL on
        self.txn = None  # the sink's transaction, from the first accepted RCPT on
        self.junk = 0
        self.overshoot = 0
        self._data_rejected = None  # BDAT refused at its first chunk
        self._received_done = False
        self._skip_log = False  # the policy logged the refusal being sent
        self._greeted = False
        self._timer = None
        self._timeout = self.settings.timeout
        self._auth_state = None
        self._counted_addr = None
        self._real_client = ("", "")
        self._anvil_ident = None  # counted by anvil at connect
        #: The real client may send XCLIENT: anvil knows nothing of it (no limits).
        self._anvil_unknown = False
        #: txn is a direct transaction (sink.py): it calls _sink_opened/_sink_answered
        self._direct = False
        #: what the session waits for from a direct transaction: 0 nothing, 1 the queue
        #: ID (DATA/BDAT: _sink_verb, then _sink_fn()), 2 the commit (the final reply
        #: to _sink_verb, made by _sink_fn(queue_id))
        self._sink_wait = 0
        self._sink_verb = None
        self._sink_fn = None
        #: the service's one read buffer (service.read_view, made once with the service)
        self._read_view = service.read_view
        #: the stages where the policy answers None whatever it is asked (Policy.idle_stages,
        #: fixed when the policy is made): _idle() reads it instead of the service's policy
        self._idle_stages = service.policy.idle_stages
        #: the class's _handlers (event type -> handler), kept by the first _c_run
        self._handler_table = None

    # ---------------------------------------------------------------- reading

    def get_buffer(self, sizehint: int):
        # Every session reads into the service's one buffer (service.py;
        # asyncio.BufferedProtocol), kept in this session's field.
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self._c_received(nbytes)

    def _c_received(self, nbytes: int) -> None:
        # Compiled, nbytes is a C Py_ssize_t here and conn the compiled ServerConnection
        # (the .pxd): bytes_in is a C integer, receive_from() a C call.
        self._last_io = self.loop.time()
        self.bytes_in += nbytes
        self.waiting = False
        conn = self.conn
        if conn is None:
            self._early.append(bytes(self._read_view[:nbytes]))
            self._c_pause_reading()
            return
        conn.receive_from(self._read_view, nbytes)
        if not self._busy:
            self._c_run()
        else:
            # Waiting (policy, sink, greeting): keep what came, read no more until
            # then. Pausing only now saves two epoll changes per wait for clients
            # that do not send before our reply, i.e. nearly all of them.
            self._c_pause_reading()

    def _c_pause_reading(self):
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            try:
                self.transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass

    def _pause_reading(self):
        self._c_pause_reading()

    def _resume_reading(self):
        self._c_resume_reading()

    def _c_resume_reading(self):
        if self._read_paused and not self._write_paused and self.transport is not None:
            self._read_paused = False
            try:
                self.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    # ---------------------------------------------------------------- the loop

    def _c_run(self):
        conn = self.conn
        handlers = self._handler_table
        if handlers is None:
            # (the class's _handlers, read once per session: a C field from then on)
            handlers = self._handler_table = self._handlers
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
            handler = handlers[type(event)]
            # The core's own handlers of a message's commands as C calls (the same
            # functions the def wrappers in CORE_HANDLERS call); any other, or one a
            # subclass put in _handlers instead, through the table.
            if handler is _H_RCPT:
                self._c_on_rcpt(event)
            elif handler is _H_MAIL:
                self._c_on_mail(event)
            elif handler is _H_DATA:
                self._c_on_data(event)
            elif handler is _H_CHUNK:
                self._c_on_chunk(event)
            elif handler is _H_END_OF_DATA:
                self._c_on_end_of_data(event)
            elif handler is _H_QUIT:
                self._c_on_quit(event)
            else:
                handler(self, event)
        if conn.notes:
            self._notes_stop()
        self._c_flush()

    def _run(self):
        self._c_run()

    # ---------------------------------------------------------------- replies

    def _respond(self, verb, reply, ok=None, close=False, error=None):
        """Send the reply to ``verb``: error counting, error sleep, hard limit."""
        self._c_respond(verb, reply, ok, close, error)

    def _c_respond(self, verb, reply, ok=None, close=False, error=None):
        if error is None:
            err = reply.code >= 400
            if ok is None:
                ok = not err  # (what _c_send would find: reply.code < 400; read once)
        else:
            err = error
        if err:
            self.errors += 1
            settings = self.settings  # (read only for an error reply)
            if (not close and self.errors > settings.soft_error_limit
                    and settings.error_sleep_time > 0):
                self._busy = True
                self._c_pause_reading()
                self._c_flush()
                self.loop.call_later(settings.error_sleep_time, self._slept, verb, reply, ok,
                                     close)
                return
        self._c_send(verb, reply, ok, close)

    def _c_send(self, verb, reply, ok, close):
        conn = self.conn
        if _closed(conn.input):
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
        if not self.errors:
            return  # (errors >= limit > 0 cannot hold: no settings read)
        limit = self.settings.hard_error_limit
        if self.errors >= limit and limit > 0 and not _closed(conn.input):
            log.info("too many errors after %s from %s", verb.upper() or self.where,
                     self.client.text)
            self._out.append(conn.send(replies.too_many_errors(self.settings.hostname),
                                       close=True))

    def _send(self, verb, reply, ok, close):
        self._c_send(verb, reply, ok, close)

    def _c_flush(self):
        out = self._out
        if out and self.transport is not None:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            self.bytes_out += len(data)
            self.transport.write(data)
        conn = self.conn
        if conn is not None and _closed(conn.input) and not self._closed:
            self._c_close()

    def _flush(self):
        self._c_flush()

    def _close(self):
        self._c_close()

    def _c_close(self):
        self._closed = True
        self._c_abort_txn()
        if self.transport is not None:
            self.transport.close()

    # ---------------------------------------------------------------- statistics

    def _count(self, verb, ok):
        counts = self.stats.get(verb)
        if counts is None:
            counts = [0, 0]
            self.stats[verb] = counts
        counts[1] += 1
        if ok:
            counts[0] += 1

    def _stats_text(self) -> str:
        return self._c_stats_text()

    def _c_stats_text(self) -> str:
        # The usual session sends each command once and each is accepted: its text
        # depends only on which commands those were, so it is made once per set of
        # names (by the names in the order they came; _c_stats_text_full otherwise).
        # The last such set is checked first, name by name as the counts are (most
        # sessions of a busy smtpd send the same commands): no key tuple, no lookup.
        stats = self.stats
        if not stats:
            return self._c_stats_text_full()
        last = _LAST_ONCE[0]
        same = len(last) == len(stats)
        i = 0
        for name, counts in stats.items():
            if counts[0] != 1 or counts[1] != 1:
                return self._c_stats_text_full()
            if same:
                same = name == last[i]
            i += 1
        if same:
            return _LAST_ONCE[1]
        key = tuple(stats)
        text = _ONCE_TEXTS.get(key)
        if text is None:
            text = self._c_stats_text_full()
            if len(_ONCE_TEXTS) < 1024:
                _ONCE_TEXTS[key] = text
        _LAST_ONCE[0] = key
        _LAST_ONCE[1] = text
        return text

    def _c_stats_text_full(self) -> str:
        # Compiled, the counts are C longs (the .pxd).
        parts = []
        ok_total = 0
        total = 0
        stats = self.stats
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

    # ---------------------------------------------------------------- the plain commands

    def _c_junk(self):
        # As Postfix: the command that finds more than the limit already counted errs.
        if self.junk > self.settings.junk_command_limit:
            self.errors += 1
        self.junk += 1

    def _junk(self):
        self._c_junk()

    def _idle(self, stage):
        # (the policy's idle_stages, read once per session: __init__)
        return stage in self._idle_stages

    def _policy(self, stage, on_done, *, recipient=None, etrn_domain=None, size=None,
                helo=None):
        if self._idle(stage):
            on_done(None)  # nothing to check at this stage (policy.py)
            return
        self._ask(stage, on_done, recipient, etrn_domain, size, helo)

    def _ask(self, stage, on_done, recipient=None, etrn_domain=None, size=None, helo=None):
        """_policy() of a stage that is not idle."""
        request = PolicyRequest(stage, self.client, self.envelope, recipient, etrn_domain, size,
                                helo)
        try:
            result = self.service.policy.check(request)
        except Exception as exc:  # noqa: BLE001 - reported as a configuration error
            self._policy_failed(stage, exc, on_done)
            return
        if result is not None and _is_awaitable(result):
            self._await(result, on_done, lambda exc: self._policy_failed(stage, exc, on_done))
        else:
            on_done(result)

    def _c_refused(self, decision, verb=""):
        """The refusal in a policy decision, or None; a hang-up closes at once.

        Returns _HANGUP after a hang-up (nothing more to send). When the policy
        logged the refusal itself, the caller's _log_reject() is skipped.
        """
        if decision is None:
            return None
        if decision.hangup:
            if verb:
                self._count(verb, False)
            self._closed = True
            self._out.clear()
            if self.transport is not None:
                self.transport.close()
            return _HANGUP
        if decision.reply is None:
            return None
        self._skip_log = decision.logged
        return decision.reply

    def _refused(self, decision, verb=""):
        """The refusal in a policy decision, or None; a hang-up closes at once."""
        return self._c_refused(decision, verb)

    def _c_abort_txn(self):
        if self._sink_wait:  # (the session is closing: what it waited for is moot)
            self._sink_wait = 0
            self._sink_verb = None
            self._sink_fn = None
        if self.txn is not None:
            txn, self.txn = self.txn, None
            try:
                txn.abort()
            except Exception as exc:  # noqa: BLE001 - abort must not break the session
                log.warn("%s: abort failed: %s", txn.queue_id, exc)

    def _abort_txn(self):
        self._c_abort_txn()

    def _c_reset_transaction(self):
        self._c_abort_txn()
        self.envelope = None
        self._data_rejected = None
        self._received_done = False
        self.overshoot = 0

    def _reset_transaction(self):
        self._c_reset_transaction()

    def _write(self, data):
        """Give content to the sink (pausing when it pushes back)."""
        self._c_write(data)

    def _c_write(self, data):
        if self.txn is None:
            return
        try:
            result = self.txn.write(data)
        except Exception as exc:  # noqa: BLE001
            self._content_failed(exc)
            return
        if result is not None and _is_awaitable(result):
            self._await(result, lambda _r: None, self._content_failed, pause=True)

    def _finish_message(self, verb, size, too_big, bare_lf, reply_ok):
        """End of DATA or of BDAT LAST: checks, then the sink's durable answer."""
        self._c_finish_message(verb, size, too_big, bare_lf, reply_ok)

    def _c_finish_message(self, verb, size, too_big, bare_lf, reply_ok):
        qid = self.txn.queue_id if self.txn is not None else "NOQUEUE"
        if self._data_rejected is not None:
            reply = self._data_rejected
            self._c_reset_transaction()
            self._c_respond(verb, reply)
            return
        if too_big:
            log.warn("%s: queue file size limit exceeded", qid)
            self._c_reset_transaction()
            self._c_respond(verb, replies.MESSAGE_TOO_BIG)
            return
        if bare_lf and self.conn.options.bare_lf == "reject":
            log.info("%s: reject: END-OF-MESSAGE from %s: bare <LF> received; %s", qid,
                     self.client.text, self._reject_fields(self._last_recipient()))
            self._c_reset_transaction()
            self._c_respond(verb, replies.bare_lf(self.settings.bare_lf_reject_code,
                                                  self.settings.hostname))
            return
        if bare_lf and self.conn.options.bare_lf == "note":
            log.info("%s: bare <LF> received from %s", qid, self.client.text)
        if self._idle("END-OF-MESSAGE"):
            self._eom_checked(None, verb, reply_ok)
            return
        self._ask_eom(verb, size, reply_ok)

    def _ask_eom(self, verb, size, reply_ok):
        """The END-OF-MESSAGE restrictions (a stage that is not idle), then _eom_checked.
        (Its own method: the closure is made only when it is needed.)"""

        def checked(decision):
            self._eom_checked(decision, verb, reply_ok)

        self._ask("END-OF-MESSAGE", checked, None, None, size)

    def _eom_checked(self, decision, verb, reply_ok):
        refused = self._c_refused(decision, verb)
        if refused is _HANGUP:
            self._c_reset_transaction()
            return
        if refused is not None:
            self._log_reject("END-OF-MESSAGE", refused)
            self._c_reset_transaction()
            self._c_respond(verb, refused)
            return
        self._c_commit(verb, reply_ok)

    def _c_commit(self, verb, reply_ok):
        txn = self.txn
        if txn is None:
            self._c_reset_transaction()
            self._c_respond(verb, replies.WRITE_ERROR)
            return

        if self._direct:
            # The answer comes to _sink_answered (no future between them).
            try:
                txn.finish()
            except Exception as exc:  # noqa: BLE001
                self._c_commit_failed(verb, exc)
                return
            self._c_sink_wait(2, verb, reply_ok)
            return
        self._commit_awaited(txn, verb, reply_ok)

    def _commit_awaited(self, txn, verb, reply_ok):
        """_c_commit for a sink that is not direct: its finish() may return an
        awaitable, whose result is the queue ID."""

        def done(queue_id):
            self._c_committed(verb, reply_ok, queue_id)

        def failed(exc):
            self._c_commit_failed(verb, exc)

        try:
            result = txn.finish()
        except Exception as exc:  # noqa: BLE001
            failed(exc)
            return
        if _is_awaitable(result):
            self._await(result, done, failed)
        else:
            done(result)

    def _c_committed(self, verb, reply_ok, queue_id):
        self.txn = None  # committed: nothing to abort
        self._c_reset_transaction()
        self.errors = 0
        self.junk = 0
        self.where = "END-OF-MESSAGE"
        queue_id = str(queue_id)
        self._c_respond(verb, queued_reply(queue_id) if reply_ok is _QUEUED
                        else reply_ok(queue_id))

    def _c_commit_failed(self, verb, exc):
        reply = self._sink_failed(exc)
        self._c_reset_transaction()
        self._c_respond(verb, reply)

    # ---------------------------------------------------------------- direct transactions

    def _c_sink_wait(self, what, verb, fn):
        """Wait for a direct transaction's answer (1: the queue ID, 2: the commit), as
        _await() waits for a future: busy, replies so far written."""
        self._busy = True
        self._c_flush()
        self._sink_wait = what
        self._sink_verb = verb
        self._sink_fn = fn

    def _c_sink_resume(self):
        """The wait is over (as _resumed() after a future): False when the session
        closed meanwhile."""
        self._sink_wait = 0
        self._sink_verb = None
        self._sink_fn = None
        self._busy = False
        if self.transport is None or self._closed:
            return False
        self._last_io = self.loop.time()
        return True

    def _sink_opened(self, txn):
        """A direct transaction has its queue ID, or cleanup refused it (txn.refusal):
        the client= line, then a DATA or BDAT that waited for it goes on."""
        if self.txn is not txn:
            return  # reset meanwhile
        refusal = txn.refusal
        if refusal is None:
            self._c_log_client(txn)
        if self._sink_wait != 1:
            return
        verb, then = self._sink_verb, self._sink_fn
        if not self._c_sink_resume():
            return
        if refusal is None:
            then()
        else:
            self._c_id_refused(verb, refusal)
        if not self._busy:
            self._c_resume_reading()
            self._c_run()

    def _sink_answered(self, txn, queue_id, exc):
        """A direct transaction's commit: cleanup's 250 (``exc`` None) or its refusal."""
        if self._sink_wait != 2 or self.txn is not txn:
            return  # reset meanwhile
        verb, reply_ok = self._sink_verb, self._sink_fn
        if not self._c_sink_resume():
            return
        if exc is None:
            self._c_committed(verb, reply_ok, queue_id)
        else:
            self._c_commit_failed(verb, exc)
        if not self._busy:
            self._c_resume_reading()
            self._c_run()

    def _on_mail(self, event):
        self._c_on_mail(event)

    def _c_on_mail(self, event):
        self.where = "MAIL"
        if self.service.limits is None or self._anvil_unknown:
            # No anvil limits apply (_limited() would say so): no hook, no closure.
            self._c_mail(event)
        else:
            self._mail_limited(event)

    def _mail_limited(self, event):
        """MAIL through the anvil hook (_limited) first."""
        if not self._limited("message", "mail", lambda: self._mail(event)):
            self._mail(event)

    def _mail(self, event):
        self._c_mail(event)

    def _c_mail(self, event):
        svc = self.service
        # (queue_minfree: enough_space()'s kept answer for a MAIL without SIZE=, read
        # here while it holds; service.space_ok_until)
        if (event.size is not None or _monotonic() > svc.space_ok_until) \
                and not svc.enough_space(event.size):
            self._log_reject("MAIL", replies.INSUFFICIENT_STORAGE)
            self._c_respond("mail", replies.INSUFFICIENT_STORAGE)
            return
        self.envelope = Envelope(event.address, event.size, event.body, event.smtputf8,
                                 event.ret, event.envid, event.auth)
        if self._idle("MAIL"):
            self._c_mail_checked(None)
        else:
            self._ask("MAIL", self._mail_checked, None, None, event.size)

    def _mail_checked(self, decision):
        self._c_mail_checked(decision)

    def _c_mail_checked(self, decision):
        refused = self._c_refused(decision, "mail")
        if refused is _HANGUP:
            return
        if refused is not None:
            self._log_reject("MAIL", refused)
            self.envelope = None
            self._c_respond("mail", refused)
            return
        self._c_respond("mail", _MAIL_OK)

    def _on_rcpt(self, event):
        self._c_on_rcpt(event)

    def _c_on_rcpt(self, event):
        self.where = "RCPT"
        # Without anvil limits _limited() answers False at once: not called then.
        if (self.service.limits is None or self._anvil_unknown
                or not self._rcpt_limited(event)):
            self._c_rcpt(event)

    def _rcpt_limited(self, event):
        return self._limited("recipient", "rcpt", lambda: self._rcpt(event))

    def _rcpt(self, event):
        self._c_rcpt(event)

    def _c_rcpt(self, event):
        address = event.address
        if "RCPT" in self._idle_stages:
            self._rcpt_checked(None, event, address)
            return
        quick = self.service.policy.quick_rcpt
        if quick is not None:
            try:
                permitted = quick(self.client, self.envelope, address)
            except Exception:  # noqa: BLE001 - check() then fails the same way, reported
                permitted = False
            if permitted:
                self._rcpt_checked(None, event, address)  # check() would answer None
                return
        self._rcpt_ask(event, address)

    def _rcpt_ask(self, event, address):
        def checked(decision):
            self._rcpt_checked(decision, event, address)

        self._ask("RCPT", checked, address)

    def _rcpt_checked(self, decision, event, address):
        refused = self._c_refused(decision, "rcpt")
        if refused is _HANGUP:
            return
        if refused is not None:
            self._log_reject("RCPT", refused, address)
            self._c_respond("rcpt", refused)
            return
        rcpt = Recipient(address, event.notify, event.orcpt)
        if self.txn is None:
            self._open(rcpt)
        else:
            self._c_add_recipient(rcpt)

    def _add_recipient(self, rcpt):
        self._c_add_recipient(rcpt)

    def _c_add_recipient(self, rcpt):
        try:
            self.txn.add_recipient(rcpt)
        except Exception as exc:  # noqa: BLE001
            self._c_respond("rcpt", self._sink_failed(exc))
            return
        env = self.envelope
        env.recipients.append(rcpt)
        self._c_respond("rcpt", _RCPT_OK)

    def _on_data(self, event):
        self._c_on_data(event)

    def _c_on_data(self, event):
        self.where = "DATA"
        if self._idle("DATA"):
            self._c_data_checked(None)
        else:
            self._ask("DATA", self._data_checked)

    def _data_checked(self, decision):
        self._c_data_checked(decision)

    def _c_data_checked(self, decision):
        refused = self._c_refused(decision, "data")
        if refused is _HANGUP:
            return
        if refused is not None:
            self._log_reject("DATA", refused)
            self._c_respond("data", refused)
            return
        self._when_opened("data", self._start_data)

    def _start_data(self):
        # 354 is not the end of the DATA command: it is counted with the final reply.
        self._out.append(self.conn.send(_START_DATA))
        self._in_data = True
        self._c_start_content()

    def _on_chunk(self, event):
        self._c_on_chunk(event)

    def _c_on_chunk(self, event):
        if self._data_rejected is None and self.txn is not None:
            self._c_write(event.data)

    def _on_end_of_data(self, event):
        self._c_on_end_of_data(event)

    def _c_on_end_of_data(self, event):
        self.where = "END-OF-MESSAGE"
        self._c_finish_message("data", event.size, event.too_big, event.bare_lf, _QUEUED)

    def _on_rset(self, event):
        self.where = "RSET"
        self._c_junk()
        self._c_reset_transaction()
        self._c_respond("rset", _OK)

    def _on_noop(self, event):
        self.where = "NOOP"
        self._c_junk()
        self._c_respond("noop", _OK)

    def _on_quit(self, event):
        self._c_on_quit(event)

    def _c_on_quit(self, event):
        self.where = "QUIT"
        self._c_reset_transaction()
        self._c_respond("quit", _BYE)


    # ---------------------------------------------------------------- the transaction

    def _start_content(self):
        """Write the Received: header at the start of the message content."""
        self._c_start_content()

    def _c_start_content(self):
        if self._received_done or self.txn is None:
            return
        self._received_done = True
        c = self.client
        env = self.envelope
        if env.prepend:
            # access(5) PREPEND: above our Received: header, in the order they came.
            self._c_write("".join(f"{h}\r\n" for h in env.prepend).encode("utf-8", "surrogateescape"))
        settings = self.settings
        # (by position: received_header's order; no keyword dictionary per message)
        header = received_header(
            c, settings.hostname, settings.mail_name, self.txn.queue_id,
            protocol_name(self.conn.state.esmtp, c.tls is not None,
                          c.sasl_username is not None, env.smtputf8),
            [r.address for r in env.recipients],
            settings.tls_received_header, settings.sasl_authenticated_header)
        self._c_write(header)

    def _open(self, rcpt):
        """Begin the sink transaction at the first accepted recipient."""
        sink = self.service.sink
        if getattr(sink, "direct", False):
            # CleanupSink: a direct transaction, which calls _sink_opened and
            # _sink_answered itself (sink.py).
            try:
                txn = sink.begin(self.client, self.envelope)
            except Exception as exc:  # noqa: BLE001
                self._c_respond("rcpt", self._sink_failed(exc))
                return
            self.txn = txn
            self._direct = True
            txn.session = self
            self._c_add_recipient(rcpt)
            return

        def opened(txn):
            self.txn = txn
            self._direct = False
            pending = getattr(txn, "id_pending", None)
            if pending is not None and not pending.done():
                # The sink answers with the queue ID later: reply to RCPT now, log the
                # client= line when the ID comes, wait for it at DATA.
                pending.add_done_callback(lambda f, txn=txn: self._id_arrived(txn, f))
            else:
                self._id_arrived(txn, pending)
            self._add_recipient(rcpt)

        def failed(exc):
            self._c_respond("rcpt", self._sink_failed(exc))

        try:
            result = sink.begin(self.client, self.envelope)
        except Exception as exc:  # noqa: BLE001
            failed(exc)
            return
        if _is_awaitable(result):
            self._await(result, opened, failed)
        else:
            opened(result)

    def _id_arrived(self, txn, pending):
        """The transaction has its queue ID (or the sink refused it: kept for DATA)."""
        if pending is not None and (pending.cancelled() or pending.exception() is not None):
            return  # _when_opened answers DATA/BDAT with the refusal
        if self.txn is not txn:
            return  # reset meanwhile
        self._c_log_client(txn)

    def _c_log_client(self, txn):
        """The envelope's queue ID, and the ``QUEUEID: client=`` line."""
        if self.envelope is None:
            return
        env = self.envelope
        env.queue_id = txn.queue_id
        c = self.client
        extra = ""
        if c.sasl_username is not None:
            extra += f", sasl_method={c.sasl_method}, sasl_username={printable(c.sasl_username)}"
        fwd = c.forwarded
        if fwd and "IDENT" in fwd:
            extra += f", orig_queue_id={printable(fwd['IDENT'])}"
        if fwd and ("NAME" in fwd or "ADDR" in fwd):
            extra += (f", orig_client={printable(fwd.get('NAME', _UNKNOWN))}"
                      f"[{printable(fwd.get('ADDR', _UNKNOWN))}]")
        # (the text made here, not by log.info's "%": KEEPER takes finished text)
        text = f"{txn.queue_id}: client={c.name}[{c.addr}]{extra}"
        if not _KEEPER.keep(text):
            log.info(text)

    def _when_opened(self, verb, then):
        """Call ``then()`` once the transaction has its queue ID; a refusal answers ``verb``."""
        txn = self.txn
        if txn is not None and self._direct:
            if txn.queue_id:
                then()
            elif txn.refusal is not None:
                self._c_id_refused(verb, txn.refusal)
            else:
                self._c_sink_wait(1, verb, then)
            return
        pending = getattr(txn, "id_pending", None) if txn is not None else None
        if pending is None or (pending.done() and not pending.cancelled()
                               and pending.exception() is None):
            then()
            return

        def refused(exc):
            self._c_id_refused(verb, exc)

        if pending.done():
            refused(SinkError(log="the message transaction was cancelled") if pending.cancelled()
                    else pending.exception())
        else:
            self._await(pending, lambda _qid: then(), refused)

    def _c_id_refused(self, verb, exc):
        """The sink refused the transaction (cleanup's answer to OPEN): the reply to
        DATA or BDAT."""
        reply = self._sink_failed(exc)
        if verb == "bdat":
            self._data_rejected = reply
            self._c_abort_txn()
        else:  # as a refused DATA: the transaction stays until RSET (DATA again: again)
            self._c_respond(verb, reply)

    # ---------------------------------------------------------------- connection, greeting, HELO/EHLO

    def connection_made(self, transport) -> None:
        svc = self.service
        counted = svc.on_connect  # the multi skeleton's client count (self_counting)
        if counted is not None:
            counted()
        self.transport = transport
        svc.sessions.add(self)
        self._last_io = self.loop.time()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self._c_addresses(peer, local)
        c = self.client
        # (a TLS transport here only from listen()'s wrapper mode: service.py; the
        # plain transport's answer, None, is not asked for)
        if self.settings.wrappermode:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                c.tls = tlsmod.tls_info(ssl_object, svc.tls.digest)
        # Reading is not paused while the greeting is prepared: what a client sends
        # early is kept (_early) and reading paused only then (buffer_updated).
        self._c_arm_timer()
        if self.settings.peername_lookup and isinstance(peer, tuple):
            hit = svc.resolver.cached(c.addr)
            if hit is not None:
                self._c_greet(hit)
            else:
                task = self.loop.create_task(svc.resolver.lookup(c.addr))
                task.add_done_callback(self._lookup_done)
        else:
            self._c_greet((c.name, c.reverse_name))

    def _c_addresses(self, peer, local):
        """The client's and the server's address and port from the socket's names
        (connection_made; compiled, the ClientInfo's fields are C members)."""
        c = self.client
        if isinstance(peer, tuple) and peer:
            addr = peer[0]
            if addr.startswith("::ffff:") and "." in addr:
                addr = addr[7:]
            c.addr = addr.split("%", 1)[0] if "%" in addr else addr
            c.peer_addr = c.addr
            c.port = str(peer[1])
        else:
            # A UNIX-domain client is the local host, as Postfix treats it.
            c.addr, c.name, c.reverse_name = "127.0.0.1", "localhost", "localhost"
            c.peer_addr = c.addr
        if isinstance(local, tuple) and local:
            port = local[1]  # (one of the few ports smtpd listens on: its text kept)
            text = _PORT_TEXTS.get(port)
            if text is None:
                text = str(port)
                if len(_PORT_TEXTS) < 64:
                    _PORT_TEXTS[port] = text
            c.server_addr, c.server_port = local[0], text

    def connection_lost(self, exc) -> None:
        svc = self.service
        try:
            self._c_lost()
        finally:
            gone = svc.on_disconnect  # the multi skeleton's client count (self_counting)
            if gone is not None:
                gone()

    def _c_lost(self):
        svc = self.service
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        c = self.client
        if not self._closed:
            self._closed = True
            if self._greeted:
                log.info("lost connection after %s from %s", self._where_text(), c.text)
        self._c_abort_txn()
        self.transport = None
        svc.sessions.discard(self)
        addr = self._counted_addr
        if addr is not None:
            # (this client's connection count: service.client_counts)
            counts = svc.client_counts
            n = counts.get(addr, 0) - 1
            if n > 0:
                counts[addr] = n
            else:
                counts.pop(addr, None)
            self._counted_addr = None
        if self._anvil_ident is not None:
            svc.limits.disconnect(self._anvil_ident, self.loop)
            self._anvil_ident = None
        if self._greeted:
            if self._in_data:
                self._count("data", False)  # DATA that never ended (Postfix: data=0/1)
            # (the text made here, not by log.info's "%": the line has no format)
            text = f"disconnect from {c.name}[{c.addr}] {self._c_stats_text()}"
            if not _KEEPER.keep(text):
                log.info(text)
        ended = svc.on_session_end  # (tests wait for sessions with it)
        if ended is not None:
            ended(self)

    def _arm_timer(self) -> None:
        self._c_arm_timer()

    def _c_arm_timer(self):
        # (through the service's deadline queue, made for this loop and delay: one
        # loop timer for all of its sessions; _Deadlines)
        if self._timer is None and self.transport is not None:
            svc = self.service
            deadlines = svc.deadlines
            if deadlines is None or deadlines.loop is not self.loop \
                    or deadlines.delay != self._timeout:
                deadlines = svc.deadlines = _Deadlines(self.loop, self._timeout)
            self._timer = deadlines.add(self)

    def _where_text(self) -> str:
        if self.where in ("DATA", "BDAT") and self.conn is not None:
            return f"{self.where} ({self.conn.data_bytes} bytes)"
        return self.where

    def _greet(self, names: tuple) -> None:
        self._c_greet(names)

    def _c_greet(self, names):
        c = self.client
        svc = self.service
        settings = self.settings
        if c.name == _UNKNOWN or not c.name:
            c.name, c.reverse_name = names[0], names[1]
            if len(names) == 4:
                c.name_status, c.reverse_name_status = names[2], names[3]
            else:
                c.name_status = NAME_PERM if c.name == _UNKNOWN else NAME_OK
                c.reverse_name_status = NAME_PERM if c.reverse_name == _UNKNOWN else NAME_OK
        self._greeted = True
        addr = c.addr
        self._real_client = (c.name, addr)
        # (the text made here, not by log.info's "%": the line has no format)
        text = f"connect from {c.name}[{addr}]"
        if not _KEEPER.keep(text):
            log.info(text)
        self._counted_addr = addr
        # (the count smtpd_client_connection_count_limit reads: service.client_counts)
        counts = svc.client_counts
        count = counts.get(addr, 0) + 1
        counts[addr] = count
        self.conn = ServerConnection(self._c_greet_options())
        if c.tls is not None:
            self.conn.wrapper_mode()
        if self._early:
            # Sent before we knew who the client is: the core keeps it unparsed
            # until the greeting is out (input mode GREETING).
            early, self._early = self._early, []
            for data in early:
                self.conn.receive_data(data)
        # A client allowed to send XCLIENT is not known to anvil (no connection, rate
        # or event limits): the client it names is, once it does (as Postfix;
        # tests/daemons/anvil/test_anvil.py).
        if self.conn.options.xclient:
            self._anvil_unknown = True
            self._greet_sasl()
            return
        limit = settings.connection_count_limit
        if limit and count > limit and not svc.exempt_from_limits(c):
            log.warn("Connection concurrency limit exceeded: %d from %s for service %s",
                     count, c.text, svc.service_name)
            self._out.append(self.conn.send(Reply(
                421, f"{settings.hostname} Error: too many connections from {c.addr}", "4.7.0"),
                close=True))
            self._flush()
            return
        check = svc.limits.connect(c) if svc.limits is not None else None
        if check is not None:
            self._await(check, self._connect_counted, self._connect_count_failed)
            return
        self._c_greet_sasl()

    def _connect_count_failed(self, exc) -> None:
        """anvil did not answer the connection count: greet as without limits."""
        self._c_greet_sasl()

    def _greet_sasl(self) -> None:
        self._c_greet_sasl()

    def _c_greet_sasl(self):
        svc = self.service
        auth = svc.authenticator
        if auth is None:
            # No authenticator: AUTH is never offered (auth_offered()), as the core's
            # options already say; nothing to refresh.
            if self._idle("CONNECT"):
                self._c_connect_checked(None)
            else:
                self._ask("CONNECT", self._connect_checked)
            return
        pending = auth.ready() if self.settings.sasl_enable else None
        if pending is not None:
            # A worker's first client: learn the SASL mechanisms before the greeting.
            def learned(_result=None):
                self._refresh_auth()
                self._policy("CONNECT", self._connect_checked)

            self._await(pending, learned, learned)
            return
        self._refresh_auth()  # the mechanisms may have been learned while anvil answered
        self._policy("CONNECT", self._connect_checked)

    def _refresh_auth(self) -> None:
        """Offer AUTH or not by what the authenticator knows now (and TLS)."""
        auth = self.service.auth_offered(self.client.tls is not None)
        if auth != self.conn.options.auth:
            self.conn.options = replace(self.conn.options, auth=auth)

    def _connect_checked(self, decision) -> None:
        self._c_connect_checked(decision)

    def _c_connect_checked(self, decision):
        refused = self._c_refused(decision)
        if refused is _HANGUP:
            return
        if refused is not None:
            if not self._skip_log:
                log.info("NOQUEUE: reject: CONNECT from %s: %s; proto=SMTP", self.client.text,
                         soften(refused) if self.conn.options.soft_bounce else refused)
            self._skip_log = False
            if decision.disconnect:
                self._out.append(self.conn.send(refused, close=True))
                self._flush()
                return
            # The refusal replaces the greeting; then every command but QUIT is
            # answered "503 5.7.0 Error: access denied for name[addr]" (Postfix).
            self.conn.options = replace(self.conn.options, access_denied=Reply(
                503, f"Error: access denied for {self.client.text}", "5.7.0"))
            self._out.append(self.conn.send(refused))
        else:
            self._out.append(self.conn.send(self.service.greeting))
        self._busy = False
        self._c_resume_reading()
        self._c_run()

    def _c_greet_options(self):
        """_core_options() at the greeting, from the service's cache when it has one.

        The service keeps one (SmtpdService.greet_options) only while every input of
        _core_options() is fixed for a given client: the three host lists have no
        tables (HostList's memo: their answers cannot change) and there is no SASL
        authenticator (auth_offered() is False). At the greeting the real client is
        the client, so the key is the client's name, address and whether it has TLS.
        """
        svc = self.service
        cache = svc.greet_options
        if cache is None or svc.authenticator is not None:
            return self._core_options()
        c = self.client
        key = (c.name, c.addr, c.tls is None)
        opts = cache.get(key)
        if opts is None:
            opts = self._core_options()
            if len(cache) >= 4096:
                cache.clear()
            cache[key] = opts
        return opts

    def _core_options(self):
        c = self.client
        svc = self.service
        settings = self.settings
        who = (c.name, c.addr)
        return svc.session_options(
            self._listed("smtpd_authorized_xclient_hosts", settings.xclient_hosts, who),
            self._xforward_allowed(),
            self._listed("smtpd_forbid_bare_newline_exclusions", settings.bare_lf_exclusions,
                         who),
            bool(svc.tls.offered and c.tls is None),
            svc.auth_offered(c.tls is not None),
        )

    def _listed(self, name: str, hosts, who: tuple[str, str]) -> bool:
        """Match a client against a host list; a table that cannot answer means no."""
        try:
            return hosts.match(*who)
        except Exception as exc:  # noqa: BLE001 - maps.MapRetry and table errors
            log.warn("%s: %s lookup failed: %s", self.client.text, name, exc)
            return False

    def _xforward_allowed(self) -> bool:
        # XFORWARD authorization follows the real client, not an XCLIENT identity.
        return self._listed("smtpd_authorized_xforward_hosts", self.settings.xforward_hosts,
                            self._real_client)

    def _on_helo(self, event) -> None:
        esmtp = type(event) is ev.Ehlo
        stage = "EHLO" if esmtp else "HELO"
        self.where = stage
        self._c_junk()
        if self._idle(stage):
            self._helo_checked(None, event, esmtp)
            return

        def checked(decision):
            self._helo_checked(decision, event, esmtp)

        self._ask(stage, checked, None, None, None, event.name)

    def _helo_checked(self, decision, event, esmtp):
        """HELO/EHLO after the policy's answer (None: nothing to check)."""
        verb = "ehlo" if esmtp else "helo"
        refused = self._c_refused(decision, verb)
        if refused is _HANGUP:
            return
        if refused is not None:
            self._log_reject("EHLO" if esmtp else "HELO", refused)
            self._c_respond(verb, refused)
            return
        self._c_reset_transaction()
        c = self.client
        c.helo = neuter_helo(event.name)
        if esmtp:
            c.protocol = "ESMTP"
            self._c_respond(verb, self._c_ehlo_reply())
        else:
            c.protocol = "SMTP"
            self._c_respond(verb, self.service.helo_reply)

    def _c_ehlo_reply(self):
        """The EHLO reply for this client now (SmtpdService.ehlo_reply); without AUTH
        from the service's table by the three flags that decide it."""
        svc = self.service
        conn = self.conn
        opts = conn.options
        c = self.client
        starttls = opts.starttls and not conn.state.tls
        # smtpd_sasl_exceptions_networks hides AUTH; the command still works.
        if opts.auth and not self._listed("smtpd_sasl_exceptions_networks",
                                          self.settings.sasl_exceptions, (c.name, c.addr)):
            return svc.ehlo_reply(starttls=starttls, auth=True, xclient=opts.xclient,
                                  xforward=opts.xforward, tls=c.tls is not None)
        # Without AUTH the reply depends on these three only (ehlo_reply's key).
        key = (1 if starttls else 0) + (2 if opts.xclient else 0) + (4 if opts.xforward else 0)
        plain = svc.ehlo_plain
        reply = plain.get(key)
        if reply is None:
            reply = svc.ehlo_reply(starttls=starttls, auth=False, xclient=opts.xclient,
                                   xforward=opts.xforward, tls=c.tls is not None)
            plain[key] = reply
        return reply

#: The events whose handlers are the core's (the session's other handlers are its own).
#: CORE_HANDLERS' functions that _c_run calls as C methods (_c_on_*) when they are
#: the handler of an event's type.
_H_MAIL = SessionCore._on_mail
_H_RCPT = SessionCore._on_rcpt
_H_DATA = SessionCore._on_data
_H_CHUNK = SessionCore._on_chunk
_H_END_OF_DATA = SessionCore._on_end_of_data
_H_QUIT = SessionCore._on_quit

CORE_HANDLERS = {
    ev.Helo: SessionCore._on_helo,
    ev.Ehlo: SessionCore._on_helo,
    ev.Mail: SessionCore._on_mail,
    ev.Rcpt: SessionCore._on_rcpt,
    ev.Data: SessionCore._on_data,
    ev.DataChunk: SessionCore._on_chunk,
    ev.EndOfData: SessionCore._on_end_of_data,
    ev.Rset: SessionCore._on_rset,
    ev.Noop: SessionCore._on_noop,
    ev.Quit: SessionCore._on_quit,
}
