# cython: language_level=3, boundscheck=False, wraparound=False
"""Message text <-> content records: the compiled kernel.

Reference and specification: src/fastpost/mail/_content_py.py (same names, arguments,
exceptions and results). One pass over the input with memchr; the output is built in
one buffer sized for the worst case, then copied once into the result.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport malloc, free
from libc.string cimport memchr, memcpy

from fastpost.mail.rectype import CorruptRecord

cdef enum:
    _N = 0x4E  # REC_TYPE_NORM
    _L = 0x4C  # REC_TYPE_CONT


cdef inline Py_ssize_t _put(unsigned char *out, int rtype, const unsigned char *data,
                            Py_ssize_t n) noexcept nogil:
    """Write one record at out; return the bytes written."""
    cdef Py_ssize_t pos = 1
    cdef Py_ssize_t rest = n
    out[0] = <unsigned char>rtype
    while rest >= 0x80:
        out[pos] = <unsigned char>((rest & 0x7F) | 0x80)
        rest >>= 7
        pos += 1
    out[pos] = <unsigned char>rest
    pos += 1
    if n:
        memcpy(out + pos, data, n)
    return pos + n


def encode_text(const unsigned char[:] data not None, Py_ssize_t line_limit, bint final):
    """Encode the complete lines of data as N/L records; return (records, consumed)."""
    if line_limit < 1:
        raise ValueError("line_limit must be >= 1")
    cdef Py_ssize_t end = data.shape[0]
    if end == 0:
        return b"", 0
    cdef const unsigned char *src = &data[0]
    cdef Py_ssize_t cap = 2 * end + 6 * (end // line_limit + 2) + 16
    cdef unsigned char *out = <unsigned char *>malloc(cap)
    if out == NULL:
        raise MemoryError()
    cdef Py_ssize_t used = 0
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t nl, stop
    cdef const unsigned char *hit
    try:
        with nogil:
            while pos < end:
                hit = <const unsigned char *>memchr(src + pos, 0x0A, end - pos)
                if hit == NULL:
                    while end - pos >= line_limit + 2:
                        used += _put(out + used, _L, src + pos, line_limit)
                        pos += line_limit
                    if final and pos < end:
                        while end - pos > line_limit:
                            used += _put(out + used, _L, src + pos, line_limit)
                            pos += line_limit
                        used += _put(out + used, _N, src + pos, end - pos)
                        pos = end
                    break
                nl = hit - src
                stop = nl
                if nl > pos and src[nl - 1] == 0x0D:
                    stop = nl - 1
                while stop - pos > line_limit:
                    used += _put(out + used, _L, src + pos, line_limit)
                    pos += line_limit
                used += _put(out + used, _N, src + pos, stop - pos)
                pos = nl + 1
        return PyBytes_FromStringAndSize(<char *>out, used), pos
    finally:
        free(out)


def decode_text(const unsigned char[:] buf not None, Py_ssize_t start, Py_ssize_t max_length,
                const unsigned char[:] eol=b"\n"):
    """Decode N/L records from start; return (text, end, stop_type)."""
    cdef Py_ssize_t size = buf.shape[0]
    if start < 0 or start > size:
        raise ValueError("start out of range")
    cdef Py_ssize_t eol_len = eol.shape[0]
    if size == start:
        return b"", start, 0
    cdef const unsigned char *src = &buf[0]
    cdef const unsigned char *eol_p = &eol[0] if eol_len else NULL
    cdef Py_ssize_t cap = (size - start) + ((size - start) // 2 + 1) * eol_len + 16
    cdef unsigned char *out = <unsigned char *>malloc(cap)
    if out == NULL:
        raise MemoryError()
    cdef Py_ssize_t used = 0
    cdef Py_ssize_t pos = start
    cdef Py_ssize_t p, length, i
    cdef int rtype, shift, stop_type = 0
    cdef unsigned char byte
    cdef bint complete
    try:
        while pos < size:
            rtype = src[pos]
            if rtype != _N and rtype != _L:
                if rtype == 0:
                    raise CorruptRecord(f"illegal record type 0 at offset {pos}", pos)
                stop_type = rtype
                break
            p = pos + 1
            length = 0
            shift = 0
            complete = False
            for i in range(5):
                if p >= size:
                    break
                byte = src[p]
                p += 1
                length |= (<Py_ssize_t>(byte & 0x7F)) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            else:
                raise CorruptRecord(
                    f"illegal length varint at offset {pos}, record type {rtype}", pos)
            if not complete:
                break
            if length > max_length:
                raise CorruptRecord(
                    f"illegal length {length} at offset {pos}, record type {rtype}", pos)
            if p + length > size:
                break
            if length:
                memcpy(out + used, src + p, length)
                used += length
            if rtype == _N and eol_len:
                memcpy(out + used, eol_p, eol_len)
                used += eol_len
            pos = p + length
        return PyBytes_FromStringAndSize(<char *>out, used), pos, stop_type
    finally:
        free(out)
