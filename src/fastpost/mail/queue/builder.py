"""MessageBuilder: what cleanup fills in, record by record and chunk by chunk.

Postfix counterpart: the queue file cleanup writes while it receives a message
(src/cleanup/cleanup_envelope.c ... cleanup_final.c, src/global/mail_stream.c).

A builder is made by a committer, and it gets its queue ID at once, as a Postfix queue
file does when cleanup opens it (so smtpd can log ``ID: client=...`` before DATA).
The producer then adds the envelope, streams the content, adds extracted records, and
hands the builder to ``await committer.commit(builder)``.

Memory: a message is held once, as encoded records. When it grows past
fastpost_queue_large_message_size it is spilled to a segment file of its own
(``<id>.tmp``, locked), and from then on every content chunk goes straight to that file
(in the committer's I/O thread, so the event loop never blocks on disk); commit then
completes and syncs that file. abort() throws the message away (and its file).

Parameters: line_length_limit (content line pieces), fastpost_queue_large_message_size.
Diagnostics: ValueError for records added out of order (a bug in the caller);
InsufficientStorage from write() when spilling finds the disk full (the message is then
dead: abort it and answer 452); RuntimeError when used after commit or abort.
"""

from __future__ import annotations

import os
import zlib

from fastpost.mail.queue.message import QueueFileBuilder
from fastpost.mail.queue.segment import (
    FRAME_HEADER_LEN, KIND_MESSAGE, SEG_FLAG_LARGE, SegmentWriter, batch_frame, frame_header,
    storage_error,
)


class MessageBuilder:
    """One message being received; see the module docstring."""

    def __init__(self, committer, queue_id: str, line_limit: int, spill_threshold: int):
        self.committer = committer
        self.queue_id = queue_id
        self.records = QueueFileBuilder(line_limit)
        self.spill_threshold = spill_threshold
        self.large: LargeFile | None = None
        self.state = "open"  # open, committing, committed, aborted

    # -- envelope (delegated; see QueueFileBuilder) --------------------------------------

    def time(self, seconds: float) -> None:
        self.records.time(seconds)

    def attr(self, name: str, value: str) -> None:
        self.records.attr(name, value)

    def add_attrs(self, pairs) -> None:
        self.records.add_attrs(pairs)

    def envelope_many(self, records) -> None:
        self.records.envelope_many(records)

    def set_sender(self, address: str) -> None:
        self.records.set_sender(address)

    def add_recipient(self, address: str, orig: str | None = None, **dsn) -> int:
        return self.records.add_recipient(address, orig, **dsn)

    def envelope(self, rtype: int, data) -> int:
        return self.records.envelope(rtype, data)

    def extracted(self, rtype: int, data) -> int:
        return self.records.extracted(rtype, data)

    @property
    def content_length(self) -> int:
        return self.records.content_length

    @property
    def size(self) -> int:
        """Bytes of queue file built so far."""
        return self.records.offset

    # -- content ----------------------------------------------------------------------

    async def write(self, text: bytes) -> None:
        """Add message text; spill to the message's own file past the threshold."""
        self._check_open()
        self.records.write(text)
        if self.large is not None or self.records.offset >= self.spill_threshold:
            await self.committer.run_io(self._spill)

    def write_nowait(self, text: bytes) -> bool:
        """Add message text without spilling; True when the caller should ``await spill()``."""
        self._check_open()
        self.records.write(text)
        return self.large is not None or self.records.offset >= self.spill_threshold

    async def spill(self) -> None:
        """Move what is buffered to the message's own file (in the I/O thread)."""
        self._check_open()
        await self.committer.run_io(self._spill)

    def _spill(self) -> None:
        if self.large is None:
            self.large = LargeFile(self.committer.store, self.queue_id)
        self.large.append(self.records.take_chunks())

    def _check_open(self) -> None:
        if self.state != "open":
            raise RuntimeError(f"message {self.queue_id} is {self.state}")

    # -- end --------------------------------------------------------------------------

    def abort(self) -> None:
        """Forget the message (and remove its file, if it has one)."""
        if self.state in ("committed", "aborted"):
            return
        self.state = "aborted"
        if self.large is not None:
            self.large.discard()
            self.large = None

    def __del__(self):
        large = getattr(self, "large", None)
        if large is not None and getattr(self, "state", "") != "committed":
            large.discard()


class LargeFile:
    """The segment file of one large message, written while the message arrives.

    Layout: segment header, then one frame (header written last) and a batch end,
    like any segment; the file keeps its ``.tmp`` name (and its lock) until finish().
    """

    def __init__(self, store, queue_id: str):
        self.store = store
        self.queue_id = queue_id.encode("ascii")
        segid = store.allocate_segid()
        self.writer = SegmentWriter(store.segment_dir, segid, SEG_FLAG_LARGE)
        self.frame_offset = self.writer.size
        self.payload_offset = self.frame_offset + FRAME_HEADER_LEN + len(self.queue_id)
        # placeholder frame header + queue ID; the real header is written by finish()
        self.writer.append([b"\0" * FRAME_HEADER_LEN, self.queue_id], sync=False)

    @property
    def segid(self) -> int:
        return self.writer.segid

    def append(self, chunks: list) -> None:
        self.writer.append(chunks, sync=False)

    def finish(self, state: int, size_record: bytes, chunks: list) -> tuple[int, int, int]:
        """Complete, sync and publish the file; return (segid, frame offset, frame length)."""
        w = self.writer
        w.append(chunks, sync=False)
        end = w.size
        try:
            os.pwrite(w.fd, size_record, self.payload_offset)
            crc = _file_crc(w.fd, self.payload_offset, end)
            header = frame_header(KIND_MESSAGE, state, self.queue_id, end - self.payload_offset, crc)
            os.pwrite(w.fd, header, self.frame_offset)
        except OSError as exc:
            raise storage_error(exc, f"write {w.path}") from None
        w.append([batch_frame(self.frame_offset, 1, [header])], sync=True)
        w.publish()
        return w.segid, self.frame_offset, end - self.frame_offset

    def close(self) -> None:
        self.writer.close()

    def discard(self) -> None:
        """Remove the unfinished file."""
        w = self.writer
        for path in (w.tmp, w.path):
            try:
                os.unlink(path)
            except OSError:
                pass
        w.close()


def _file_crc(fd: int, start: int, end: int) -> int:
    crc = 0
    pos = start
    while pos < end:
        block = os.pread(fd, min(1 << 20, end - pos), pos)
        if not block:
            raise OSError(5, "short read while checksumming a large message")
        crc = zlib.crc32(block, crc)
        pos += len(block)
    return crc

