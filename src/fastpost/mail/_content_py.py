"""Message text <-> content records: the pure-Python reference.

Postfix counterpart: the content loop of src/smtpd/smtpd.c and src/postdrop (text to
REC_TYPE_NORM/REC_TYPE_CONT records), src/global/mail_copy.c (records back to text).

This is the specification of ext/fastpost/mail/_content_c.pyx and the oracle of the
differential tests; production code imports fastpost.mail.content, never this module.

encode_text: a line is the bytes before a LF, without one CR right before the LF. A
line of at most ``line_limit`` bytes becomes one N record; a longer one becomes L
records of exactly ``line_limit`` bytes and a final N with the rest (never an empty
N after an exact multiple). The result does not depend on how the text is cut into
chunks: a pending partial line is cut into L pieces only once it is certain to be
longer than the limit (at least line_limit + 2 bytes pending, so that a CR waiting for
its LF cannot change the split). With ``final`` true the unterminated rest of the text
is one more line (its CR, if any, kept).

decode_text: content records back to text; N adds ``eol``, L adds nothing. Decoding
stops before the first record that is not N or L (the caller deals with pointer,
padding and section records) or before an incomplete record.

Diagnostics: CorruptRecord for a malformed record or one longer than ``max_length``;
ValueError for a line_limit below 1.
"""

from fastpost.mail.rectype import CorruptRecord

_N = 0x4E  # REC_TYPE_NORM
_L = 0x4C  # REC_TYPE_CONT


def _put(out: bytearray, rtype: int, data) -> None:
    out.append(rtype)
    n = len(data)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    out += data


def encode_text(data, line_limit: int, final: bool):
    """Encode the complete lines of ``data`` as N/L records.

    Return ``(records, consumed)``: the encoded records (bytes) and how many bytes of
    ``data`` they cover; the caller keeps ``data[consumed:]`` and passes it again in
    front of the next chunk. With ``final`` true everything is consumed.
    """
    if line_limit < 1:
        raise ValueError("line_limit must be >= 1")
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    view = memoryview(data)
    end = len(view)
    out = bytearray()
    pos = 0
    while pos < end:
        nl = data.find(b"\n", pos)
        if nl < 0:
            # Partial line: emit the L pieces that are certain, keep the rest.
            while end - pos >= line_limit + 2:
                _put(out, _L, view[pos : pos + line_limit])
                pos += line_limit
            if final and pos < end:
                rest = view[pos:end]
                while len(rest) > line_limit:
                    _put(out, _L, rest[:line_limit])
                    rest = rest[line_limit:]
                _put(out, _N, rest)
                pos = end
            break
        stop = nl - 1 if nl > pos and view[nl - 1] == 0x0D else nl
        while stop - pos > line_limit:
            _put(out, _L, view[pos : pos + line_limit])
            pos += line_limit
        _put(out, _N, view[pos:stop])
        pos = nl + 1
    return bytes(out), pos


def decode_text(buf, start: int, max_length: int, eol: bytes = b"\n"):
    """Decode N/L records from ``start``; return ``(text, end, stop_type)``.

    ``end`` is the offset after the last record decoded; ``stop_type`` is the type of
    the record found at ``end`` (not decoded), or 0 when ``end`` is the end of the
    buffer or an incomplete record starts there.
    """
    view = memoryview(buf).cast("B")
    size = len(view)
    if start < 0 or start > size:
        raise ValueError("start out of range")
    out = bytearray()
    pos = start
    while pos < size:
        rtype = view[pos]
        if rtype != _N and rtype != _L:
            if rtype == 0:
                raise CorruptRecord(f"illegal record type 0 at offset {pos}", pos)
            return bytes(out), pos, rtype
        p = pos + 1
        length = 0
        shift = 0
        for _ in range(5):
            if p >= size:
                return bytes(out), pos, 0
            byte = view[p]
            p += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise CorruptRecord(f"illegal length varint at offset {pos}, record type {rtype}", pos)
        if length > max_length:
            raise CorruptRecord(f"illegal length {length} at offset {pos}, record type {rtype}", pos)
        if p + length > size:
            return bytes(out), pos, 0
        out += view[p : p + length]
        if rtype == _N:
            out += eol
        pos = p + length
    return bytes(out), pos, 0
