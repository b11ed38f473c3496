"""Queue-file record codec: the pure-Python reference.

Postfix counterpart: src/global/record.c (rec_put, rec_get_raw)

This is the specification of ext/fastpost/mail/_record_c.pyx and the oracle of the
differential tests; production code imports fastpost.mail.record, never this module.

Encoding: one type byte, the payload length in 7-bit groups (least significant group
first, high bit set when another group follows), then the payload.

Diagnostics: CorruptRecord for a length over ``max_length``, a length varint longer
than 5 bytes, or a type byte of 0; ValueError for a type outside 1..255.
"""

from fastpost.mail.rectype import CorruptRecord

_MAX_LENGTH_BYTES = 5  # 35 bits: enough for any max_length we accept


def encode_record(rtype: int, data: bytes) -> bytes:
    """Return one record: type byte, varint length, payload."""
    if not 0 < rtype < 256:
        raise ValueError(f"bad record type {rtype}")
    out = bytearray((rtype,))
    n = len(data)
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            break
    out += data
    return bytes(out)


def encode_records(records) -> bytes:
    """Return the concatenation of many (type, payload) records, built in one buffer."""
    return b"".join(encode_record(t, d) for t, d in records)


def split_records(buf, max_length: int, start: int = 0, base: int = 0):
    """Decode the complete records in ``buf`` from ``start``.

    Return ``(records, consumed)``: a list of (type, payload bytes) and the offset just
    past the last complete record. A partial record at the end is left unconsumed.
    ``base`` is added to offsets in error messages (the stream position of ``buf[0]``).
    """
    view = memoryview(buf)
    end = len(view)
    pos = start
    out = []
    while pos < end:
        rec_start = pos
        rtype = view[pos]
        if rtype == 0:
            raise CorruptRecord(f"illegal record type 0 at offset {base + rec_start}", base + rec_start)
        pos += 1
        length = 0
        shift = 0
        complete = False
        for _ in range(_MAX_LENGTH_BYTES):
            if pos >= end:
                break
            byte = view[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                complete = True
                break
        else:
            raise CorruptRecord(
                f"illegal length varint at offset {base + rec_start}, record type {rtype}",
                base + rec_start,
            )
        if not complete:
            return out, rec_start
        if length > max_length:
            raise CorruptRecord(
                f"illegal length {length} at offset {base + rec_start}, record type {rtype}",
                base + rec_start,
            )
        if pos + length > end:
            return out, rec_start
        out.append((rtype, bytes(view[pos : pos + length])))
        pos += length
    return out, pos


class RecordDecoder:
    """Incremental decoder: feed bytes, take complete records.

    Bounded: a record longer than ``max_length`` raises CorruptRecord as soon as its
    length is known, before its payload is buffered.
    """

    def __init__(self, max_length: int):
        if max_length < 0:
            raise ValueError("max_length must be >= 0")
        self.max_length = max_length
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0], for error messages

    def feed(self, data) -> None:
        """Append received bytes."""
        self._buf += data

    def records(self) -> list:
        """Return every complete record buffered so far, in order."""
        recs, used = split_records(self._buf, self.max_length, 0, self._offset)
        del self._buf[:used]
        self._offset += used
        return recs

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete record."""
        return len(self._buf)
