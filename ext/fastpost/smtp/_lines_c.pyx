# cython: language_level=3
"""Command-line kernel: the compiled version.

Reference and specification: src/fastpost/smtp/_lines_py.py (same names, arguments,
results and exceptions). The buffer is one malloc'd block that grows on demand
(doubling) and is released when it empties, so an idle connection holds no buffer;
an overlong line is never buffered beyond limit + 1 bytes.

Diagnostics: as the reference - ValueError for a negative limit or size;
MemoryError when the buffer cannot grow.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcpy, memmove

BARE_LF = 1
OVERLONG = 2

cdef int _BARE_LF = 1
cdef int _OVERLONG = 2

# Keep at most this much capacity on an empty buffer; more is released.
cdef Py_ssize_t _KEEP = 4096


cdef inline bint _is_ws(unsigned char c) noexcept:
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


cdef tuple _split(const unsigned char *p, Py_ssize_t n):
    """Return (VERB upper-cased, arguments) of the n bytes at p."""
    cdef Py_ssize_t i = 0, j, k
    cdef bytes verb
    cdef char *v
    cdef unsigned char c
    while i < n and _is_ws(p[i]):
        i += 1
    j = i
    while j < n and not _is_ws(p[j]):
        j += 1
    verb = PyBytes_FromStringAndSize(NULL, j - i)
    v = PyBytes_AS_STRING(verb)
    for k in range(j - i):
        c = p[i + k]
        if 97 <= c <= 122:
            c -= 32
        v[k] = <char>c
    while j < n and _is_ws(p[j]):
        j += 1
    return verb, PyBytes_FromStringAndSize(<const char *>p + j, n - j)


def split_command(const unsigned char[:] line not None):
    """Return (VERB upper-cased, arguments) of a command line."""
    cdef Py_ssize_t n = line.shape[0]
    if n == 0:
        return b"", b""
    return _split(&line[0], n)


cdef class LineReader:
    """Bounded, CRLF-aware receive buffer (see fastpost.smtp._lines_py).

    The fields and the C-level methods other kernels call (ServerConnection:
    feed_ptr, peek_line, consume, without Python objects per line) are declared in
    _lines_c.pxd.
    """

    def __cinit__(self):
        self._buf = NULL
        self._cap = 0
        self._start = 0
        self._end = 0
        self._skipping = False

    def __init__(self, Py_ssize_t limit):
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit

    def __dealloc__(self):
        if self._buf != NULL:
            free(self._buf)

    @property
    def buffered(self):
        """Return the number of bytes held and not yet read."""
        return self._end - self._start

    cdef int _reserve(self, Py_ssize_t more) except -1:
        """Make room for more bytes after _end (compacting or growing)."""
        cdef Py_ssize_t used = self._end - self._start
        cdef Py_ssize_t need = used + more
        cdef Py_ssize_t cap
        cdef unsigned char *nb
        if self._end + more <= self._cap:
            return 0
        if need <= self._cap:
            memmove(self._buf, self._buf + self._start, used)
            self._start = 0
            self._end = used
            return 0
        cap = self._cap if self._cap else 256
        while cap < need:
            cap *= 2
        if self._start:
            memmove(self._buf, self._buf + self._start, used)
            self._start = 0
            self._end = used
        nb = <unsigned char *>realloc(self._buf, cap)
        if nb == NULL:
            raise MemoryError()
        self._buf = nb
        self._cap = cap
        return 0

    cdef void _emptied(self) noexcept:
        """Reset offsets when everything was read; release a large block."""
        if self._start == self._end:
            self._start = 0
            self._end = 0
            if self._cap > _KEEP:
                free(self._buf)
                self._buf = NULL
                self._cap = 0

    def feed(self, const unsigned char[:] data not None):
        """Append received bytes (copied)."""
        cdef Py_ssize_t n = data.shape[0]
        if n:
            self.feed_ptr(&data[0], n)

    cdef int feed_ptr(self, const unsigned char *p, Py_ssize_t n) except -1:
        """feed() of the n bytes at p."""
        cdef const unsigned char *lf
        if n == 0:
            return 0
        if self._skipping:
            lf = <const unsigned char *>memchr(p, 10, n)
            if lf == NULL:
                return 0
            self._skipping = False
            n -= (lf + 1 - p)
            p = lf + 1
            if n == 0:
                return 0
        self._reserve(n)
        memcpy(self._buf + self._end, p, n)
        self._end += n
        return 0

    cdef Py_ssize_t peek_line(self, const unsigned char **line, Py_ssize_t *length,
                              int *flags) noexcept:
        """Find the next line without consuming it: 0 when none is complete, else the
        bytes consume() must take for it; *line and *length are its content (valid
        until the next call that changes the buffer), *flags BARE_LF / OVERLONG.

        An overlong line without its LF yet consumes everything buffered (its rest is
        discarded as it arrives: consume() sets the skipping state)."""
        cdef Py_ssize_t pos = self._start
        cdef Py_ssize_t avail = self._end - pos
        cdef const unsigned char *lf
        cdef Py_ssize_t end, at
        if avail == 0:
            return 0
        lf = <const unsigned char *>memchr(self._buf + pos, 10, avail)
        if lf == NULL:
            if avail >= self.limit + 2:
                line[0] = self._buf + pos
                length[0] = self.limit
                flags[0] = _OVERLONG
                return avail
            return 0
        flags[0] = 0
        at = lf - self._buf
        end = at
        if end > pos and self._buf[end - 1] == 13:
            end -= 1
        else:
            flags[0] = _BARE_LF
        if end - pos > self.limit:
            end = pos + self.limit
            flags[0] = _OVERLONG
        line[0] = self._buf + pos
        length[0] = end - pos
        return at + 1 - pos

    cdef void consume(self, Py_ssize_t used) noexcept:
        """Take the line peek_line() found (``used``: its answer)."""
        if self._start + used == self._end and self._buf[self._end - 1] != 10:
            self._skipping = True  # an overlong line whose LF has not come
        self._start += used
        self._emptied()

    cdef tuple _line(self):
        """Return (line, flags) or None (the shared body of read_line/read_command)."""
        cdef const unsigned char *p
        cdef Py_ssize_t n, used
        cdef int flags
        used = self.peek_line(&p, &n, &flags)
        if used == 0:
            return None
        line = PyBytes_FromStringAndSize(<const char *>p, n)
        self.consume(used)
        return (line, flags)

    def read_line(self):
        """Return (line, flags) for the next complete line, or None."""
        return self._line()

    def read_command(self):
        """Return (VERB, arguments, flags) for the next complete line, or None."""
        cdef tuple got = self._line()
        cdef bytes line
        if got is None:
            return None
        line = <bytes>got[0]
        if len(line) == 0:
            return (b"", b"", got[1])
        verb, args = _split(<const unsigned char *>PyBytes_AS_STRING(line), len(line))
        return (verb, args, got[1])

    def take(self, Py_ssize_t n):
        """Return up to n buffered bytes, raw."""
        if n < 0:
            raise ValueError("n must be >= 0")
        cdef Py_ssize_t avail = self._end - self._start
        if n > avail:
            n = avail
        cdef bytes out = PyBytes_FromStringAndSize(<const char *>self._buf + self._start, n) if n else b""
        self._start += n
        self._emptied()
        return out

    def take_all(self):
        """Return every buffered byte, raw, and empty the buffer."""
        return self.take(self._end - self._start)

    def clear(self):
        """Drop every buffered byte (and any overlong-line skipping); return the count."""
        cdef Py_ssize_t n = self._end - self._start
        self._start = self._end
        self._skipping = False
        self._emptied()
        return n

    def peek(self, Py_ssize_t n):
        """Return up to n buffered bytes without consuming them."""
        if n < 0:
            raise ValueError("n must be >= 0")
        cdef Py_ssize_t avail = self._end - self._start
        if n > avail:
            n = avail
        return PyBytes_FromStringAndSize(<const char *>self._buf + self._start, n) if n else b""
