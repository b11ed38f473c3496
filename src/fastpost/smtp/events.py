"""Events of the sans-IO SMTP core: what the peer said, already parsed and checked.

Postfix counterpart: the command table and argument parsing of src/smtpd/smtpd.c
(what each *_cmd() function extracts before it runs the restrictions).

ServerConnection.next_event() returns one of these (or NEED_DATA / PAUSED). Events
are frozen, slotted dataclasses; do not subclass them. Each class has ``verb``, the
command name Postfix uses in its logs and statistics ("MAIL", "RCPT", "DATA" ...).

Events marked *reply* need exactly one reply from the session (``conn.send``) before
the core yields the next event; the others need none.

    Helo, Ehlo        reply   the client's greeting; ``name`` as given
    Mail              reply   MAIL FROM with its parsed ESMTP parameters
    Rcpt              reply   RCPT TO with NOTIFY / ORCPT
    Data              reply   DATA (the session answers 354 or an error)
    DataChunk                 message bytes (dot-unstuffed, CRLF line ends)
    EndOfData         reply   the end of a DATA message, with counts
    Bdat                      a BDAT chunk starts; DataChunk events and a ChunkEnd follow
    ChunkEnd          reply   a BDAT chunk was read completely (``last``: the message too)
    Rset, Noop, Quit  reply
    Vrfy              reply   the argument as given and the address parsed from it
    Etrn              reply
    Help              reply   (Postfix has no HELP; fastpost's smtpd answers as it does)
    StartTls          reply   STARTTLS; after a 220 the session runs the handshake and
                              calls conn.tls_started()
    Auth              reply   AUTH mechanism [initial-response]
    AuthResponse      reply   one client line of the SASL exchange (base64-decoded)
    Xclient, Xforward reply   attributes, xtext-decoded and checked
    ConnectionClosed          the peer closed its side

Diagnostics: none; the constructors do not validate (the core builds them from
checked input).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Event", "Helo", "Ehlo", "Mail", "Rcpt", "Data", "DataChunk", "EndOfData", "Bdat",
    "ChunkEnd", "Rset", "Noop", "Quit", "Vrfy", "Etrn", "Help", "StartTls", "Auth",
    "AuthResponse", "Xclient", "Xforward", "ConnectionClosed", "NEED_DATA", "PAUSED",
    "Response", "TransactionResult",
]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: next_event(): more bytes are needed before the next event.
NEED_DATA = _Sentinel("NEED_DATA")
#: next_event(): nothing until the session sends the reply that is due (or the TLS
#: handshake completes, or the greeting is sent).
PAUSED = _Sentinel("PAUSED")


class Event:
    """Base class of every event."""

    __slots__ = ()
    verb = ""
    needs_reply = True


@dataclass(frozen=True, slots=True)
class Helo(Event):
    """HELO hostname."""

    name: str
    verb = "HELO"


@dataclass(frozen=True, slots=True)
class Ehlo(Event):
    """EHLO hostname."""

    name: str
    verb = "EHLO"


@dataclass(frozen=True, slots=True)
class Mail(Event):
    """MAIL FROM:<address> [parameters].

    ``address`` is the internal form (quotes removed, source route stripped, "" for
    the null sender). ``size`` is SIZE= or None; ``body`` "7BIT", "8BITMIME",
    "BINARYMIME" or None; ``ret`` "FULL", "HDRS" or None; ``envid`` the decoded
    ENVID or None; ``auth`` the decoded AUTH= value ("<>" kept as is) or None.
    """

    address: str
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None
    verb = "MAIL"


@dataclass(frozen=True, slots=True)
class Rcpt(Event):
    """RCPT TO:<address> [NOTIFY=...] [ORCPT=type;xtext].

    ``notify`` is a tuple of "SUCCESS"/"FAILURE"/"DELAY", ("NEVER",), or None;
    ``orcpt`` is "type;decoded-address" as Postfix stores it, or None.
    """

    address: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None
    verb = "RCPT"


@dataclass(frozen=True, slots=True)
class Data(Event):
    """DATA."""

    verb = "DATA"


@dataclass(frozen=True, slots=True)
class DataChunk(Event):
    """Message content: dot-unstuffed (DATA), every line ending in CRLF."""

    data: bytes
    verb = "DATA"
    needs_reply = False


@dataclass(frozen=True, slots=True)
class EndOfData(Event):
    """The message is complete (DATA terminator, or the end of BDAT LAST).

    ``size`` counts the content bytes as delivered in DataChunk events (including
    the part beyond message_size_limit that was read but not delivered);
    ``too_big`` says the message exceeded message_size_limit (reply 552, the
    content was cut); ``bare_lf`` counts lines that ended in a bare LF. (BDAT LAST
    ends with ChunkEnd(last=True) instead.)
    """

    size: int
    too_big: bool = False
    bare_lf: int = 0
    verb = "DATA"


@dataclass(frozen=True, slots=True)
class Bdat(Event):
    """BDAT size [LAST] was accepted for reading: DataChunk events and a ChunkEnd follow.

    ``first`` is True for the first chunk of a message (the session opens its
    transaction there).
    """

    size: int
    last: bool
    first: bool
    verb = "BDAT"
    needs_reply = False


@dataclass(frozen=True, slots=True)
class ChunkEnd(Event):
    """A BDAT chunk was read; ``total`` is the message size so far (normalised).

    For the LAST chunk an EndOfData is *not* sent separately: ChunkEnd carries
    ``last`` and the counts, and its reply ends the transaction.
    """

    size: int
    last: bool
    total: int
    too_big: bool = False
    bare_lf: int = 0
    verb = "BDAT"


@dataclass(frozen=True, slots=True)
class Rset(Event):
    """RSET."""

    verb = "RSET"


@dataclass(frozen=True, slots=True)
class Noop(Event):
    """NOOP (any argument is ignored, as Postfix does)."""

    verb = "NOOP"


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """QUIT (any argument is ignored, as Postfix does)."""

    verb = "QUIT"


@dataclass(frozen=True, slots=True)
class Vrfy(Event):
    """VRFY argument [SMTPUTF8]; ``address`` is parsed like a RCPT address."""

    argument: str
    address: str
    smtputf8: bool = False
    verb = "VRFY"


@dataclass(frozen=True, slots=True)
class Etrn(Event):
    """ETRN domain (a leading "@" or "#" removed)."""

    domain: str
    verb = "ETRN"


@dataclass(frozen=True, slots=True)
class Help(Event):
    """HELP [topic]."""

    topic: str = ""
    verb = "HELP"


@dataclass(frozen=True, slots=True)
class StartTls(Event):
    """STARTTLS."""

    verb = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Auth(Event):
    """AUTH mechanism [initial-response]; ``initial`` is decoded bytes, or None."""

    mechanism: str
    initial: bytes | None = None
    verb = "AUTH"


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    """One client response line of the SASL exchange, base64-decoded."""

    data: bytes
    verb = "AUTH"


def _last_attribute(attributes, name: str, default: str | None) -> str | None:
    """The value of the last (name, value) pair called name, or default (XCLIENT, XFORWARD)."""
    for key, value in reversed(attributes):
        if key == name:
            return value
    return default


@dataclass(frozen=True, slots=True)
class Xclient(Event):
    """XCLIENT attributes: (name, value) pairs, names upper-case, values decoded."""

    attributes: tuple[tuple[str, str], ...]
    verb = "XCLIENT"

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of an attribute (the last one given), or default."""
        return _last_attribute(self.attributes, name, default)


@dataclass(frozen=True, slots=True)
class Xforward(Event):
    """XFORWARD attributes: (name, value) pairs, names upper-case, values decoded."""

    attributes: tuple[tuple[str, str], ...]
    verb = "XFORWARD"

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of an attribute (the last one given), or default."""
        return _last_attribute(self.attributes, name, default)


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed the connection (``receive_data(b"")``)."""

    verb = "CLOSE"
    needs_reply = False


# --------------------------------------------------------------------------------
# Client-side events (ClientConnection.next_event)
# --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response(Event):
    """A server reply, paired with the command it answers.

    ``command`` is "GREETING", "EHLO", "LHLO", "HELO", "STARTTLS", "MAIL", "RCPT",
    "DATA", "BDAT", "DOT" (the reply after the end of content; in LMTP one per
    accepted recipient), "RSET", "NOOP", "QUIT", or "UNSOLICITED" (a 421 the server
    sent on its own). ``recipient`` is set for RCPT and LMTP DOT replies.
    """

    command: str
    reply: object
    recipient: str | None = None
    needs_reply = False


@dataclass(frozen=True, slots=True)
class TransactionResult(Event):
    """The outcome of one mail transaction, one (recipient, reply) per recipient.

    Each reply is the final word for that recipient: the RCPT rejection, the MAIL
    rejection, the DATA/BDAT rejection, or the reply after the content (SMTP: the
    same for every accepted recipient; LMTP: each recipient's own). ``delivered``
    is True when the server accepted the message for at least one recipient.
    """

    results: tuple
    delivered: bool
    needs_reply = False
