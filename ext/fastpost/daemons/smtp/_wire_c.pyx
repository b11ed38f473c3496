# cython: language_level=3, boundscheck=False, wraparound=False
"""Message text -> SMTP DATA bytes (dot-stuffing and long-line folding): compiled.

Reference and specification: src/fastpost/daemons/smtp/_wire_py.py (same name,
arguments, results and exceptions). One pass with memchr over the CR LF line ends:
each line is copied with memcpy into one output block sized for the worst case,
dots and folds inserted on the way.

Diagnostics: as the reference - ValueError; MemoryError.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.string cimport memcpy, memchr

__all__ = ["wire_text"]


cdef inline const unsigned char *_find_crlf(const unsigned char *p, const unsigned char *end):
    """The CR of the next CR LF at or after p, or NULL."""
    cdef const unsigned char *q
    while p < end:
        q = <const unsigned char *>memchr(p, 13, end - p)
        if q == NULL or q + 1 >= end:
            return NULL
        if q[1] == 10:
            return q
        p = q + 1
    return NULL


def wire_text(text, int fold_limit=998, stuff=True):
    """Return ``(out, folded)``; see the reference module."""
    if fold_limit < 0 or fold_limit == 1:
        raise ValueError("fold_limit must be 0 or at least 2")
    cdef bytes data = bytes(text)
    cdef Py_ssize_t n = len(data)
    cdef const unsigned char *src = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef const unsigned char *end = src + n
    cdef const unsigned char *p = src
    cdef const unsigned char *eol
    cdef Py_ssize_t length, pos, take, cap, lines
    cdef bint dostuff = bool(stuff)
    cdef bint folded = False
    cdef unsigned char *out
    cdef Py_ssize_t o = 0
    # Worst case: every line a lone "." (doubled), or folds every fold_limit - 1 bytes
    # (3 bytes each); n + n + 3 * n / (fold_limit - 1) + slack is enough for both.
    cap = 2 * n + 16
    if fold_limit:
        cap += 3 * (n // (fold_limit - 1) + 1)
    cdef bytes result = PyBytes_FromStringAndSize(NULL, cap)
    out = <unsigned char *>PyBytes_AS_STRING(result)
    while True:
        eol = _find_crlf(p, end)
        length = (eol - p) if eol != NULL else (end - p)
        if dostuff and length > 0 and p[0] == 46:
            out[o] = 46
            o += 1
        if fold_limit and length > fold_limit:
            folded = True
            memcpy(out + o, p, fold_limit)
            o += fold_limit
            pos = fold_limit
            while pos < length:
                take = length - pos
                if take > fold_limit - 1:
                    take = fold_limit - 1
                out[o] = 13
                out[o + 1] = 10
                out[o + 2] = 32
                o += 3
                memcpy(out + o, p + pos, take)
                o += take
                pos += take
        else:
            memcpy(out + o, p, length)
            o += length
        if eol == NULL:
            break
        out[o] = 13
        out[o + 1] = 10
        o += 2
        p = eol + 2
    return result[:o], folded
