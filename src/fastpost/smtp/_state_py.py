# cython: language_level=3, annotation_typing=False
"""Every state transition of the SMTP server and client cores, as tables.

Postfix counterpart: the command table and the state checks at the top of each
*_cmd() function in src/smtpd/smtpd.c; the session flow of src/smtp/smtp_proto.c.

Rule (after h11): whatever decides the server's protocol state lives in this file.
ServerConnection parses bytes and builds events; it asks this module whether a
command is allowed now and what a reply does to the state. (The client's side is
simpler - replies come back in the order commands went out - and lives with
ClientConnection in client.py.)

SMTP commits state on the *server's reply*, not on the command: a 250 to MAIL opens
the transaction, a 5xx does not. So the server core keeps the command that waits for
its reply and applies ServerState.on_reply when the session sends that reply.

Server transaction states (ServerState.phase):

    READY        no transaction
    MAIL         MAIL accepted, no recipient accepted yet
    RCPT         at least one RCPT accepted
    BDAT_OPEN    a BDAT chunk (not LAST) was accepted: only BDAT, RSET, NOOP, ... follow
    BDAT_FAILED  a BDAT chunk failed in a transaction: later chunks are read and dropped
                 up to LAST
    BDAT_FAILED_IDLE  the same when there was no transaction (BDAT before MAIL): RCPT
                 then still asks for MAIL, as Postfix does

Server input modes (what the next bytes are): GREETING (nothing is read before the
220), COMMAND, DATA, CHUNK, AUTH (a SASL response line), TLS (waiting for the
handshake after 220 to STARTTLS), CLOSED.

One source, two modules (Cython's pure-Python mode, docs/conventions.md): this file is
the reference, imported as fastpost.smtp._state_py; setup.py compiles it, typed by
ext/fastpost/smtp/_state_c.pxd, into fastpost.smtp._state_c (ServerState a cdef class),
which production runs; fastpost.smtp.state is the selector every caller imports (the
markers in SEQUENCE are compared by identity: take them and SEQUENCE from one module).
ServerState.on_reply runs for every reply of every session: compiled, it is a C call.

Diagnostics: none; callers raise RemoteProtocolError with the replies found here.
"""

from __future__ import annotations

from fastpost.smtp import replies

# Transaction phases.
READY = "READY"
MAIL = "MAIL"
RCPT = "RCPT"
BDAT_OPEN = "BDAT_OPEN"
BDAT_FAILED = "BDAT_FAILED"
BDAT_FAILED_IDLE = "BDAT_FAILED_IDLE"

# Input modes.
GREETING = "GREETING"
COMMAND = "COMMAND"
DATA = "DATA"
CHUNK = "CHUNK"
AUTH = "AUTH"
TLS = "TLS"
CLOSED = "CLOSED"

#: Read and drop a BDAT chunk, then answer the error (see SEQUENCE).
_NO_RCPT = object()  # "need RCPT" or "no valid recipients", by what was tried
_DISCARD = object()  # inside a failed BDAT sequence: "Discarded N bytes"

#: Sequencing rules for the transaction commands: SEQUENCE[phase][verb] is None when
#: the command may be given, else the error reply (or one of the markers above).
SEQUENCE = {
    READY: {"MAIL": None, "RCPT": replies.NEED_MAIL, "DATA": _NO_RCPT, "BDAT": _NO_RCPT},
    MAIL: {"MAIL": replies.NESTED_MAIL, "RCPT": None, "DATA": _NO_RCPT, "BDAT": _NO_RCPT},
    RCPT: {"MAIL": replies.NESTED_MAIL, "RCPT": None, "DATA": None, "BDAT": None},
    BDAT_OPEN: {"MAIL": replies.NESTED_MAIL, "RCPT": replies.RCPT_AFTER_BDAT,
                "DATA": replies.DATA_AFTER_BDAT, "BDAT": None},
    BDAT_FAILED: {"MAIL": replies.NESTED_MAIL, "RCPT": replies.RCPT_AFTER_BDAT,
                  "DATA": replies.DATA_AFTER_BDAT, "BDAT": _DISCARD},
    BDAT_FAILED_IDLE: {"MAIL": replies.MAIL_AFTER_BDAT, "RCPT": replies.NEED_MAIL,
                       "DATA": replies.DATA_AFTER_BDAT, "BDAT": _DISCARD},
}

#: Commands that need no transaction and must not be given inside one.
OUTSIDE_TRANSACTION = {
    "ETRN": replies.ETRN_IN_MAIL,
    "XCLIENT": replies.MAIL_IN_PROGRESS,
    "XFORWARD": replies.MAIL_IN_PROGRESS,
    "AUTH": replies.MAIL_IN_PROGRESS,
}

#: Commands after which a client must wait for the reply before sending more
#: (RFC 2920 section 3.1, and what Postfix 3.7 enforces with
#: smtpd_forbid_unauth_pipelining). Before a successful EHLO every command is one.
LAST_IN_GROUP = frozenset(
    ["HELO", "EHLO", "DATA", "VRFY", "NOOP", "QUIT", "STARTTLS", "AUTH", "XCLIENT"]
)

#: Commands that count as "junk" for smtpd_junk_command_limit (Postfix's
#: SMTPD_CMD_FLAG_LIMIT).
JUNK = frozenset(["HELO", "EHLO", "NOOP", "VRFY", "ETRN", "RSET"])


class ServerState:
    """The server's protocol state: helo, transaction phase, counters.

    ``check(verb)`` answers whether a transaction command is allowed now;
    ``on_reply(verb, reply, ...)`` applies what the reply to it means.
    """

    __slots__ = ("phase", "helo", "esmtp", "tls", "authenticated", "rcpt_accepted",
                 "rcpt_tried", "bdat_first")

    def __init__(self):
        self.phase = READY
        self.helo: str | None = None  # the HELO/EHLO name, once accepted
        self.esmtp = False  # EHLO accepted: ESMTP extensions and pipelining apply
        self.tls = False  # STARTTLS completed (or wrapper mode)
        self.authenticated = False
        self.rcpt_accepted = 0
        self.rcpt_tried = 0
        self.bdat_first = True  # the next accepted BDAT opens the message

    def reset_transaction(self) -> None:
        """Forget the mail transaction (RSET, HELO, end of a message)."""
        self.phase = READY
        self.rcpt_accepted = 0
        self.rcpt_tried = 0
        self.bdat_first = True

    def reset_session(self) -> None:
        """Forget everything learnt from the client (after STARTTLS or XCLIENT)."""
        self.reset_transaction()
        self.helo = None
        self.esmtp = False
        self.authenticated = False

    def check(self, verb: str):
        """Return None when the transaction command may be given now, else its error.

        The result may be the _NO_RCPT or _DISCARD marker (see SEQUENCE); use
        resolve() to turn _NO_RCPT into a reply.
        """
        return SEQUENCE[self.phase][verb]

    def no_rcpt_reply(self):
        """Return the reply for DATA/BDAT without an accepted recipient.

        Postfix: 503 need RCPT outside a transaction, 554 no valid recipients inside
        one (MAIL accepted, every RCPT refused or none sent).
        """
        return replies.NO_VALID_RCPT if self.in_transaction() else replies.NEED_RCPT

    def in_transaction(self) -> bool:
        """True between an accepted MAIL and the end of the message (or RSET)."""
        return self.phase != READY and self.phase != BDAT_FAILED_IDLE

    def on_reply(self, verb: str, code: int, last: bool = False) -> None:
        """Apply what a reply with ``code`` to ``verb`` means.

        This is the table of reply transitions, by the command (or pseudo-command) the
        reply answers; REPLY_TRANSITIONS lists its verbs. "EOD" is the end of DATA
        content, "CHUNK" the end of a BDAT chunk (``last``: BDAT LAST), "BDAT-ERROR" a
        chunk that was read and dropped. EHLO also sets ``esmtp`` and HELO/EHLO
        ``helo`` (done by the connection, which knows the name). A 421 or 521 reply,
        and any reply to QUIT, closes the connection (the connection's part too).
        One function, not one per verb: it runs for every reply of every message.
        """
        if verb == "MAIL":
            if code < 400:
                self.phase = MAIL
        elif verb == "RCPT":
            self.rcpt_tried += 1
            if code < 400:
                self.rcpt_accepted += 1
                self.phase = RCPT
        elif verb == "EOD":
            self.reset_transaction()
        elif verb == "HELO" or verb == "EHLO" or verb == "RSET":
            if code < 400:
                self.reset_transaction()
        elif verb == "CHUNK":
            if last:
                self.reset_transaction()
            elif code < 400:
                self.phase = BDAT_OPEN
                self.bdat_first = False
            else:
                self.phase = BDAT_FAILED
        elif verb == "BDAT-ERROR":
            # A BDAT that was read and dropped because of an error.
            if last:
                self.reset_transaction()
            elif self.phase in (READY, BDAT_FAILED_IDLE):
                self.phase = BDAT_FAILED_IDLE
            else:
                self.phase = BDAT_FAILED
        elif verb == "AUTH":
            if code == 235:
                self.authenticated = True
        elif verb == "XCLIENT":
            if code == 220:
                self.reset_session()


#: The commands (and pseudo-commands) whose replies move the state (ServerState.on_reply).
REPLY_TRANSITIONS = frozenset(["HELO", "EHLO", "MAIL", "RCPT", "EOD", "CHUNK", "BDAT-ERROR",
                               "RSET", "AUTH", "XCLIENT"])

#: Reply codes after which the server closes the connection.
CLOSING_CODES = frozenset([421, 521])
