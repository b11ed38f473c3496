# cython: language_level=3
"""Message-content kernels: the compiled version.

Reference and specification: src/fastpost/smtp/_data_py.py (same names, arguments,
results and exceptions). Both decoders are byte state machines whose inner loop
finds line ends with memchr and copies whole runs; output is written into one
buffer per call (at most twice the input, when every LF is bare) and cut at
size_limit.

Diagnostics: as the reference - ValueError when fed after the end; MemoryError.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdlib cimport malloc, free
from libc.string cimport memchr, memcpy

cdef enum:
    BOL = 0
    DOT = 1
    DOTCR = 2
    MID = 3
    MIDCR = 4
    DONE = 5


cdef struct Out:
    unsigned char *buf     # output being built
    Py_ssize_t len         # bytes written to buf
    long long size         # total content size (also past the limit)
    long long limit        # size_limit (0: none)
    bint too_big           # size went past limit


cdef inline void _emit(Out *o, const unsigned char *p, Py_ssize_t n) noexcept:
    """Account n content bytes and copy those that fit under the limit."""
    cdef long long before = o.size
    cdef Py_ssize_t keep = n
    o.size = before + n
    if o.limit:
        if o.size > o.limit:
            o.too_big = True
            if before >= o.limit:
                return
            keep = <Py_ssize_t>(o.limit - before)
    if keep:
        memcpy(o.buf + o.len, p, keep)
        o.len += keep


cdef const unsigned char *_CR = b"\r"
cdef const unsigned char *_CRLF = b"\r\n"
cdef const unsigned char *_CRCRLF = b"\r\r\n"


cdef class DotDecoder:
    """Streaming DATA decoder (see fastpost.smtp._data_py; fields in _data_c.pxd)."""

    def __init__(self, long long size_limit=0, bint strict=True, bint prev_crlf=True):
        if size_limit < 0:
            raise ValueError("size_limit must be >= 0")
        self.size_limit = size_limit
        self.strict = strict
        self.size = 0
        self.bare_lf = 0
        self.too_big = False
        self.raw_lines = 0
        self._raw = 0
        self._prev_crlf = prev_crlf
        self._state = BOL

    @property
    def done(self):
        """True once the terminator was seen."""
        return self._state == DONE

    def feed(self, const unsigned char[:] data not None):
        """Decode data; return (output, bytes of data consumed, end of data seen)."""
        cdef Py_ssize_t n = data.shape[0]
        return self.feed_ptr(&data[0] if n else NULL, n)

    cdef tuple feed_ptr(self, const unsigned char *p, Py_ssize_t n):
        """feed() of the n bytes at p (ServerConnection's entry: no buffer object)."""
        if self._state == DONE:
            raise ValueError("DotDecoder fed after the end of data")
        cdef Out o
        cdef Py_ssize_t i = 0, lf_at
        cdef const unsigned char *lf
        cdef unsigned char c
        cdef int state = self._state
        cdef bytes result
        if n == 0:
            return b"", 0, False
        o.buf = <unsigned char *>malloc(2 * n + 4)
        if o.buf == NULL:
            raise MemoryError()
        o.len = 0
        o.size = self.size
        o.limit = self.size_limit
        o.too_big = self.too_big
        try:
            while i < n:
                if state == MID:
                    lf = <const unsigned char *>memchr(p + i, 10, n - i)
                    if lf == NULL:
                        if p[n - 1] == 13:
                            if n - 1 > i:
                                _emit(&o, p + i, n - 1 - i)
                            state = MIDCR
                        else:
                            _emit(&o, p + i, n - i)
                        i = n
                        break
                    lf_at = lf - p
                    if lf_at > i and p[lf_at - 1] == 13:
                        _emit(&o, p + i, lf_at + 1 - i)
                        self._prev_crlf = True
                    else:
                        if lf_at > i:
                            _emit(&o, p + i, lf_at - i)
                        _emit(&o, _CRLF, 2)
                        self.bare_lf += 1
                        self._prev_crlf = False
                    i = lf_at + 1
                    self.raw_lines = self._raw + i
                    state = BOL
                    continue
                c = p[i]
                if state == BOL:
                    if c == 46:
                        state = DOT
                        i += 1
                    else:
                        state = MID
                elif state == DOT:
                    if c == 10:
                        i += 1
                        self.raw_lines = self._raw + i
                        if not self.strict:
                            state = DONE
                            break
                        self.bare_lf += 1
                        self._prev_crlf = False
                        state = BOL
                    elif c == 13:
                        state = DOTCR
                        i += 1
                    else:
                        state = MID
                elif state == DOTCR:
                    if c == 10:
                        i += 1
                        self.raw_lines = self._raw + i
                        if not self.strict or self._prev_crlf:
                            state = DONE
                            break
                        self._prev_crlf = True
                        state = BOL
                    else:
                        _emit(&o, _CR, 1)
                        state = MID
                else:  # MIDCR
                    if c == 10:
                        _emit(&o, _CRLF, 2)
                        self._prev_crlf = True
                        i += 1
                        self.raw_lines = self._raw + i
                        state = BOL
                    else:
                        _emit(&o, _CR, 1)
                        state = MID
            self._state = state
            self._raw += i
            self.size = o.size
            self.too_big = o.too_big
            result = PyBytes_FromStringAndSize(<const char *>o.buf, o.len)
        finally:
            free(o.buf)
        return result, i, state == DONE


cdef class ChunkDecoder:
    """Streaming BDAT content normaliser (see fastpost.smtp._data_py)."""

    cdef readonly long long size_limit  # output stops after this many bytes (0: none)
    cdef readonly long long size        # content bytes, also those past the limit
    cdef readonly long long bare_lf     # lines that ended in a bare LF
    cdef readonly bint too_big          # size went past size_limit
    cdef int _state                     # BOL, MID, MIDCR or DONE

    def __init__(self, long long size_limit=0):
        if size_limit < 0:
            raise ValueError("size_limit must be >= 0")
        self.size_limit = size_limit
        self.size = 0
        self.bare_lf = 0
        self.too_big = False
        self._state = BOL

    cdef bytes _run(self, const unsigned char *p, Py_ssize_t n, bint finish):
        cdef Out o
        cdef Py_ssize_t i = 0, lf_at
        cdef const unsigned char *lf
        cdef int state = self._state
        cdef bytes result
        o.buf = <unsigned char *>malloc(2 * n + 4)
        if o.buf == NULL:
            raise MemoryError()
        o.len = 0
        o.size = self.size
        o.limit = self.size_limit
        o.too_big = self.too_big
        try:
            while i < n:
                if state == MIDCR:
                    if p[i] == 10:
                        _emit(&o, _CRLF, 2)
                        i += 1
                        state = BOL
                        continue
                    _emit(&o, _CR, 1)
                    state = MID
                lf = <const unsigned char *>memchr(p + i, 10, n - i)
                if lf == NULL:
                    if p[n - 1] == 13:
                        if n - 1 > i:
                            _emit(&o, p + i, n - 1 - i)
                        state = MIDCR
                    else:
                        _emit(&o, p + i, n - i)
                        state = MID
                    break
                lf_at = lf - p
                if lf_at > i and p[lf_at - 1] == 13:
                    _emit(&o, p + i, lf_at + 1 - i)
                else:
                    if lf_at > i:
                        _emit(&o, p + i, lf_at - i)
                    _emit(&o, _CRLF, 2)
                    self.bare_lf += 1
                i = lf_at + 1
                state = BOL
            if finish:
                if state == MIDCR:
                    _emit(&o, _CRCRLF, 3)
                elif state == MID:
                    _emit(&o, _CRLF, 2)
                state = DONE
            self._state = state
            self.size = o.size
            self.too_big = o.too_big
            result = PyBytes_FromStringAndSize(<const char *>o.buf, o.len)
        finally:
            free(o.buf)
        return result

    def feed(self, const unsigned char[:] data not None):
        """Normalise data (all of it is consumed); return the output."""
        if self._state == DONE:
            raise ValueError("ChunkDecoder fed after finish()")
        cdef Py_ssize_t n = data.shape[0]
        if n == 0:
            return b""
        return self._run(&data[0], n, False)

    def finish(self):
        """Return the output that ends the message (CR LF after a final partial line)."""
        if self._state == DONE:
            raise ValueError("ChunkDecoder finished twice")
        return self._run(NULL, 0, True)
