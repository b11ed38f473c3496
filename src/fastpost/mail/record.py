"""Queue-file record codec (selector).

Postfix counterpart: src/global/record.c

Reads and writes typed records: one type byte, the length in 7-bit groups (high bit =
more follows), then the payload. Used by the queue store, the cleanup stream and
``fastpost cat``.

Parameters: the caller passes the record bound (Postfix uses line_length_limit for
content records and larger bounds for envelope records).
Diagnostics: CorruptRecord for a malformed or oversized record; ValueError for a bad
record type given to an encoder.
Fast path: ext/fastpost/mail/_record_c.pyx; reference: _record_py.py
"""

from fastpost._accel import select
from fastpost.mail.rectype import CorruptRecord

_impl = select("fastpost.mail._record_c", "fastpost.mail._record_py")

encode_record = _impl.encode_record
encode_records = _impl.encode_records
split_records = _impl.split_records
RecordDecoder = _impl.RecordDecoder

__all__ = ["CorruptRecord", "RecordDecoder", "encode_record", "encode_records", "split_records"]
