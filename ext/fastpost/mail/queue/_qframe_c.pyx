# cython: language_level=3, boundscheck=False, wraparound=False
"""A small message's segment frame in one buffer: the compiled kernel.

Reference and specification: src/fastpost/mail/queue/_qframe_py.py (same name,
arguments, results and errors). The frame header is written in place, the chunks copied
into one allocation without a Python call per chunk, and the payload's CRC-32 (zlib's)
computed over the copy in one call of crc32_fold.h's fp_crc32, which folds 64 bytes at
a time with carry-less multiplies (~8k → ~0.6k instructions for a 1 KiB message;
docs/accept.md, "Session 12: cleanup's END pass"). size_record prints the C record's six fields (docs/accept.md, "Session 11: cleanup's
loop glue": 5.9k → 4.4k instructions with snprintf; digits written here since "Session
12: cleanup's END pass"). short_id_at prints a short queue ID (Committer.new_queue_id,
once per message: "Session 12: cleanup's OPEN and frame decoding"; its hex digits
written here since "Session 12: cleanup's END pass").
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memcpy, memset

from fastpost.mail.queue import _qframe_py


cdef extern from "zlib.h":
    unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len) nogil

cdef extern from "crc32_fold.h":
    # zlib's crc32 of one buffer, folded with carry-less multiplies when the CPU has them
    unsigned long fp_crc32(unsigned long crc, const unsigned char *buf, size_t len) nogil


cdef inline void _le(char *p, unsigned long long v, int n) noexcept:
    cdef int i
    for i in range(n):
        p[i] = <char>(v & 0xFF)
        v >>= 8


cdef const char *_HEX_DIGITS = b"0123456789ABCDEF"


cdef inline void _decimal(char *end, long long v) noexcept:
    """v (>= 0) in decimal, its last digit just before ``end`` (right-aligned)."""
    while True:
        end -= 1
        end[0] = <char>(0x30 + v % 10)
        v //= 10
        if v == 0:
            break


cdef inline int _hex(char *p, unsigned long long v, int width) noexcept:
    """v in upper-case hex, at least ``width`` digits (zeros in front), at p; returns
    the number of digits (at most 16)."""
    cdef char tmp[16]
    cdef int n = 0, i
    while True:
        tmp[n] = _HEX_DIGITS[v & 0xF]
        n += 1
        v >>= 4
        if v == 0:
            break
    while n < width:
        tmp[n] = 0x30
        n += 1
    for i in range(n):
        p[i] = tmp[n - 1 - i]
    return n


def size_record(long long content_length, long long data_offset, long long rcpt_count,
                long long qmgr_flags, long long smtputf8):
    """The completed C record (see the reference): the fields printed here; a
    value outside 0..10**15-1 (wider than its field) takes the reference's road."""
    cdef char buf[2 + 95 + 1]
    cdef long long top = 1000000000000000
    if not (0 <= content_length < top and 0 <= data_offset < top and 0 <= rcpt_count < top
            and 0 <= qmgr_flags < top and 0 <= smtputf8 < top):
        return _qframe_py.size_record(content_length, data_offset, rcpt_count, qmgr_flags,
                                      smtputf8)
    buf[0] = 0x43  # REC_TYPE_SIZE ("C")
    buf[1] = 95  # the payload's length: one varint byte
    # "%15lld %15lld %15lld %15lld %15lld %15lld", printed here: each field right-aligned
    memset(buf + 2, 0x20, 95)
    _decimal(buf + 2 + 15, content_length)
    _decimal(buf + 2 + 31, data_offset)
    _decimal(buf + 2 + 47, rcpt_count)
    _decimal(buf + 2 + 63, qmgr_flags)
    _decimal(buf + 2 + 79, content_length)
    _decimal(buf + 2 + 95, smtputf8)
    return PyBytes_FromStringAndSize(buf, 97)


def short_id_at(double now, number):
    """The short queue ID of a time and a queue number (see the reference); a number
    outside 0..2**63-1 or a time outside 0..2**62 takes the reference's road."""
    cdef char buf[5 + 16 + 1]
    cdef long long sec, usec, n
    cdef int length
    try:
        n = number
    except OverflowError:
        n = -1
    if n < 0 or not (0.0 <= now < 4611686018427387904.0):
        return _qframe_py.short_id_at(now, number)
    sec = <long long>now  # int(now): truncation, as C's conversion (now >= 0)
    usec = <long long>((now - <double>sec) * 1000000.0)  # the same double operations
    # "%05llX%llX", printed here
    length = _hex(buf, <unsigned long long>usec, 5)
    length += _hex(buf + length, <unsigned long long>n, 1)
    return PyUnicode_DecodeASCII(buf, length, NULL)


def message_frame(long state, bytes qid, list chunks, bytes size_record):
    """The frame of a small message (see the reference)."""
    cdef Py_ssize_t qlen = PyBytes_GET_SIZE(qid)
    cdef Py_ssize_t n = len(chunks)
    cdef Py_ssize_t total, i, k
    cdef list parts
    cdef bytes c, out
    cdef char *p
    cdef unsigned long crc
    if not 0 <= state <= 255 or qlen > 255:
        raise ValueError("frame state must be 0..255 and the queue ID at most 255 bytes")
    parts = [size_record]
    total = PyBytes_GET_SIZE(size_record)
    for i in range(1, n):
        obj = chunks[i]
        c = obj if type(obj) is bytes else bytes(obj)
        parts.append(c)
        total += PyBytes_GET_SIZE(c)
    out = PyBytes_FromStringAndSize(NULL, 24 + qlen + total)
    p = PyBytes_AS_STRING(out)
    memcpy(p, b"FPQM", 4)
    p[4] = 1  # KIND_MESSAGE
    p[5] = <char>state
    p[6] = <char>qlen
    p[7] = 0
    _le(p + 8, <unsigned long long>total, 8)
    k = 24 + qlen
    for c in parts:
        memcpy(p + k, PyBytes_AS_STRING(c), PyBytes_GET_SIZE(c))
        k += PyBytes_GET_SIZE(c)
    crc = fp_crc32(0, <const unsigned char *>(p + 24 + qlen), <size_t>total)
    _le(p + 16, crc, 4)
    memcpy(p + 24, PyBytes_AS_STRING(qid), qlen)
    crc = crc32(crc32(0, NULL, 0), <const unsigned char *>p, 20)
    crc = crc32(crc, <const unsigned char *>(p + 24), <unsigned int>qlen)
    _le(p + 20, crc, 4)
    return out


def crc32_of(const unsigned char[::1] data, unsigned long crc=0):
    """zlib.crc32(data, crc) through fp_crc32 (see the reference; for the tests)."""
    if data.shape[0] == 0:
        return crc & 0xFFFFFFFF
    return fp_crc32(crc & 0xFFFFFFFF, &data[0], <size_t>data.shape[0])
