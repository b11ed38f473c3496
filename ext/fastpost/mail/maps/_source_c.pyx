# cython: language_level=3
"""Table-source parsing for builds: the compiled kernel.

Reference and specification: src/fastpost/mail/maps/_source_py.py (same function,
same results, same warning texts). One pass over the bytes: physical lines are found
with memchr, a logical line without continuations is sliced once, ASCII keys are
folded in C. No I/O.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memchr


cdef inline bint _blank(unsigned char c) noexcept:
    return c == 32 or c == 9 or c == 13 or c == 12 or c == 11


cdef bytes _fold_key(const unsigned char *src, Py_ssize_t n, bint fold, bint nul):
    """The stored form of the key src[0:n]: folded, NUL-terminated when asked."""
    cdef Py_ssize_t i
    cdef bytes out
    cdef char *dst
    cdef unsigned char c
    if fold:
        for i in range(n):
            if src[i] >= 0x80:
                out = PyBytes_FromStringAndSize(<const char *>src, n).decode(
                    "utf-8", "surrogateescape").casefold().encode("utf-8", "surrogateescape")
                return out + b"\0" if nul else out
    out = PyBytes_FromStringAndSize(NULL, n + (1 if nul else 0))
    dst = PyBytes_AS_STRING(out)
    for i in range(n):
        c = src[i]
        if fold and c >= 65 and c <= 90:
            c += 32
        dst[i] = <char>c
    if nul:
        dst[n] = 0
    return out


cdef str _text(bytes raw):
    return raw.decode("utf-8", "surrogateescape")


cdef _emit(list records, list warnings, Py_ssize_t lineno, const unsigned char *p,
           Py_ssize_t n, bint fold, bint nul):
    """Split one logical line p[0:n] into a record (or a warning)."""
    cdef Py_ssize_t i = 0, vs
    cdef bint quoted = False
    cdef unsigned char c
    cdef bytes key, value, line
    while n > 0 and _blank(p[n - 1]):
        n -= 1
    for i in range(n):
        if p[i] >= 0x80:
            line = PyBytes_FromStringAndSize(<const char *>p, n)
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                warnings.append((lineno, 'non-UTF-8 input "%s" -- ignoring this line'
                                 % line.decode("utf-8", "replace").replace("\ufffd", "?")))
                return
            break
    i = 0
    while i < n:
        c = p[i]
        if quoted and c == 0x5C and i + 1 < n:
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif not quoted and _blank(c):
            break
        i += 1
    if quoted:
        warnings.append((lineno, "unbalanced '\"' in '%s' -- ignoring this line"
                         % _text(PyBytes_FromStringAndSize(<const char *>p, n))))
        return
    vs = i
    while vs < n and _blank(p[vs]):
        vs += 1
    if vs >= n:
        warnings.append((lineno, "expected format: key whitespace value"))
        return
    if i > 0 and p[i - 1] == 0x3A:
        warnings.append((lineno, 'record is in "key: value" format; is this an alias file?'))
    key = _fold_key(p, i, fold, nul)
    value = PyBytes_FromStringAndSize(<const char *>p + vs, n - vs + (1 if nul else 0))
    if nul:
        (<char *>PyBytes_AS_STRING(value))[n - vs] = 0
    records.append((key, value))


def parse_records(bytes data, fold, nul):
    """Return (records, warnings) of a postmap source; see the reference module."""
    cdef bint f = bool(fold), z = bool(nul)
    cdef const char *base = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, ls, le, j, number = 0, start = 0, cur_s = 0, cur_e = 0
    cdef const char *nl
    cdef list records = []
    cdef list warnings = []
    cdef list pieces = None        # the current logical line, when it has continuations
    cdef bint have = False
    cdef bytes joined
    while pos <= n:
        number += 1
        nl = <const char *>memchr(base + pos, b'\n', n - pos) if pos < n else NULL
        ls = pos
        le = (nl - base) if nl != NULL else n
        pos = le + 1
        if le > ls and base[le - 1] == b'\r':
            le -= 1
        j = ls
        while j < le and _blank(<unsigned char>base[j]):
            j += 1
        if j < le and base[j] != b'#':
            if _blank(<unsigned char>base[ls]):
                if have:
                    if pieces is None:
                        pieces = [data[cur_s:cur_e]]
                    pieces.append(data[ls:le])
                else:
                    warnings.append((number, "logical line must not start with whitespace: "
                                     '"%s"' % _text(data[ls:le])))
            else:
                if have:
                    if pieces is None:
                        _emit(records, warnings, start, <const unsigned char *>base + cur_s,
                              cur_e - cur_s, f, z)
                    else:
                        joined = b"".join(pieces)
                        _emit(records, warnings, start,
                              <const unsigned char *>PyBytes_AS_STRING(joined),
                              PyBytes_GET_SIZE(joined), f, z)
                cur_s, cur_e = ls, le
                pieces = None
                have = True
                start = number
        if nl == NULL:
            break
    if have:
        if pieces is None:
            _emit(records, warnings, start, <const unsigned char *>base + cur_s,
                  cur_e - cur_s, f, z)
        else:
            joined = b"".join(pieces)
            _emit(records, warnings, start, <const unsigned char *>PyBytes_AS_STRING(joined),
                  PyBytes_GET_SIZE(joined), f, z)
    return records, warnings


def _first(pair):
    return pair[0]


def unique_sorted(list records, keep_last):
    """Sort records by key (in place, stable) and drop repeated keys.

    Returns (pairs, duplicates): the first record of each key wins (the last one with
    keep_last); duplicates lists each repeated key once per extra occurrence.
    """
    cdef Py_ssize_t i, n
    cdef list out = []
    cdef list dups = []
    cdef tuple prev = None, cur
    records.sort(key=_first)
    n = len(records)
    for i in range(n):
        cur = <tuple>records[i]
        if prev is not None and <bytes>cur[0] == <bytes>prev[0]:
            dups.append(cur[0])
            if keep_last:
                out[len(out) - 1] = cur
            continue
        out.append(cur)
        prev = cur
    return out, dups
