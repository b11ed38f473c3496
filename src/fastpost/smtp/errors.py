"""Exceptions of the sans-IO SMTP core.

Postfix counterpart: the error paths of src/smtpd/smtpd.c (each command handler
replies with an error and returns -1; the caller counts the error).

Only two exception types leave fastpost.smtp:

    RemoteProtocolError   the peer broke the protocol (bad syntax, a command out of
                          sequence, a limit exceeded). It carries the reply to send
                          (``reply``), the command it concerns (``verb``, for the
                          per-command statistics), whether the connection must close
                          after the reply (``fatal``) and, when Postfix logs a warning
                          for it, a short ``kind`` naming the log line the session
                          writes. The connection object stays usable after a
                          non-fatal error: SMTP continues after a 5xx.
    LocalProtocolError    this side misused the core (a reply sent when none is due,
                          data sent in the wrong state). An internal bug; it is never
                          caused by the peer.

Internally the core raises LocalProtocolError subclasses with a reply hint too
(h11's pattern); next_event() converts peer-caused ones into RemoteProtocolError.

Diagnostics: none of its own.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of the core's exceptions."""


class LocalProtocolError(ProtocolError):
    """This side used the connection object wrongly (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; send ``reply`` and carry on (unless ``fatal``).

    ``verb`` is the command the error belongs to ("MAIL", "UNKNOWN", "DATA", ...),
    or "" for input Postfix does not count as a command (an empty line, bad UTF-8,
    a line rejected for its bare LF);
    ``kind`` names a warning the session logs ("overlong", "bdat-syntax",
    "non-smtp", ...) or is "" when Postfix logs nothing; ``detail`` is the untrusted
    text that warning shows.
    """

    def __init__(self, reply, verb: str = "UNKNOWN", *, fatal: bool = False,
                 kind: str = "", detail: str = ""):
        super().__init__(str(reply))
        self.reply = reply
        self.verb = verb
        self.fatal = fatal
        self.kind = kind
        self.detail = detail
