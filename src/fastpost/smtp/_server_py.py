"""ServerConnection: the sans-IO SMTP server core (the pure-Python reference).

Postfix counterpart: src/smtpd/smtpd.c (the protocol half: command reading and
parsing, sequencing, ESMTP parameters, DATA/BDAT, pipelining checks), without any
policy, I/O or logging.

This is the specification of ext/fastpost/smtp/_server_c.pyx (the compiled class
production runs) and the oracle of its differential test; production code imports
fastpost.smtp.server.

    conn = ServerConnection(ServerOptions(...))
    out = conn.send(replies.greeting(banner))      # bytes for the transport
    conn.receive_data(data)                        # b"" means the peer closed
    conn.receive_from(buffer, nbytes)              # the same, from a shared buffer
    ev = conn.next_event()                         # Event, NEED_DATA or PAUSED
    out = conn.send(reply)                         # the reply to ev

The session (fastpost.daemons.smtpd) owns the socket and every decision; the core
tells it what the client asked for and turns replies into bytes. One command is
handled at a time: after an event that needs a reply, next_event() returns PAUSED
until that reply is sent; the reply then moves the state (state.py). A client may
still *pipeline*: the core reads ahead, and the session may batch the bytes of
several replies into one write.

Peer errors come out of next_event() as RemoteProtocolError (its ``reply`` must be
sent next; the connection goes on unless ``fatal``). Things Postfix only logs come
out of take_notes() as (kind, verb, detail): ("overlong", VERB, start of the line),
("pipelining", VERB, the input pending after it), ("bare-lf", VERB, ""),
("starttls-plaintext", "STARTTLS", bytes dropped).

Honoured (through ServerOptions, filled from main.cf by the session):
line_length_limit, message_size_limit, smtpd_recipient_limit,
smtpd_forbid_bare_newline (+ _reject_code), smtpd_helo_required, smtputf8_enable,
strict_rfc821_envelopes, disable_vrfy_command, smtpd_forbidden_commands,
smtpd_sasl_response_limit, soft_bounce (every 5xx sent as 4xx: soften()), and which extensions are offered (CHUNKING, STARTTLS,
AUTH, XCLIENT, XFORWARD) and whether TLS is required (smtpd_tls_security_level).

Diagnostics: RemoteProtocolError for the peer's mistakes; LocalProtocolError when
the caller sends a reply that is not due or calls out of order.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field, replace

from fastpost.smtp import events as ev
from fastpost.smtp import command as quick
from fastpost.smtp import grammar, replies, state
from fastpost.smtp.data import ChunkDecoder, DotDecoder
from fastpost.smtp.errors import LocalProtocolError, RemoteProtocolError
from fastpost.smtp.events import NEED_DATA, PAUSED
from fastpost.smtp.grammar import GrammarError
from fastpost.smtp.lines import BARE_LF, OVERLONG, LineReader
from fastpost.smtp.replies import Reply

__all__ = ["ServerConnection", "ServerOptions", "BARE_LF_MODES"]

#: smtpd_forbid_bare_newline values (case-insensitive; "yes" = normalize).
BARE_LF_MODES = ("no", "normalize", "note", "reject")

#: How much pending input a "pipelining" note shows (Postfix shows the start of it).
_PIPELINING_SHOW = 100
#: How much of an overlong line an "overlong" note shows.
_OVERLONG_SHOW = 30


@dataclass(slots=True)
class ServerOptions:
    """What the core needs to know from main.cf and from the session.

    Treat an instance as shared and read-only: sessions with the same settings use
    one object, and the core replaces (never edits) its own after STARTTLS. The
    session may assign a new one between commands (after XCLIENT).
    """

    hostname: str = "localhost"  # myhostname, for the replies that name it
    line_length_limit: int = 2048
    message_size_limit: int = 10240000  # 0: no limit
    recipient_limit: int = 1000  # smtpd_recipient_limit
    bare_lf: str = "normalize"  # smtpd_forbid_bare_newline
    bare_lf_reject_code: int = 550  # smtpd_forbid_bare_newline_reject_code
    helo_required: bool = False  # smtpd_helo_required
    smtputf8: bool = True  # smtputf8_enable
    strict_rfc821: bool = False  # strict_rfc821_envelopes
    binarymime: bool = False  # accept BODY=BINARYMIME (Postfix does not)
    vrfy: bool = True  # not disable_vrfy_command
    chunking: bool = True  # CHUNKING offered (BDAT accepted)
    starttls: bool = False  # STARTTLS offered (a certificate is configured)
    tls_required: bool = False  # smtpd_tls_security_level = encrypt
    auth: bool = False  # AUTH offered (smtpd_sasl_auth_enable)
    auth_response_limit: int = 12288  # smtpd_sasl_response_limit
    xclient: bool = False  # client in smtpd_authorized_xclient_hosts
    xforward: bool = False  # client in smtpd_authorized_xforward_hosts
    forbidden: frozenset = field(default_factory=lambda: frozenset([b"CONNECT", b"GET", b"POST"]))
    #: smtpd_forbidden_commands patterns, matched against "VERB args" (Postfix's
    #: default regexp:{{/^[^A-Z]/ Bogus}}: a command that does not start with a letter)
    forbidden_patterns: tuple = (re.compile("^[^A-Z]", re.IGNORECASE),)
    #: The session refused this client at connect (smtpd_delay_reject = no): every
    #: command but QUIT gets this reply, and a non-220 greeting does not close.
    access_denied: Reply | None = None
    #: soft_bounce: every 5xx reply goes out as 4xx with a 4.x.x enhanced code (send())
    soft_bounce: bool = False

    def __post_init__(self):
        self.bare_lf = "normalize" if self.bare_lf.lower() == "yes" else self.bare_lf.lower()
        self.forbidden = frozenset(v.encode("ascii", "replace").upper() if isinstance(v, str)
                                   else v.upper() for v in self.forbidden)
        if self.bare_lf not in BARE_LF_MODES:
            raise ValueError(f"bad smtpd_forbid_bare_newline value: {self.bare_lf}")


#: A command that looks like a message header ("Subject:"): Postfix calls it a
#: non-SMTP command and hangs up, as for smtpd_forbidden_commands.
_HEADER_VERB = re.compile(rb"[\x21-\x39\x3b-\x7e]+:$")

#: Command verb -> the ServerConnection method that parses it.
_HANDLERS = {
    b"HELO": "_helo", b"EHLO": "_ehlo", b"MAIL": "_mail", b"RCPT": "_rcpt",
    b"DATA": "_data", b"BDAT": "_bdat", b"RSET": "_rset", b"NOOP": "_noop",
    b"QUIT": "_quit", b"VRFY": "_vrfy", b"ETRN": "_etrn", b"HELP": "_help",
    b"STARTTLS": "_starttls", b"AUTH": "_auth", b"XCLIENT": "_xclient",
    b"XFORWARD": "_xforward",
}


_Q_HELO, _Q_EHLO, _Q_MAIL, _Q_RCPT = quick.HELO, quick.EHLO, quick.MAIL, quick.RCPT
_Q_DATA, _Q_QUIT = quick.DATA, quick.QUIT
_Q_VERBS = quick.VERBS
#: Events without fields are values: one instance serves every session.
_DATA_EVENT = ev.Data()
_NOARG_EVENTS = {quick.RSET: ev.Rset(), quick.NOOP: ev.Noop(), quick.QUIT: ev.Quit()}


def _decode(raw: bytes, utf8: bool) -> str | None:
    """Return command text as str: strict UTF-8 under SMTPUTF8, else bytes as is."""
    if utf8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return raw.decode("utf-8", "surrogateescape")


def soften(reply: Reply) -> Reply:
    """soft_bounce's form of a 5xx reply: 4xx, and 4.x.x for a 5.x.x enhanced code
    (Postfix 3.7's smtpd does this to every reply it sends: 554 -> 454, 521 -> 421)."""
    if reply.code < 500:
        return reply
    enhanced = reply.enhanced
    if enhanced.startswith("5."):
        enhanced = "4" + enhanced[1:]
    return Reply(reply.code - 100, reply.lines, enhanced)


class ServerConnection:
    """The server side of one SMTP conversation, without I/O (module docstring)."""

    __slots__ = ("options", "state", "input", "_reader", "_pending", "_pending_last",
                 "_pending_name", "_error", "notes", "_eof", "_closed_event_sent",
                 "_decoder", "_chunks", "_content_done", "_chunk_left", "_chunk_last",
                 "_chunk_keep", "_chunk_size", "_chunk_raw_total", "_bdat_decoder",
                 "_data_bytes")

    def __init__(self, options: ServerOptions | None = None):
        self.options = options or ServerOptions()
        self.state = state.ServerState()
        self.input = state.GREETING
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
        return self.input == state.CLOSED

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

    def receive_data(self, data) -> None:
        """Add bytes received from the peer; b"" means the peer closed its side."""
        if not data:
            self._eof = True
            return
        mode = self.input
        if mode == state.DATA and not self._content_done:
            self._feed_data(data)
        elif mode == state.CHUNK and self._chunk_left:
            self._feed_chunk(data)
        elif mode == state.CLOSED:
            return
        else:
            self._reader.feed(data)

    def receive_from(self, buffer, nbytes: int) -> None:
        """receive_data() of the first ``nbytes`` of ``buffer`` (a read buffer shared
        by many connections; the compiled class makes no slice object)."""
        self.receive_data(memoryview(buffer)[:max(nbytes, 0)])

    def next_event(self):
        """Return the next Event, NEED_DATA or PAUSED; raise RemoteProtocolError."""
        if self._pending is not None:
            return PAUSED
        mode = self.input
        if mode == state.COMMAND:
            got = self._reader.read_command()
            if got is None:
                return self._starved()
            return self._command(*got)
        if mode == state.DATA:
            return self._next_data_event()
        if mode == state.CHUNK:
            return self._next_chunk_event()
        if mode == state.AUTH:
            return self._next_auth_event()
        if mode == state.CLOSED:
            return self._starved()
        return PAUSED  # GREETING, TLS

    def send(self, reply: Reply, *, close: bool = False) -> bytes:
        """Return the bytes of ``reply`` and apply what it means to the state.

        ``close`` ends the conversation after this reply (as do 421, 521 and any
        reply to QUIT).
        """
        if self.input == state.CLOSED:
            raise LocalProtocolError("send() after the connection was closed")
        code = reply.code
        pending = self._pending
        if self.input == state.GREETING:
            if code != 220 and self.options.access_denied is None:
                close = True
            self.input = state.COMMAND
        elif pending is None:
            if code not in state.CLOSING_CODES and not close:
                raise LocalProtocolError(f"no reply is due (sending {code})")
        else:
            self._pending = None
            self._apply(pending, reply)
        if close or code in state.CLOSING_CODES or pending == "QUIT":
            self._close()
        if code >= 500 and self.options.soft_bounce:
            return soften(reply).wire
        return reply.wire

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: start over (RFC 3207 4.2).

        The plaintext the client sent before our 220 was dropped when the 220 was
        sent; bytes received since come from inside the TLS session (the caller
        only feeds those) and are kept: a client may send EHLO right after its
        Finished message, before the caller learns the handshake is over.
        """
        if self.input != state.TLS:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self.state.reset_session()
        self.state.tls = True
        self.options = replace(self.options, starttls=False)
        self.input = state.COMMAND

    def wrapper_mode(self) -> None:
        """The connection is TLS from the start (smtpd_tls_wrappermode)."""
        self.state.tls = True
        self.options = replace(self.options, starttls=False)

    # ---------------------------------------------------------------- internals

    def _close(self) -> None:
        self.input = state.CLOSED
        self._reader.clear()
        self._decoder = None
        self._chunks.clear()

    def _starved(self):
        if self._eof and not self._closed_event_sent:
            self._closed_event_sent = True
            return ev.ConnectionClosed()
        return NEED_DATA

    def _fail(self, reply: Reply, verb: str, *, fatal: bool = False, kind: str = "",
              detail: str = ""):
        """Raise RemoteProtocolError for ``verb`` and expect its reply next."""
        self._pending = "ERROR"
        return RemoteProtocolError(reply, verb, fatal=fatal, kind=kind, detail=detail)

    def _apply(self, pending: str, reply: Reply) -> None:
        code = reply.code
        st = self.state
        if pending in ("HELO", "EHLO"):
            if code < 400:
                st.reset_transaction()
                st.helo = self._pending_name
                st.esmtp = pending == "EHLO"
            return
        if pending == "DATA":
            if code == 354:
                self._start_data()
            return
        if pending == "STARTTLS":
            if code == 220:
                dropped = self._reader.clear()
                if dropped:
                    self.notes.append(("starttls-plaintext", "STARTTLS", str(dropped)))
                self.input = state.TLS
            return
        if pending == "AUTH":
            st.on_reply("AUTH", code)
            if code == 334:
                self.input = state.AUTH
                self._reader.limit = max(self.options.auth_response_limit,
                                         self.options.line_length_limit)
            else:
                self._end_auth()
            return
        if pending in ("EOD", "CHUNK", "BDAT-ERROR"):
            self.input = state.COMMAND
            self._decoder = None
            st.on_reply(pending, code, self._pending_last)
            if st.phase in (state.READY, state.BDAT_FAILED, state.BDAT_FAILED_IDLE):
                # The message is over (or lost): the next BDAT starts afresh.
                self._chunk_raw_total = 0
                self._bdat_decoder = None
            return
        st.on_reply(pending, code)

    def _end_auth(self) -> None:
        self.input = state.COMMAND
        self._reader.limit = self.options.line_length_limit

    # ------------------------------------------------------------ command lines

    def _command(self, raw_verb: bytes, raw_args: bytes, flags: int):
        opts = self.options
        if not flags and opts.access_denied is None:
            # The common commands in their simple forms (fastpost.smtp.command):
            # parsed in one compiled pass; anything else takes the general path.
            got = quick.quick_command(raw_verb, raw_args)
            if got is not None:
                event = self._quick(*got)
                if event is not None:
                    return event
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
        if pending_bytes and (verb in state.LAST_IN_GROUP or not self.state.esmtp):
            # BDAT: its chunk follows; QUIT: nothing follows; STARTTLS: the pending
            # plaintext is discarded at the 220 instead (Postfix does not call it
            # pipelining either).
            if verb != "BDAT" and verb != "QUIT" and verb != "STARTTLS":
                self.notes.append(("pipelining", verb, self._reader.peek(_PIPELINING_SHOW)
                                    .decode("utf-8", "replace")))
        return handler(verb, args)

    def _quick(self, kind: int, text: str, size: int):
        """The event of a simple-form command when it is allowed now, else None.

        Decides only what the general path would let through without an error, in
        the same order of effects (the pipelining note, then the event); every
        refusal (sequence, smtpd_helo_required, TLS, size and recipient limits,
        strict_rfc821_envelopes) is left to the general path, which answers it.
        """
        opts = self.options
        st = self.state
        if kind == _Q_MAIL:
            if ((opts.helo_required and st.helo is None) or st.phase != state.READY
                    or (opts.tls_required and not st.tls) or opts.strict_rfc821
                    or (size >= 0 and opts.message_size_limit
                        and size > opts.message_size_limit)):
                return None
            event = ev.Mail(text, size if size >= 0 else None)
        elif kind == _Q_RCPT:
            if ((st.phase != state.MAIL and st.phase != state.RCPT) or opts.strict_rfc821
                    or (opts.recipient_limit and st.rcpt_accepted >= opts.recipient_limit)):
                return None
            event = ev.Rcpt(text)
        elif kind == _Q_DATA:
            if st.phase != state.RCPT:
                return None
            event = _DATA_EVENT
        elif kind == _Q_EHLO:
            event = ev.Ehlo(text)
        elif kind == _Q_HELO:
            event = ev.Helo(text)
        else:
            event = _NOARG_EVENTS[kind]
        verb = _Q_VERBS[kind]
        if self._reader.buffered and (verb in state.LAST_IN_GROUP or not st.esmtp) \
                and kind != _Q_QUIT:
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

    def _start_data(self) -> None:
        """Enter DATA mode after our 354; decode what the client already sent."""
        opts = self.options
        self.input = state.DATA
        self._content_done = False
        self._data_bytes = 0
        self._decoder = DotDecoder(opts.message_size_limit, opts.bare_lf != "no", True)
        early = self._reader.take_all()
        if early:
            self._feed_data(early)

    def _feed_data(self, data) -> None:
        dec = self._decoder
        out, used, done = dec.feed(data)
        self._data_bytes = dec.raw_lines  # complete lines only, as Postfix counts
        if out:
            self._chunks.append(out)
        if done:
            self._content_done = True
            if used < len(data):
                # The bytes after the terminator are the next command(s).
                self._reader.feed(data[used:])

    def _next_data_event(self):
        if self._chunks:
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks.clear()
            return ev.DataChunk(data)
        if self._content_done:
            dec = self._decoder
            self._pending = "EOD"
            self._pending_last = True
            return ev.EndOfData(dec.size, dec.too_big, dec.bare_lf)
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
        self.input = state.CHUNK
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
