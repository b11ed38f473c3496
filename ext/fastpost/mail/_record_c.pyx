# cython: language_level=3
"""Queue-file record codec: the compiled kernel.

Reference and specification: src/fastpost/mail/_record_py.py (same names, same
arguments, same exceptions). Encodes into one growing buffer per batch; decodes with
explicit bounds (no read past the input, no length over max_length).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.string cimport memcpy

from fastpost.mail.rectype import CorruptRecord


cdef inline Py_ssize_t _varint_size(Py_ssize_t n) noexcept:
    cdef Py_ssize_t size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


cdef inline Py_ssize_t _put_record(char *out, int rtype, const unsigned char *data,
                                   Py_ssize_t n) noexcept:
    """Write one record at out; return bytes written (caller sized the buffer)."""
    cdef Py_ssize_t pos = 1
    cdef Py_ssize_t rest = n
    out[0] = <char>rtype
    while True:
        if rest >= 0x80:
            out[pos] = <char>((rest & 0x7F) | 0x80)
            rest >>= 7
            pos += 1
        else:
            out[pos] = <char>rest
            pos += 1
            break
    if n:
        memcpy(out + pos, data, n)
    return pos + n


def encode_record(int rtype, const unsigned char[:] data not None):
    """Return one record: type byte, varint length, payload."""
    if not 0 < rtype < 256:
        raise ValueError(f"bad record type {rtype}")
    cdef Py_ssize_t n = data.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(n) + n)
    _put_record(PyBytes_AS_STRING(out), rtype, &data[0] if n else NULL, n)
    return out


def encode_records(records):
    """Return the concatenation of many (type, payload) records, built in one buffer."""
    cdef list items = list(records)
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t n
    cdef int rtype
    cdef const unsigned char[:] data
    for rtype_obj, payload in items:
        rtype = rtype_obj
        if not 0 < rtype < 256:
            raise ValueError(f"bad record type {rtype}")
        n = len(payload)
        total += 1 + _varint_size(n) + n
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *p = PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = 0
    for rtype_obj, payload in items:
        data = payload
        n = data.shape[0]
        pos += _put_record(p + pos, rtype_obj, &data[0] if n else NULL, n)
    return out


cdef tuple _split(const unsigned char[:] view, Py_ssize_t max_length, Py_ssize_t start,
                  Py_ssize_t base):
    cdef Py_ssize_t end = view.shape[0]
    cdef Py_ssize_t pos = start
    cdef Py_ssize_t rec_start, length, i
    cdef int rtype, shift
    cdef unsigned char byte
    cdef bint complete
    cdef list out = []
    while pos < end:
        rec_start = pos
        rtype = view[pos]
        if rtype == 0:
            raise CorruptRecord(f"illegal record type 0 at offset {base + rec_start}",
                                base + rec_start)
        pos += 1
        length = 0
        shift = 0
        complete = False
        for i in range(5):
            if pos >= end:
                break
            byte = view[pos]
            pos += 1
            length |= (<Py_ssize_t>(byte & 0x7F)) << shift
            shift += 7
            if not byte & 0x80:
                complete = True
                break
        else:
            raise CorruptRecord(
                f"illegal length varint at offset {base + rec_start}, record type {rtype}",
                base + rec_start)
        if not complete:
            return out, rec_start
        if length > max_length:
            raise CorruptRecord(
                f"illegal length {length} at offset {base + rec_start}, record type {rtype}",
                base + rec_start)
        if pos + length > end:
            return out, rec_start
        out.append((rtype, PyBytes_FromStringAndSize(<const char *>&view[pos] if length else NULL,
                                                     length)))
        pos += length
    return out, pos


def split_records(buf, Py_ssize_t max_length, Py_ssize_t start=0, Py_ssize_t base=0):
    """Decode the complete records in buf from start; return (records, consumed)."""
    cdef const unsigned char[:] view = buf
    if start < 0 or start > view.shape[0]:
        raise ValueError("start out of range")
    return _split(view, max_length, start, base)


cdef class RecordDecoder:
    """Incremental decoder: feed bytes, take complete records (bounded by max_length)."""

    cdef readonly Py_ssize_t max_length  # largest payload accepted
    cdef bytearray _buf                   # bytes not yet consumed
    cdef Py_ssize_t _offset               # stream offset of _buf[0], for error messages

    def __init__(self, Py_ssize_t max_length):
        if max_length < 0:
            raise ValueError("max_length must be >= 0")
        self.max_length = max_length
        self._buf = bytearray()
        self._offset = 0

    def feed(self, data):
        """Append received bytes."""
        self._buf += data

    def records(self):
        """Return every complete record buffered so far, in order."""
        if not self._buf:
            return []
        recs, used = _split(self._buf, self.max_length, 0, self._offset)
        del self._buf[:used]
        self._offset += used
        return recs

    @property
    def buffered(self):
        """Bytes held that do not yet form a complete record."""
        return len(self._buf)
