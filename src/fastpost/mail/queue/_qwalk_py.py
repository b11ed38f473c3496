"""Walking a queue file's records in logical order: the reference of the kernel.

Postfix counterpart: src/global/rec_get.c with the pointer handling of qmgr_message.c
(a queue file is read record by record; ``p`` records written by an in-place edit are
followed).
Compiled twin: ext/fastpost/mail/queue/_qwalk_c.pyx; used through
fastpost.mail.queue.message (``record_at``, ``read_records``), which turns the errors
below into CorruptQueueFile with the same text.

    record_at(data, pos, max_record) -> (type, payload start, payload end)
        the header of the record at ``pos``;
    walk_records(data, follow_pointers, skip_content, max_record) -> list
        (offset, type, payload bytes) of every record up to E, in logical order:
        pointer records followed unless ``follow_pointers`` is false (then listed like
        the others); with ``skip_content`` the content records are left out, and when
        the C record's data offset and content length point at an X record, reading
        jumps there.

``data`` is any buffer (bytes, bytearray, memoryview). Parameters: ``max_record``, the
largest payload length accepted. Failures: fastpost.mail.rectype.CorruptRecord for a
type byte of 0, a bad length varint, a length over ``max_record`` or past the end, a
pointer loop or a pointer out of the file, a pointer that is not a number, no E record.
"""

from fastpost.mail import rectype as R
from fastpost.mail.rectype import CorruptRecord

_CONTENT_SKIPPED = (R.REC_TYPE_NORM, R.REC_TYPE_CONT, R.REC_TYPE_DTXT)


def record_at(data, pos, max_record):
    """Decode the record header at ``pos`` (see the module docstring)."""
    size = len(data)
    if pos >= size:
        raise CorruptRecord(f"unexpected end of file at offset {pos}", pos)
    rtype = data[pos]
    if rtype == 0:
        raise CorruptRecord(f"illegal record type 0 at offset {pos}", pos)
    p = pos + 1
    length = 0
    shift = 0
    while True:
        if p >= size:
            raise CorruptRecord(f"truncated record at offset {pos}", pos)
        byte = data[p]
        p += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 28:
            raise CorruptRecord(f"illegal length varint at offset {pos}, record type {rtype}", pos)
    if length > max_record or p + length > size:
        raise CorruptRecord(f"illegal length {length} at offset {pos}, record type {rtype}", pos)
    return rtype, p, p + length


def pointer_target(payload):
    """The offset a ``p`` record's payload names (0: none)."""
    text = payload.strip() or b"0"
    try:
        return int(text)
    except ValueError:
        raise CorruptRecord(f"bad number {text[:40]!r}") from None


def walk_records(data, follow_pointers, skip_content, max_record):
    """Every record up to E in logical order (see the module docstring)."""
    size = len(data)
    pos = 0
    jumps = 0
    xtra_hint = 0
    in_content = False
    out = []
    while True:
        if pos >= size:
            raise CorruptRecord(f"no end record (file ends at offset {size})", size)
        rtype, start, end = record_at(data, pos, max_record)
        here, pos = pos, end
        if rtype == R.REC_TYPE_PTR and follow_pointers:
            target = pointer_target(bytes(data[start:end]))
            if target == 0:
                continue  # a null pointer: go on with the next record
            jumps += 1
            if jumps > 100_000 or not 0 < target < size:
                raise CorruptRecord(f"bad pointer record at offset {here}", here)
            pos = target
            continue
        if here == 0 and rtype == R.REC_TYPE_SIZE:
            fields = bytes(data[start:end]).split()
            if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
                xtra_hint = int(fields[0]) + int(fields[1])
        if rtype == R.REC_TYPE_MESG:
            in_content = True
            out.append((here, rtype, bytes(data[start:end])))
            if skip_content and xtra_hint and 0 < xtra_hint < size \
                    and data[xtra_hint] == R.REC_TYPE_XTRA and xtra_hint >= pos:
                pos = xtra_hint
            continue
        if rtype == R.REC_TYPE_XTRA:
            in_content = False
        elif in_content and skip_content and rtype in _CONTENT_SKIPPED:
            continue
        out.append((here, rtype, bytes(data[start:end])))
        if rtype == R.REC_TYPE_END:
            return out
