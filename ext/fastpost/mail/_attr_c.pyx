# cython: language_level=3, boundscheck=False, wraparound=False
"""Attribute-list frame codec: the compiled kernel.

Reference and specification: src/fastpost/mail/_attr_py.py (same names, arguments,
exceptions and messages); wire format: src/fastpost/mail/attrtype.py. Encodes into one
growing C buffer per call; decodes straight from the receive buffer with explicit
bounds (no read past the frame, no nesting past max_depth, no frame over max_frame).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_DecodeUTF8, PyUnicode_GET_LENGTH
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

from fastpost.mail.attrtype import AttrError

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL
    int _PyBytes_Resize(PyObject **, Py_ssize_t) except -1
    # (macros: an ASCII str's characters are its UTF-8 bytes, in the object itself)
    bint PyUnicode_IS_COMPACT_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    bint PyUnicode_CheckExact(object)
    Py_ssize_t PyDict_GET_SIZE(object)
    ctypedef struct PyListObject:
        PyObject **ob_item
        Py_ssize_t allocated
    void Py_SET_SIZE(object, Py_ssize_t)

cdef enum:
    TAG_STR = 0x73    # "s"
    TAG_BYTES = 0x62  # "b"
    TAG_INT = 0x69    # "i"
    TAG_LIST = 0x6C   # "l"
    TAG_DICT = 0x64   # "d"
    HEADER_SIZE = 4
    MIN_BUFFER = 65536
    SMALL_LIST = 16   # lists up to this long are allocated at their size

cdef Py_ssize_t MAX_FRAME_LIMIT = 0xFFFFFFFF
DEFAULT_MAX_FRAME = 1 << 24
DEFAULT_MAX_DEPTH = 16


# -- encoding -----------------------------------------------------------------------

cdef struct Writer:
    PyObject *obj     # the bytes object being written (owned), or NULL before the first byte
    char *buf         # its characters
    Py_ssize_t len    # bytes written
    Py_ssize_t cap    # bytes allocated


cdef int _reserve(Writer *w, Py_ssize_t n) except -1:
    # The frames are written into the bytes object that is returned (no copy at the
    # end); it grows by _PyBytes_Resize, and shrinks to its length when finished.
    cdef Py_ssize_t need = w.len + n
    cdef Py_ssize_t cap
    cdef object fresh
    if need <= w.cap:
        return 0
    cap = w.cap * 2 if w.cap else 4096  # (one message's frames, mostly, without regrowing)
    while cap < need:
        cap *= 2
    if w.obj == NULL:
        fresh = PyBytes_FromStringAndSize(NULL, cap)
        Py_INCREF(fresh)
        w.obj = <PyObject *>fresh
    else:
        _PyBytes_Resize(&w.obj, cap)  # (on failure it frees the object and sets NULL)
    w.buf = PyBytes_AS_STRING(<object>w.obj)
    w.cap = cap
    return 0


cdef object _written(Writer *w):
    """The bytes written (the writer lets go of them)."""
    cdef object result
    if w.obj == NULL:
        return b""
    _PyBytes_Resize(&w.obj, w.len)
    result = <object>w.obj
    Py_DECREF(result)  # (w.obj's own reference: result holds the one returned)
    w.obj = NULL
    return result


cdef inline int _put_byte(Writer *w, unsigned char c) except -1:
    if w.len >= w.cap:
        _reserve(w, 1)
    w.buf[w.len] = <char>c
    w.len += 1
    return 0


cdef int _put_varint(Writer *w, uint64_t n) except -1:
    _reserve(w, 10)
    while n >= 0x80:
        w.buf[w.len] = <char>((n & 0x7F) | 0x80)
        w.len += 1
        n >>= 7
    w.buf[w.len] = <char>n
    w.len += 1
    return 0


cdef inline int _put_chunk(Writer *w, const char *data, Py_ssize_t n) except -1:
    # The length varint and the bytes, with one room check (_put_varint's loop here).
    cdef uint64_t v = <uint64_t>n
    cdef char *p
    if w.len + n + 10 > w.cap:
        _reserve(w, n + 10)
    p = w.buf + w.len
    while v >= 0x80:
        p[0] = <char>((v & 0x7F) | 0x80)
        p += 1
        v >>= 7
    p[0] = <char>v
    p += 1
    if n:
        memcpy(p, data, n)
        p += n
    w.len = p - w.buf
    return 0


cdef inline int _put_text(Writer *w, str text) except -1:
    cdef Py_ssize_t n
    cdef const char *data
    cdef bytes raw
    if PyUnicode_IS_COMPACT_ASCII(text):  # (nearly every name and value)
        return _put_chunk(w, <const char *>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    try:
        data = PyUnicode_AsUTF8AndSize(text, &n)
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return _put_chunk(w, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
    return _put_chunk(w, data, n)


cdef int _put_buffer(Writer *w, object value) except -1:
    cdef Py_buffer view
    cdef bytes raw
    if PyObject_GetBuffer(value, &view, PyBUF_SIMPLE) == 0:
        try:
            _put_chunk(w, <const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    return 0


cdef int _put_value(Writer *w, object value, str name) except -1:
    cdef int64_t number
    if isinstance(value, str):
        _put_byte(w, TAG_STR)
        _put_text(w, <str>value)
    elif isinstance(value, (list, tuple)):
        # (before the type checks below that are not flag tests: an attribute list
        # such as smtpd's OPEN frame is mostly pairs)
        _put_byte(w, TAG_LIST)
        _put_varint(w, <uint64_t>len(value))
        for item in value:
            if PyUnicode_CheckExact(item):  # (_put_value's first case, without the call)
                _put_byte(w, TAG_STR)
                _put_text(w, <str>item)
            else:
                _put_value(w, item, name)
    elif isinstance(value, bytes):
        _put_byte(w, TAG_BYTES)
        _put_chunk(w, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    elif isinstance(value, bytearray):
        _put_byte(w, TAG_BYTES)
        _put_chunk(w, PyByteArray_AS_STRING(value), PyByteArray_GET_SIZE(value))
    elif isinstance(value, memoryview):
        _put_byte(w, TAG_BYTES)
        if (<memoryview>value).c_contiguous:
            _put_buffer(w, value)
        else:
            raw = bytes(value)
            _put_chunk(w, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
    elif isinstance(value, int):
        try:
            number = value
        except OverflowError:
            raise OverflowError(f"attribute {name!r}: integer out of 64-bit range") from None
        _put_byte(w, TAG_INT)
        _put_varint(w, (<uint64_t>number << 1) ^ <uint64_t>(number >> 63))
    elif isinstance(value, dict):
        _put_byte(w, TAG_DICT)
        _put_varint(w, <uint64_t>len(<dict>value))
        _put_pairs(w, <dict>value)
    else:
        raise TypeError(f"attribute {name!r}: cannot encode a value of type {type(value).__name__}")
    return 0


cdef int _put_pairs(Writer *w, dict attrs) except -1:
    for name, value in attrs.items():
        if not isinstance(name, str):
            raise TypeError(f"attribute name must be str, not {type(name).__name__}")
        _put_text(w, <str>name)
        if PyUnicode_CheckExact(value):  # (_put_value's first case, without the call)
            _put_byte(w, TAG_STR)
            _put_text(w, <str>value)
        else:
            _put_value(w, value, <str>name)
    return 0


cdef int _put_frame(Writer *w, object attrs) except -1:
    cdef Py_ssize_t start, size
    if not isinstance(attrs, dict):
        raise TypeError(f"an attribute list must be a dict, not {type(attrs).__name__}")
    start = w.len
    _reserve(w, HEADER_SIZE)
    w.len += HEADER_SIZE
    _put_pairs(w, <dict>attrs)
    size = w.len - start - HEADER_SIZE
    if size > MAX_FRAME_LIMIT:
        raise ValueError(f"attribute frame of {size} bytes is too large to send")
    w.buf[start] = <char>((size >> 24) & 0xFF)
    w.buf[start + 1] = <char>((size >> 16) & 0xFF)
    w.buf[start + 2] = <char>((size >> 8) & 0xFF)
    w.buf[start + 3] = <char>(size & 0xFF)
    return 0


def encode(attrs):
    """Return one frame (4-byte length + body) carrying the attributes of ``attrs``."""
    cdef Writer w
    w.obj = NULL
    w.buf = NULL
    w.len = w.cap = 0
    try:
        _put_frame(&w, attrs)
        return _written(&w)
    finally:
        Py_XDECREF(w.obj)


def encode_many(frames):
    """Return the frames of several attribute dicts, concatenated in order."""
    cdef Writer w
    w.obj = NULL
    w.buf = NULL
    w.len = w.cap = 0
    try:
        for attrs in frames:
            _put_frame(&w, attrs)
        return _written(&w)
    finally:
        Py_XDECREF(w.obj)


# -- decoding -----------------------------------------------------------------------

cdef uint64_t _get_varint(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end) except? 0xFFFFFFFFFFFFFFFF:
    cdef Py_ssize_t start = pos[0]
    cdef Py_ssize_t p = start
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef unsigned char byte
    while True:
        if p >= end:
            raise AttrError(f"truncated attribute frame at offset {start}")
        byte = buf[p]
        p += 1
        if shift == 63 and byte > 1:
            raise AttrError(f"varint too long at offset {start}")
        result |= (<uint64_t>(byte & 0x7F)) << shift
        if not byte & 0x80:
            pos[0] = p
            return result
        shift += 7


cdef inline Py_ssize_t _get_length(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end) except -1:
    """Read a length varint that must fit in what is left of the frame."""
    cdef Py_ssize_t p = pos[0]
    cdef uint64_t n
    if p < end and buf[p] < 0x80:  # one byte (nearly every length): no call
        n = buf[p]
        pos[0] = p + 1
    else:
        n = _get_varint(buf, pos, end)
    if n > <uint64_t>(end - pos[0]):
        raise AttrError(f"truncated attribute frame at offset {pos[0]}")
    return <Py_ssize_t>n


# Short ASCII texts decoded lately, by a hash of their bytes: the names and values
# that recur in every frame (attribute names, the client attributes' names, "smtp",
# "127.0.0.1" ...) are returned as the same str object instead of a new one each time
# (no decoding, no allocation; a dict key keeps its cached hash). Direct-mapped: a
# slot holds the last text that hashed to it, and beside it (in C) its length and its
# bytes as zero-padded 8-byte words, compared with the words just hashed (no memcmp,
# no visit to the str object). Only texts of 2..TEXT_CACHE_MAX ASCII bytes (shorter
# ones are CPython's own singletons; non-ASCII is decoded as always).
cdef enum:
    TEXT_CACHE_SLOTS = 1024  # a power of two (the texts of a frame seldom share one)
    TEXT_CACHE_MAX = 32
    TEXT_CACHE_WORDS = 4     # TEXT_CACHE_MAX / 8
cdef list _text_cache = [None] * TEXT_CACHE_SLOTS
cdef Py_ssize_t _text_len[TEXT_CACHE_SLOTS]                 # 0: the slot is empty
cdef uint64_t _text_words[TEXT_CACHE_SLOTS][TEXT_CACHE_WORDS]

cdef list _char_text = [chr(c) for c in range(128)]  # one-byte ASCII texts ("o", "t" ...)

cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define FP_LITTLE_ENDIAN 1
    #else
    #define FP_LITTLE_ENDIAN 0
    #endif
    """
    const bint FP_LITTLE_ENDIAN


cdef str _get_text(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end):
    cdef Py_ssize_t p = pos[0]
    cdef Py_ssize_t n, i, k, j
    cdef const unsigned char *s
    cdef uint64_t h, w, high
    cdef uint64_t words[TEXT_CACHE_WORDS]
    cdef str text
    if p < end and buf[p] < 0x80:  # a one-byte length (nearly every text): no call
        n = buf[p]
        p += 1
        if n > end - p:
            raise AttrError(f"truncated attribute frame at offset {p}")
    else:
        n = _get_length(buf, pos, end)
        p = pos[0]
    s = buf + p
    pos[0] = p + n
    if n == 1 and s[0] < 0x80:
        return <str>_char_text[s[0]]
    if 1 < n <= TEXT_CACHE_MAX:
        # eight bytes at a time: the ASCII test (no high bit) and a multiplicative hash
        h = <uint64_t>n
        high = 0
        i = 0
        k = 0
        while i + 8 <= n:
            memcpy(&w, s + i, 8)
            words[k] = w
            k += 1
            high |= w
            h = (h ^ w) * 0x9E3779B97F4A7C15ULL
            i += 8
        if i < n:
            if FP_LITTLE_ENDIAN and p + i + 8 <= end:
                # (the word that starts there lies inside the frame: its first n - i
                # bytes kept, without a call)
                memcpy(&w, s + i, 8)
                w &= (<uint64_t>1 << (8 * (n - i))) - 1
            else:
                w = 0
                memcpy(&w, s + i, n - i)
            words[k] = w
            k += 1
            high |= w
            h = (h ^ w) * 0x9E3779B97F4A7C15ULL
        if not high & 0x8080808080808080ULL:
            h = (h >> 54) & (TEXT_CACHE_SLOTS - 1)
            if _text_len[h] == n:
                j = 0
                while j < k and _text_words[h][j] == words[j]:
                    j += 1
                if j == k:
                    return <str>_text_cache[h]
            text = PyUnicode_DecodeUTF8(<const char *>s, n, "surrogateescape")
            _text_cache[h] = text
            _text_len[h] = n
            memcpy(_text_words[h], words, k * 8)
            return text
    return PyUnicode_DecodeUTF8(<const char *>s, n, "surrogateescape")


cdef object _get_value(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end,
                       int depth, int max_depth):
    cdef Py_ssize_t p = pos[0]
    cdef unsigned char tag
    cdef Py_ssize_t n, count, i
    cdef uint64_t z
    cdef list items
    cdef object value
    cdef PyObject **slots = NULL
    if p >= end:
        raise AttrError(f"truncated attribute frame at offset {p}")
    tag = buf[p]
    pos[0] = p + 1
    if tag == TAG_STR:
        return _get_text(buf, pos, end)
    if tag == TAG_BYTES:
        n = _get_length(buf, pos, end)
        p = pos[0]
        pos[0] = p + n
        return PyBytes_FromStringAndSize(<const char *>buf + p, n)
    if tag == TAG_INT:
        p += 1
        if p < end and buf[p] < 0x80:  # one byte: no call
            z = buf[p]
            pos[0] = p + 1
        else:
            z = _get_varint(buf, pos, end)
        return <int64_t>((z >> 1) ^ (0 - (z & 1)))
    if tag == TAG_LIST or tag == TAG_DICT:
        if depth >= max_depth:
            raise AttrError(f"attribute nesting deeper than {max_depth} at offset {p}")
        count = _get_length(buf, pos, end)
        if tag == TAG_DICT:
            return _get_attrs(buf, pos, end, count, depth + 1, max_depth)
        if count <= SMALL_LIST:
            # (a short list, such as a name-value pair, made at its size: no appends;
            # a long one grows as its items arrive, so a count on the wire does not
            # allocate ahead of the bytes that back it)
            # Its item array from PyMem_Malloc, not PyList_New(count)'s zeroed one; the
            # list's size counts the items stored so far, so that it is whole at every
            # step (for the collector, and when a later item fails).
            items = PyList_New(0)
            if count:
                slots = <PyObject **>PyMem_Malloc(count * sizeof(PyObject *))
                if slots == NULL:
                    raise MemoryError()
                (<PyListObject *>items).ob_item = slots
                (<PyListObject *>items).allocated = count
            for i in range(count):
                p = pos[0]
                if p < end and buf[p] == TAG_STR:  # (_get_value's first case, without the call)
                    pos[0] = p + 1
                    value = _get_text(buf, pos, end)
                else:
                    value = _get_value(buf, pos, end, depth + 1, max_depth)
                Py_INCREF(value)
                slots[i] = <PyObject *>value
                Py_SET_SIZE(items, i + 1)
            return items
        items = []
        for i in range(count):
            items.append(_get_value(buf, pos, end, depth + 1, max_depth))
        return items
    raise AttrError(f"bad attribute value type 0x{tag:02x} at offset {p}")


cdef dict _get_attrs(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end,
                     Py_ssize_t count, int depth, int max_depth):
    """Decode count attributes (count < 0: until end)."""
    cdef dict out = {}
    cdef Py_ssize_t at = 0
    cdef Py_ssize_t size
    cdef str name = None
    cdef object value
    cdef bint valuing = False
    cdef bint duplicate = False
    # One look-up for each name (the store; a duplicate leaves the size as it was),
    # its error as the reference's (before the value's): a value that fails under a
    # duplicate name reports the duplicate. One try for the whole list (not one per
    # attribute): ``valuing`` tells a value's failure from the others.
    try:
        while (count < 0 and pos[0] < end) or count > 0:
            at = pos[0]
            name = _get_text(buf, pos, end)
            size = PyDict_GET_SIZE(out)
            valuing = True
            if pos[0] < end and buf[pos[0]] == TAG_STR:  # (as in the lists above)
                pos[0] += 1
                value = _get_text(buf, pos, end)
            else:
                value = _get_value(buf, pos, end, depth, max_depth)
            valuing = False
            out[name] = value
            if PyDict_GET_SIZE(out) == size:
                duplicate = True
                break
            if count > 0:
                count -= 1
    except BaseException:
        if valuing and name in out:
            raise AttrError(f"duplicate attribute name {name!r} at offset {at}") from None
        raise
    if duplicate:
        raise AttrError(f"duplicate attribute name {name!r} at offset {at}")
    return out


def decode(body, int max_depth=DEFAULT_MAX_DEPTH):
    """Return the attributes of one frame body (without its 4-byte length)."""
    cdef Py_buffer view
    cdef Py_ssize_t pos = 0
    PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
    try:
        return _get_attrs(<const unsigned char *>view.buf, &pos, view.len, -1, 0, max_depth)
    finally:
        PyBuffer_Release(&view)


cdef class FrameDecoder:
    """Incremental decoder: bytes in, one attribute dict per complete frame out."""

    cdef readonly Py_ssize_t max_frame  # largest frame body accepted
    cdef readonly int max_depth         # deepest list/dict nesting accepted
    cdef bytearray _buf                 # receive buffer
    cdef Py_ssize_t _start              # first unconsumed byte of _buf
    cdef Py_ssize_t _end                # end of received data in _buf
    cdef object _broken                 # text of the fatal error, once out of sync

    def __init__(self, Py_ssize_t max_frame=DEFAULT_MAX_FRAME, int max_depth=DEFAULT_MAX_DEPTH):
        if max_frame < 0 or max_frame > MAX_FRAME_LIMIT:
            raise ValueError("max_frame out of range")
        if max_depth < 0:
            raise ValueError("max_depth must be >= 0")
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._buf = bytearray()
        self._start = 0
        self._end = 0
        self._broken = None

    cdef int _reserve(self, Py_ssize_t size) except -1:
        cdef Py_ssize_t pending, cap
        cdef bytearray grown
        if PyByteArray_GET_SIZE(self._buf) - self._end >= size:
            return 0
        pending = self._end - self._start
        cap = pending + size
        if cap < 2 * pending:
            cap = 2 * pending
        if cap < MIN_BUFFER:
            cap = MIN_BUFFER
        grown = bytearray(cap)
        if pending:
            memcpy(PyByteArray_AS_STRING(grown), PyByteArray_AS_STRING(self._buf) + self._start,
                   pending)
        self._buf = grown
        self._start = 0
        self._end = pending
        return 0

    def get_buffer(self, Py_ssize_t sizehint=-1):
        """Return a writable memoryview for received bytes (asyncio BufferedProtocol)."""
        self._reserve(sizehint if sizehint > MIN_BUFFER else MIN_BUFFER)
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, Py_ssize_t nbytes):
        """Record that nbytes were written into the last get_buffer() view."""
        if nbytes < 0 or nbytes > PyByteArray_GET_SIZE(self._buf) - self._end:
            raise ValueError("buffer_updated: bad byte count")
        self._end += nbytes

    def feed(self, data):
        """Append received bytes (copying them)."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len:
                self._reserve(view.len)
                memcpy(PyByteArray_AS_STRING(self._buf) + self._end, view.buf, view.len)
                self._end += view.len
        finally:
            PyBuffer_Release(&view)

    def next_frame(self):
        """Return the next complete frame's attributes, or None when none is complete."""
        cdef const unsigned char *p
        cdef Py_ssize_t size, body, pos
        if self._broken is not None:
            raise AttrError(self._broken, True)
        if self._end - self._start < HEADER_SIZE:
            return None
        p = <const unsigned char *>PyByteArray_AS_STRING(self._buf) + self._start
        size = ((<Py_ssize_t>p[0] << 24) | (<Py_ssize_t>p[1] << 16) |
                (<Py_ssize_t>p[2] << 8) | <Py_ssize_t>p[3])
        if size > self.max_frame:
            self._broken = f"attribute frame length {size} exceeds the limit {self.max_frame}"
            raise AttrError(self._broken, True)
        if self._end - self._start < HEADER_SIZE + size:
            return None
        body = self._start + HEADER_SIZE
        self._start = body + size
        pos = 0
        try:
            return _get_attrs(<const unsigned char *>PyByteArray_AS_STRING(self._buf) + body,
                              &pos, size, -1, 0, self.max_depth)
        finally:
            if self._start == self._end:
                self._start = self._end = 0

    @property
    def buffered(self):
        """Bytes received that do not yet form a complete frame."""
        return self._end - self._start
