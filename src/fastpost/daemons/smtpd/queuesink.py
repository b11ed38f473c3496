"""QueueSink: smtpd writes accepted mail straight into the queue store (interim).

Postfix counterpart: what cleanup(8) writes for smtpd (src/cleanup/cleanup_envelope.c,
the attributes smtpd sends in src/smtpd/smtpd.c mail_open_stream), minus everything
cleanup *does* to a message.

Until the cleanup daemon and its client exist, the smtpd that the master runs uses
this MessageSink: each worker process is a committer of the log-structured queue
(fastpost.mail.queue: group commit, one fdatasync per batch), and a message is built
as the Postfix queue file cleanup would write - arrival time, the log_*/client_*
attributes (XFORWARD's values for the log_* ones when a content filter sent them),
sender, recipients with their original address and DSN data, then the content
exactly as the client sent it after the Received: header. "250 ... queued as ID" is
sent when commit() returns, i.e. after the batch's fdatasync.

What is NOT done here (cleanup's job): header checks and header rewriting, adding
Message-Id/Date/From, canonical/virtual/masquerading, BCC maps, duplicate
elimination, milters, the qmgr wake-up. When the cleanup client lands it replaces this
sink (the MessageSink seam does not change).

Parameters: queue_directory (the process's working directory after the skeleton's
chdir/chroot) and the queue store's own (fastpost.mail.queue.QueueSettings).
Diagnostics: SinkError(452 4.3.1) when the queue file system is full, SinkError(451
4.3.0) for any other storage error, with the reason as the warning text.
"""

from __future__ import annotations

import time

from fastpost.daemons.smtpd.info import ClientInfo, Envelope, Recipient
from fastpost.daemons.smtpd.sink import MessageSink, SinkError, Transaction
from fastpost.mail import rectype as R
from fastpost.mail.queue import InsufficientStorage, QueueError, QueueStore
from fastpost.smtp import replies

__all__ = ["QueueSink"]

from fastpost.mail.cleanup_proto import NOTIFY_BITS as _NOTIFY_BITS  # noqa: E402
#: RET as Postfix's DSN_RET_* values.
_RET = {"FULL": "1", "HDRS": "2"}


def _failed(exc: Exception) -> SinkError:
    if isinstance(exc, InsufficientStorage):
        return SinkError(replies.INSUFFICIENT_STORAGE, log=f"queue: {exc}")
    return SinkError(replies.WRITE_ERROR, log=f"queue: {exc}")


class _QueueTransaction(Transaction):
    def __init__(self, committer, builder):
        self.committer = committer
        self.builder = builder
        self.queue_id = builder.queue_id

    def add_recipient(self, recipient: Recipient) -> None:
        bits = 0
        for word in recipient.notify or ():
            bits |= _NOTIFY_BITS.get(word, 0)
        orcpt = recipient.orcpt or f"rfc822;{recipient.address}"
        self.builder.add_recipient(recipient.address, recipient.address,
                                   dsn_orcpt=orcpt, dsn_notify=bits)

    def write(self, data: bytes):
        try:
            if self.builder.write_nowait(data):
                return self._spill()
        except (InsufficientStorage, QueueError, OSError) as exc:
            raise _failed(exc) from None
        return None

    async def _spill(self):
        try:
            await self.builder.spill()
        except (InsufficientStorage, QueueError, OSError) as exc:
            raise _failed(exc) from None

    async def _commit(self) -> str:
        try:
            return await self.committer.commit(self.builder)
        except (InsufficientStorage, QueueError, OSError) as exc:
            raise _failed(exc) from None

    def finish(self):
        return self._commit()

    def abort(self) -> None:
        self.builder.abort()


class QueueSink(MessageSink):
    """Messages into the queue store, as cleanup would leave them (module docstring)."""

    def __init__(self, store: QueueStore, committer):
        self.store = store
        self.committer = committer

    @classmethod
    def open(cls, queue_directory: str, cfg=None, name: str = "smtpd") -> "QueueSink":
        """Open the store of queue_directory (recovering it) and make this process a committer."""
        store = QueueStore.open(queue_directory, cfg)
        return cls(store, store.committer(name))

    def begin(self, client: ClientInfo, envelope: Envelope):
        try:
            b = self.committer.builder()
        except (InsufficientStorage, QueueError, OSError, RuntimeError) as exc:
            raise _failed(exc) from None
        b.time(time.time())
        fwd = client.forwarded
        log_name = fwd.get("NAME", client.name)
        log_addr = fwd.get("ADDR", client.addr)
        log_port = fwd.get("PORT", client.port)
        log_helo = fwd.get("HELO", client.helo or "")
        log_proto = fwd.get("PROTO", client.protocol)
        b.attr("rewrite_context", "local" if fwd.get("SOURCE") == "LOCAL" else "remote")
        b.set_sender(envelope.sender)
        for name, value in (
            ("log_client_name", log_name), ("log_client_address", log_addr),
            ("log_client_port", log_port), ("log_message_origin", f"{log_name}[{log_addr}]"),
            ("log_helo_name", log_helo), ("log_protocol_name", log_proto),
            ("client_name", client.name), ("reverse_client_name", client.reverse_name),
            ("client_address", client.addr), ("client_port", client.port),
            ("server_address", client.server_addr), ("server_port", client.server_port),
            ("helo_name", client.helo or ""), ("protocol_name", client.protocol),
            ("client_address_type", "10" if ":" in client.addr else "2"),
        ):
            if value:
                b.attr(name, value)
        if "IDENT" in fwd:
            b.attr("log_ident", fwd["IDENT"])
        if client.sasl_method:
            b.attr("sasl_method", client.sasl_method)
            b.attr("sasl_username", client.sasl_username or "")
        if envelope.body == "8BITMIME":
            b.attr("encoding", "8bit")
        elif envelope.body == "7BIT":
            b.attr("encoding", "7bit")
        if envelope.ret:
            b.envelope(R.REC_TYPE_DSN_RET, _RET[envelope.ret])
        if envelope.envid:
            b.envelope(R.REC_TYPE_DSN_ENVID, envelope.envid)
        return _QueueTransaction(self.committer, b)

    async def close(self) -> None:
        """Finish pending commits and close the store (the daemon's on_exit)."""
        await self.committer.close()
        self.store.close()
