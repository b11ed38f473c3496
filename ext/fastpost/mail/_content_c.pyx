# cython: language_level=3, boundscheck=False, wraparound=False
"""Message text <-> content records: the compiled kernel.

Reference and specification: src/fastpost/mail/_content_py.py (same names, arguments,
exceptions and results). One pass over the input with memchr; encode_text writes into
the bytes object it returns, sized for the worst case and then cut to its length.
"""

from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                            PyBytes_GET_SIZE)
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdlib cimport malloc, free
from libc.string cimport memchr, memcpy

from fastpost.mail.rectype import CorruptRecord

cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject **, Py_ssize_t) except -1

cdef enum:
    _N = 0x4E  # REC_TYPE_NORM
    _L = 0x4C  # REC_TYPE_CONT
    NOGIL_MIN = 65536  # encode_text lets go of the GIL for inputs of this size or more


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


def encode_text(data, Py_ssize_t line_limit, bint final):
    """Encode the complete lines of data as N/L records; return (records, consumed)."""
    if PyBytes_CheckExact(data):
        # (the builder's case: the bytes read directly, no memoryview made)
        if line_limit < 1:
            raise ValueError("line_limit must be >= 1")
        return _encode(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                       line_limit, final)
    return _encode_view(data, line_limit, final)


def _encode_view(const unsigned char[:] data not None, Py_ssize_t line_limit, bint final):
    # Any other buffer (bytearray, memoryview ...), as encode_text always took it; a
    # strided one copied into bytes first (as the reference does).
    if line_limit < 1:
        raise ValueError("line_limit must be >= 1")
    if data.shape[0] == 0:
        return b"", 0
    if data.shape[0] > 1 and data.strides[0] != 1:
        return encode_text(bytes(data), line_limit, final)
    return _encode(&data[0], data.shape[0], line_limit, final)


cdef Py_ssize_t _encode_lines(const unsigned char *src, Py_ssize_t end, Py_ssize_t line_limit,
                              bint final, unsigned char *out, Py_ssize_t *consumed) noexcept nogil:
    """Write the records of src's complete lines at out; return the bytes written."""
    cdef Py_ssize_t used = 0
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t nl, stop
    cdef const unsigned char *hit
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
    consumed[0] = pos
    return used


cdef tuple _encode(const unsigned char *src, Py_ssize_t end, Py_ssize_t line_limit, bint final):
    if end == 0:
        return b"", 0
    # Written straight into the bytes object returned, sized for the worst case (an
    # empty line: one byte in, two out), then cut to its length. The GIL is let go
    # only for a large input (for a message's few kilobytes, releasing and taking it
    # back costs more than the loop, and wakes the process's other threads).
    cdef Py_ssize_t cap = 2 * end + 6 * (end // line_limit + 2) + 16
    cdef object result = PyBytes_FromStringAndSize(NULL, cap)
    cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(result)
    cdef Py_ssize_t used, pos
    cdef PyObject *raw
    if end >= NOGIL_MIN:
        with nogil:
            used = _encode_lines(src, end, line_limit, final, out, &pos)
    else:
        used = _encode_lines(src, end, line_limit, final, out, &pos)
    raw = <PyObject *>result
    Py_INCREF(result)
    result = None
    _PyBytes_Resize(&raw, used)  # (on failure it frees the object and sets NULL)
    result = <object>raw
    Py_DECREF(result)  # (raw's reference: result holds its own)
    return result, pos


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
