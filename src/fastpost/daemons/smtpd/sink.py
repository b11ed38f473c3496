"""The MessageSink seam: where smtpd hands an accepted message.

Postfix counterpart: smtpd's conversation with cleanup(8) (src/smtpd/smtpd.c
mail_open_stream / mail_stream_finish; the cleanup_protocol of
src/cleanup/cleanup.c), which the cleanup-client issue implements behind this
interface.

    txn = sink.begin(client, envelope)        -> Transaction | Awaitable[Transaction]
    txn.add_recipient(recipient)              -> None        (each accepted RCPT)
    txn.write(data)                           -> None | Awaitable[None]
    queue_id = txn.finish()                   -> str | Awaitable[str]
    txn.abort()                               -> None        (never raises)

``begin`` is called at the first accepted recipient (Postfix's default
smtpd_delay_open_until_valid_rcpt = yes); the Transaction has its ``queue_id`` from
then on (smtpd logs ``QUEUEID: client=...`` and puts the ID in the Received:
header). ``write`` gets the content in order: the Received: header smtpd generates,
then the message as the client sent it, every line ending in CR LF, dot-unstuffed.
``finish`` returns only when the message is durably stored; its result is the only
thing that makes smtpd answer ``250 2.0.0 Ok: queued as ID``.

Failures: any method may raise SinkError(reply); smtpd answers with that reply
(``451 4.3.0 Error: queue file write error`` when the sink gives none) and aborts the
transaction. Any other exception is treated the same way and logged as a warning.
An awaitable result makes the session stop reading from that client until it
completes; other clients carry on.

Direct transactions (a sink whose ``direct`` is true: CleanupSink). Instead of
futures, the transaction calls the session back when the sink answers, and the
session waits without a future between them (no loop handle, no callback objects per
message):

    txn = sink.begin(client, envelope)        -> Transaction (never an awaitable)
    txn.session = session                     the session, set by it at once
    session._sink_opened(txn)                 txn.queue_id is known (the session logs
                                              ``client=`` and goes on with DATA/BDAT),
                                              or the sink refused it: txn.refusal, a
                                              SinkError, is the reply to DATA/BDAT
    txn.finish()                              -> None: the answer comes to
    session._sink_answered(txn, queue_id, exc)   exc None: durably stored
    txn.abort()                               also drops txn.session

The transaction drops its reference to the session when no answer can follow (and
at abort), so that neither keeps the other alive.

Diagnostics: SinkError.
"""

from __future__ import annotations

from fastpost.daemons.smtpd.info import ClientInfo, Envelope, Recipient
from fastpost.smtp import replies
from fastpost.smtp.replies import Reply

__all__ = ["SinkError", "MessageSink", "Transaction"]


class SinkError(Exception):
    """The sink cannot take the message; ``reply`` is what the client is told."""

    def __init__(self, reply: Reply | None = None, log: str = ""):
        super().__init__(log or str(reply or replies.WRITE_ERROR))
        self.reply = reply or replies.WRITE_ERROR
        self.log = log


class Transaction:
    """One message on its way into the queue (interface; see the module docstring)."""

    queue_id: str = ""

    def add_recipient(self, recipient: Recipient) -> None:
        """Add an accepted recipient."""
        raise NotImplementedError

    def write(self, data: bytes):
        """Append content; may return an awaitable (back-pressure)."""
        raise NotImplementedError

    def finish(self):
        """Make the message durable; return (or resolve to) its queue ID."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the message; must not raise."""
        raise NotImplementedError


class MessageSink:
    """Where messages go (interface; see the module docstring)."""

    #: True: begin() returns direct transactions (module docstring)
    direct = False

    def begin(self, client: ClientInfo, envelope: Envelope):
        """Open a transaction for envelope; return it (or an awaitable of it)."""
        raise NotImplementedError
