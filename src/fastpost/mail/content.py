"""Message text <-> content records (selector).

Postfix counterpart: the content loops of src/smtpd/smtpd.c, src/postdrop/postdrop.c
(text to REC_TYPE_NORM/REC_TYPE_CONT records) and src/global/mail_copy.c (back).

encode_text(data, line_limit, final) -> (records, consumed)
    The complete lines of ``data`` as N records (L pieces plus a final N for lines
    longer than ``line_limit``; CR before LF dropped). The caller keeps
    ``data[consumed:]`` for the next chunk; ``final`` flushes the last partial line.
decode_text(buf, start, max_length, eol=b"\\n") -> (text, end, stop_type)
    N/L records from ``start`` back to text; stops before any other record type.

Parameters: the caller passes line_length_limit as ``line_limit`` and the record bound.
Diagnostics: CorruptRecord for a malformed or oversized record.
Fast path: ext/fastpost/mail/_content_c.pyx; reference: _content_py.py
"""

from fastpost._accel import select

_impl = select("fastpost.mail._content_c", "fastpost.mail._content_py")

encode_text = _impl.encode_text
decode_text = _impl.decode_text

__all__ = ["decode_text", "encode_text"]
