"""LargeFile: the segment file of one large message, written while it arrives.

Postfix counterpart: none (Postfix writes every message to its own queue file; fastpost
gives a file of its own only to a message past fastpost_queue_large_message_size, and
packs the others into shared segments).

MessageBuilder (fastpost.mail.queue.builder) makes one when it spills; the committer's
I/O thread appends the content as it comes and finish() completes, syncs and publishes
the file at the commit; discard() removes an unfinished one (an aborted message, or a
builder freed without a commit).

Diagnostics: InsufficientStorage / OSError from the writes (storage_error), OSError for
a short read while checksumming.
"""

from __future__ import annotations

import os
import zlib

from fastpost.mail.queue.segment import (
    FRAME_HEADER_LEN, KIND_MESSAGE, SEG_FLAG_LARGE, SegmentWriter, batch_frame, frame_header,
    storage_error,
)


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

