# cython: language_level=3
"""Indexed-table key folding and lookup: the compiled kernel.

Reference and specification: src/fastpost/mail/maps/_indexed_py.py (same names,
arguments, results). The ASCII fast path folds and NUL-terminates the key in one pass
into a new bytes object; other keys use Unicode full case folding. No I/O here: the
table's get(bytes) callable is passed in.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL

NUL_AUTO = 0
NUL_WITH = 1
NUL_WITHOUT = 2


cdef bytes _fold_ascii(str key, bint fold, bint nul):
    """Fold an ASCII key to lower case, append a NUL if asked, in one copy."""
    cdef Py_ssize_t n, i
    cdef const char *src = PyUnicode_AsUTF8AndSize(key, &n)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + (1 if nul else 0))
    cdef char *dst = PyBytes_AS_STRING(out)
    cdef char c
    for i in range(n):
        c = src[i]
        if fold and c >= 65 and c <= 90:
            c = c + 32
        dst[i] = c
    if nul:
        dst[n] = 0
    return out


cdef bytes _encode(str key, bint fold, bint nul):
    if PyUnicode_IS_ASCII(key):
        return _fold_ascii(key, fold, nul)
    if fold:
        key = key.casefold()
    cdef bytes data = key.encode("utf-8", "surrogateescape")
    return data + b"\0" if nul else data


def encode_key(str key, fold, nul):
    """Return the stored form of key: folded (if fold), UTF-8, NUL-terminated (if nul)."""
    return _encode(key, bool(fold), bool(nul))


def encode_value(str value, nul):
    """Return the stored form of a value."""
    return _encode(value, False, bool(nul))


cdef inline str _decode(bytes data):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const char *p = PyBytes_AS_STRING(data)
    if n and p[n - 1] == 0:
        n -= 1
    return p[:n].decode("utf-8", "surrogateescape")


def decode_value(bytes data):
    """Return the text of a stored value (a trailing NUL removed)."""
    return _decode(data)


cdef class IndexedReader:
    """Lookups in one indexed table: fold, encode, get, decode."""

    cdef public object get      # the table's get(bytes) -> bytes | None
    cdef public bint fold       # fold keys (FOLD_FIX)
    cdef public int nul         # NUL_AUTO, NUL_WITH or NUL_WITHOUT (settles after a hit)

    def __init__(self, get, fold, int nul):
        self.get = get
        self.fold = bool(fold)
        self.nul = nul

    def set_get(self, get):
        """Point the reader at a new table (after a reopen)."""
        self.get = get

    def lookup(self, str key):
        """Return the value of key as text, or None when the table has no such key."""
        cdef bytes data
        cdef object value
        if self.nul != NUL_WITHOUT:
            data = _encode(key, self.fold, True)
            value = self.get(data)
            if value is not None:
                self.nul = NUL_WITH
                return _decode(value)
            if self.nul == NUL_WITH:
                return None
            data = data[:-1]
        else:
            data = _encode(key, self.fold, False)
        value = self.get(data)
        if value is not None:
            self.nul = NUL_WITHOUT
            return _decode(value)
        return None
