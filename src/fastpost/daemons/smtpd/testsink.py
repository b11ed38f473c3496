"""A MessageSink that stores each message as files in a directory: for tests and
benchmarks only, until the real cleanup client exists.

Postfix counterpart: none (it stands in for cleanup(8) and the queue).

FileTestSink(directory) writes, per message, one file ``ID.msg``: a line of JSON
(the envelope) and then the content exactly as smtpd delivered it (Received: header
first, CR LF line ends). With ``fsync=True`` the file is created and fsync()ed in
the loop's default executor - never on the event loop - before finish() resolves, so
that "queued as ID" means what it says here too (one fsync per message, as Postfix's
cleanup does; no group commit - that is the queue's job). Queue IDs are upper-case hex from a
counter (deterministic, for golden transcripts) or, with ``random_ids``, from the
time and a sequence number, Postfix-style.

Content is kept in memory until finish(); a message larger than ``spill`` bytes goes
to a temporary file as it arrives.

NullSink(queue_id) accepts every message at once and keeps nothing: the benchmarks
that time smtpd's session alone use it.

Diagnostics: SinkError(451 4.3.0) when a file cannot be written.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time

from fastpost.daemons.smtpd.info import ClientInfo, Envelope, Recipient
from fastpost.daemons.smtpd.sink import MessageSink, SinkError, Transaction

__all__ = ["FileTestSink", "NullSink"]


class _FileTransaction(Transaction):
    def __init__(self, sink: "FileTestSink", queue_id: str, client: ClientInfo, envelope: Envelope):
        self.sink = sink
        self.queue_id = queue_id
        self.meta = {
            "queue_id": queue_id,
            "sender": envelope.sender,
            "size": envelope.size,
            "body": envelope.body,
            "smtputf8": envelope.smtputf8,
            "ret": envelope.ret,
            "envid": envelope.envid,
            "client_name": client.name,
            "client_address": client.addr,
            "helo_name": client.helo,
            "protocol_name": client.protocol,
            "forwarded": dict(client.forwarded),
            "recipients": [],
        }
        self._parts: list[bytes] = []
        self._size = 0
        self._spilled = None

    def add_recipient(self, recipient: Recipient) -> None:
        self.meta["recipients"].append(
            {"address": recipient.address, "notify": recipient.notify, "orcpt": recipient.orcpt})

    def write(self, data: bytes):
        self._size += len(data)
        if self._spilled is not None:
            self._spilled.write(data)
        elif self._size > self.sink.spill:
            path = os.path.join(self.sink.directory, f".{self.queue_id}.tmp")
            self._spilled = open(path, "w+b")
            for part in self._parts:
                self._spilled.write(part)
            self._spilled.write(data)
            self._parts = []
        else:
            self._parts.append(data)
        return None

    def _store(self) -> str:
        """Write ID.msg (JSON envelope line, then the content); fsync when asked."""
        path = os.path.join(self.sink.directory, f"{self.queue_id}.msg")
        head = json.dumps(self.meta).encode("utf-8") + b"\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if self._spilled is not None:
                    self._spilled.flush()
                    self._spilled.seek(0)
                    os.write(fd, head)
                    while True:
                        block = self._spilled.read(1 << 20)
                        if not block:
                            break
                        os.write(fd, block)
                else:
                    os.writev(fd, [head, *self._parts])
                if self.sink.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SinkError(log=f"{self.queue_id}: cannot store message: {exc}") from None
        finally:
            if self._spilled is not None:
                self._spilled.close()
                try:
                    os.unlink(self._spilled.name)
                except OSError:
                    pass
        return self.queue_id

    def finish(self):
        self.sink.stored += 1
        if not self.sink.fsync:
            return self._store()
        return asyncio.get_running_loop().run_in_executor(None, self._store)

    def abort(self) -> None:
        self.sink.aborted += 1
        if self._spilled is not None:
            try:
                self._spilled.close()
                os.unlink(self._spilled.name)
            except OSError:
                pass


class FileTestSink(MessageSink):
    """Store messages as ID.env/ID.msg files in ``directory`` (module docstring)."""

    def __init__(self, directory: str, *, fsync: bool = False, random_ids: bool = False,
                 spill: int = 1 << 20):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.fsync = fsync
        self.spill = spill
        self.random_ids = random_ids
        self._counter = itertools.count(1)
        self.begun = 0
        self.stored = 0
        self.aborted = 0

    def new_queue_id(self) -> str:
        """Return the next queue ID."""
        n = next(self._counter)
        if self.random_ids:
            usec = int(time.time() * 1e6) % 0x100000
            return f"{usec:05X}{os.getpid() & 0xFFF:03X}{n:X}"
        return f"{n:011X}"

    def begin(self, client: ClientInfo, envelope: Envelope):
        self.begun += 1
        return _FileTransaction(self, self.new_queue_id(), client, envelope)

    def messages(self) -> list[tuple[dict, bytes]]:
        """Return every stored message as (envelope dict, content), oldest first."""
        out = []
        for name in sorted(n for n in os.listdir(self.directory) if n.endswith(".msg")):
            with open(os.path.join(self.directory, name), "rb") as fh:
                head, _, content = fh.read().partition(b"\n")
            out.append((json.loads(head), content))
        return out


class NullSink:
    """Every message accepted at once under one queue ID, nothing kept (benchmarks)."""

    direct = False  # (sink.py; read by the session at every message)

    class _Txn:
        def __init__(self, queue_id: str):
            self.queue_id = queue_id

        def add_recipient(self, rcpt):
            pass

        def write(self, data):
            return None

        def finish(self):
            return self.queue_id

        def abort(self):
            pass

    def __init__(self, queue_id: str = "NULL0001"):
        self.queue_id = queue_id

    def begin(self, client, envelope):
        return self._Txn(self.queue_id)
