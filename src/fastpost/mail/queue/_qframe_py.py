"""A small message's segment frame in one buffer: the reference of the kernel.

Postfix counterpart: none (fastpost's segment frames, fastpost.mail.queue.segment).
Compiled twin: ext/fastpost/mail/queue/_qframe_c.pyx; selector:
fastpost.mail.queue.qframe.

    message_frame(state, queue_id_bytes, chunks, size_record) -> bytes
        header + queue ID + payload, where the payload is the builder's chunks with
        the first (the C record placeholder) replaced by ``size_record``: the same
        bytes as segment.frame_header(KIND_MESSAGE, state, queue_id, len(payload),
        crc32(payload)) + payload.

    size_record(content_length, data_offset, rcpt_count, qmgr_flags, smtputf8) -> bytes
        the completed C record (QueueFileBuilder.size_record: type ``C``, length,
        six %15d fields).

    short_id_at(now, number) -> str
        the short queue ID of a time.time() value and a queue number
        (queue_id.short_id of int(now), the microseconds int((now - int(now)) * 1e6),
        and number); what Committer.new_queue_id gives out. ValueError for a negative
        time or number.

    crc32_of(data, crc=0) -> int
        zlib.crc32(data, crc): what the compiled message_frame computes over the
        payload (there with crc32_fold.h, carry-less multiplies; exposed for the tests).

Parameters: none. Failures: ValueError for a state outside 0..255 or a queue ID longer
than 255 bytes (the header's one-byte fields).
"""

import zlib

from fastpost.mail import rectype as R
from fastpost.mail.queue.message import size_payload
from fastpost.mail.queue.queue_id import short_id
from fastpost.mail.queue.segment import KIND_MESSAGE, frame_header
from fastpost.mail.record import encode_record


def size_record(content_length, data_offset, rcpt_count, qmgr_flags, smtputf8):
    """The completed C record (see the module docstring)."""
    return encode_record(R.REC_TYPE_SIZE, size_payload(content_length, data_offset, rcpt_count,
                                                       qmgr_flags, smtputf8))


def message_frame(state, qid, chunks, size_record):
    """The frame of a small message (see the module docstring)."""
    if not 0 <= state <= 255 or len(qid) > 255:
        raise ValueError("frame state must be 0..255 and the queue ID at most 255 bytes")
    crc = zlib.crc32(size_record)
    length = len(size_record)
    for c in chunks[1:]:
        crc = zlib.crc32(c, crc)
        length += len(c)
    return b"".join([frame_header(KIND_MESSAGE, state, qid, length, crc), size_record, *chunks[1:]])


def short_id_at(now, number):
    """The short queue ID of a time and a queue number (see the module docstring)."""
    if not now >= 0:
        raise ValueError("the time must be >= 0")
    sec = int(now)
    return short_id(sec, int((now - sec) * 1_000_000), number)


def crc32_of(data, crc=0):
    """zlib's CRC-32 of ``data`` continuing from ``crc`` (see the module docstring)."""
    return zlib.crc32(data, crc)
