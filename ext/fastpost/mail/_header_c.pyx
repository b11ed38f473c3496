# cython: language_level=3, boundscheck=False, wraparound=False
"""Message header section -> logical headers: the compiled kernel.

Reference and specification: src/fastpost/mail/_header_py.py (same names, arguments,
results). Lines are found with memchr; the current logical header and an undecided
line start live in malloc'd buffers that grow on demand up to header_size_limit.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcpy

EIGHT_BIT = 1
TRUNCATED = 2
SPACE_BEFORE_COLON = 4

cdef enum:
    _LINE_START = 0
    _PENDING = 1
    _IN_HEADER = 2
    _DONE = 3
    _F_EIGHT_BIT = 1
    _F_TRUNCATED = 2
    _F_SPACE = 4


cdef inline bint _name_byte(unsigned char b) noexcept nogil:
    return 0x21 <= b <= 0x7E and b != 0x3A


cdef class HeaderReader:
    """Split the header section of a message into logical headers (see the reference)."""

    cdef readonly object kinds  # lower-case name (bytes) -> kind (int)
    cdef dict _kinds_d  # kinds when it is a dict (its look-up without a method call)
    cdef readonly Py_ssize_t limit  # header_size_limit
    cdef readonly bint done  # the section ended
    cdef public bytes rest  # part of the first body line that came in earlier chunks
    cdef list _out  # completed headers not yet taken
    cdef unsigned char *_cur  # the logical header being read (NULL: none)
    cdef Py_ssize_t _cur_len, _cur_cap
    cdef bint _have_cur
    cdef Py_ssize_t _name_len
    cdef int _flags
    cdef int _state
    cdef unsigned char *_pend  # start of an undecided line (raw bytes)
    cdef Py_ssize_t _pend_len, _pend_cap
    cdef bint _cr  # a CR at the end of the current line so far, held back

    def __cinit__(self, kinds, Py_ssize_t header_size_limit):
        self._cur = NULL
        self._pend = NULL

    def __init__(self, kinds, Py_ssize_t header_size_limit):
        if header_size_limit < 1:
            raise ValueError("header_size_limit must be >= 1")
        self.kinds = kinds
        self._kinds_d = kinds if type(kinds) is dict else None
        self.limit = header_size_limit
        self.done = False
        self.rest = b""
        self._out = []
        self._have_cur = False
        self._cur_len = 0
        self._cur_cap = 0
        self._name_len = 0
        self._flags = 0
        self._state = _LINE_START
        self._pend_len = 0
        self._pend_cap = 0
        self._cr = False

    def __dealloc__(self):
        free(self._cur)
        free(self._pend)

    # -- buffers --------------------------------------------------------------------

    cdef int _grow(self, unsigned char **buf, Py_ssize_t *cap, Py_ssize_t need) except -1:
        cdef Py_ssize_t n = cap[0] if cap[0] else 256
        cdef unsigned char *p
        while n < need:
            n *= 2
        p = <unsigned char *>realloc(buf[0], n)
        if p == NULL:
            raise MemoryError()
        buf[0] = p
        cap[0] = n
        return 0

    cdef int _add(self, const unsigned char *data, Py_ssize_t n) except -1:
        """Append bytes to the current header, within the size limit."""
        cdef Py_ssize_t room = self.limit - self._cur_len
        cdef Py_ssize_t i
        if n <= 0:
            return 0
        if room <= 0:
            self._flags |= _F_TRUNCATED
            return 0
        if n > room:
            n = room
            self._flags |= _F_TRUNCATED
        if self._cur_len + n > self._cur_cap:
            self._grow(&self._cur, &self._cur_cap, self._cur_len + n)
        memcpy(self._cur + self._cur_len, data, n)
        if not (self._flags & _F_EIGHT_BIT):
            for i in range(n):
                if data[i] >= 0x80:
                    self._flags |= _F_EIGHT_BIT
                    break
        self._cur_len += n
        return 0

    cdef int _pend_add(self, const unsigned char *data, Py_ssize_t n) except -1:
        if n <= 0:
            return 0
        if self._pend_len + n > self._pend_cap:
            self._grow(&self._pend, &self._pend_cap, self._pend_len + n)
        memcpy(self._pend + self._pend_len, data, n)
        self._pend_len += n
        return 0

    cdef int _close_header(self) except -1:
        cdef bytes text, name
        if not self._have_cur:
            return 0
        cdef unsigned char low[64]
        cdef Py_ssize_t i, n = self._name_len
        cdef unsigned char c
        text = PyBytes_FromStringAndSize(<char *>self._cur, self._cur_len)
        if n <= 64 and self._kinds_d is not None:
            # the name lower-cased here, as bytes.lower() does (ASCII A-Z only), and
            # looked up in the dict itself: no slice, no method calls
            for i in range(n):
                c = self._cur[i]
                low[i] = c + 32 if 0x41 <= c <= 0x5A else c
            name = PyBytes_FromStringAndSize(<char *>low, n)
            kind = self._kinds_d.get(name, 0)
        else:
            name = text[:n].lower()
            kind = self.kinds.get(name, 0)
        self._out.append((kind, n, text, self._flags))
        self._have_cur = False
        self._cur_len = 0
        self._flags = 0
        self._name_len = 0
        if self._cur_cap > 65536:  # do not keep a huge buffer for the next header
            free(self._cur)
            self._cur = NULL
            self._cur_cap = 0
        return 0

    cdef int _decide(self, bint complete):
        """1 header, 2 continuation, 0 body, -1 unknown yet."""
        cdef const unsigned char *p = self._pend
        cdef Py_ssize_t n = self._pend_len
        cdef Py_ssize_t i = 0, j
        cdef unsigned char first
        if complete and n and p[n - 1] == 0x0D:
            n -= 1
        if n == 0:
            return 0 if complete else -1
        first = p[0]
        if first == 0x20 or first == 0x09:
            return 2 if self._have_cur else 0
        while i < n and _name_byte(p[i]):
            i += 1
        if i == 0:
            return 0
        j = i
        while j < n and (p[j] == 0x20 or p[j] == 0x09):
            j += 1
        if j > self.limit:
            return 0
        if j < n:
            return 1 if p[j] == 0x3A else 0
        return 0 if complete else -1

    cdef int _line(self, const unsigned char *raw, Py_ssize_t n) except -1:
        """Append raw bytes of the current line (holding back a final CR)."""
        if n <= 0:
            return 0
        if self._cr:
            self._add(<const unsigned char *>b"\r", 1)
            self._cr = False
        if raw[n - 1] == 0x0D:
            n -= 1
            self._cr = True
        self._add(raw, n)
        return 0

    cdef int _start_header(self) except -1:
        cdef const unsigned char *p = self._pend
        cdef Py_ssize_t i = 0, j
        while _name_byte(p[i]):
            i += 1
        j = i
        while p[j] == 0x20 or p[j] == 0x09:
            j += 1
        self._close_header()
        self._have_cur = True
        self._cur_len = 0
        self._flags = _F_SPACE if j > i else 0
        self._name_len = i
        self._add(p, i)
        self._line(p + j, self._pend_len - j)
        return 0

    # -- the API --------------------------------------------------------------------

    def feed(self, const unsigned char[:] data not None):
        """Read header lines from data; return how many bytes of it were used."""
        if self.done:
            return 0
        cdef Py_ssize_t end = data.shape[0]
        cdef Py_ssize_t pos = 0, nl, stop
        cdef const unsigned char *src
        cdef const unsigned char *hit
        cdef bint complete
        cdef int kind
        cdef Py_ssize_t prior_len
        if end == 0:
            return 0
        src = &data[0]
        while pos < end:
            hit = <const unsigned char *>memchr(src + pos, 0x0A, end - pos)
            complete = hit != NULL
            nl = hit - src if complete else -1
            stop = nl if complete else end
            if self._state == _LINE_START or self._state == _PENDING:
                prior_len = self._pend_len
                self._pend_add(src + pos, stop - pos)
                kind = self._decide(complete)
                if kind < 0:
                    self._state = _PENDING
                    return end
                if kind == 0:
                    self._close_header()
                    self.rest = PyBytes_FromStringAndSize(<char *>self._pend, prior_len) if prior_len else b""
                    self._pend_len = 0
                    self._state = _DONE
                    self.done = True
                    return pos
                if kind == 1:
                    self._start_header()
                else:
                    self._add(<const unsigned char *>b"\n", 1)
                    self._line(self._pend, self._pend_len)
                self._pend_len = 0
                self._state = _IN_HEADER
            else:
                self._line(src + pos, stop - pos)
            if not complete:
                return end
            self._cr = False
            self._state = _LINE_START
            pos = nl + 1
        return end

    def finish(self):
        """No more input: complete the last header (an unterminated line counts)."""
        cdef int kind
        if self.done:
            return
        if self._state == _PENDING:
            kind = self._decide(True) if self._pend_len else 0
            if kind == 0 and self._pend_len:
                self._close_header()
                self.rest = PyBytes_FromStringAndSize(<char *>self._pend, self._pend_len)
                self._pend_len = 0
                self._state = _DONE
                self.done = True
                return
            if kind == 1:
                self._start_header()
            elif kind == 2:
                self._add(<const unsigned char *>b"\n", 1)
                self._line(self._pend, self._pend_len)
            self._pend_len = 0
        if self._cr:
            self._add(<const unsigned char *>b"\r", 1)
            self._cr = False
        self._close_header()
        self._state = _DONE
        self.done = True

    def take(self):
        """Return the logical headers completed so far, and forget them."""
        cdef list out = self._out
        self._out = []
        return out
