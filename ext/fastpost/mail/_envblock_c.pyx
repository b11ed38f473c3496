# cython: language_level=3, boundscheck=False, wraparound=False
"""cleanup's common-case envelope in one buffer: the compiled kernel.

Reference and specification: src/fastpost/mail/_envblock_py.py (same name, arguments and
results). Records are written straight into one malloc'd buffer that grows on demand;
the result is copied out once. Numbers are printed and attribute names checked in C,
and the attribute dict is made at its size (docs/accept.md, "Session 12: cleanup's END
pass").
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.math cimport nearbyint
from libc.stdio cimport snprintf
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


cdef extern from "Python.h":
    # a dict with room for n items (no resize while cleanup's attributes go in)
    dict _PyDict_NewPresized(Py_ssize_t n)


cdef bint _plain_name(object name) except -1:
    """False for what the builder treats otherwise: not str, "=" in it, or one of the
    next recipient's attributes (dsn_orig_rcpt, notify_flags). An ASCII name is looked
    at in C; others take the Python expressions."""
    cdef const char *p
    cdef Py_ssize_t n
    if type(name) is str and PyUnicode_IS_ASCII(name):
        p = <const char *>PyUnicode_DATA(name)
        n = PyUnicode_GET_LENGTH(name)
        if n and memchr(p, 0x3D, n) != NULL:
            return False
        if n == 13 and memcmp(p, b"dsn_orig_rcpt", 13) == 0:
            return False
        if n == 12 and memcmp(p, b"notify_flags", 12) == 0:
            return False
        return True
    return not (not isinstance(name, str) or "=" in name or name == "dsn_orig_rcpt"
                or name == "notify_flags")


cdef int _decimal(char *out, long long v) noexcept:
    """v (>= 0) in decimal at out; returns the number of digits ("%lld")."""
    cdef char tmp[24]
    cdef int n = 0, i
    while True:
        tmp[n] = <char>(0x30 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


cdef int _reserve(Buf *b, Py_ssize_t more) except -1:
    cdef Py_ssize_t need = b.len + more
    cdef Py_ssize_t cap = b.cap if b.cap else 512
    cdef char *p
    if need <= b.cap:
        return 0
    while cap < need:
        cap *= 2
    p = <char *>realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef int _record(Buf *b, int rtype, const char *head, Py_ssize_t hn,
                 const char *data, Py_ssize_t n) except -1:
    """One record whose payload is head[:hn] + data[:n]."""
    cdef Py_ssize_t total = hn + n
    cdef Py_ssize_t rest = total
    _reserve(b, total + 11)
    b.data[b.len] = <char>rtype
    b.len += 1
    while rest >= 0x80:
        b.data[b.len] = <char>((rest & 0x7F) | 0x80)
        rest >>= 7
        b.len += 1
    b.data[b.len] = <char>rest
    b.len += 1
    if hn:
        memcpy(b.data + b.len, head, hn)
        b.len += hn
    if n:
        memcpy(b.data + b.len, data, n)
        b.len += n
    return 0


cdef inline bytes _enc(object text):
    if isinstance(text, bytes):
        return <bytes>text
    return (<str>text).encode("utf-8", "surrogateescape")


cdef int _text_record(Buf *b, int rtype, bytes head, object text) except -1:
    cdef bytes data
    if type(text) is str and PyUnicode_IS_ASCII(text):
        # ASCII text is its own UTF-8: copied from the string, no bytes object made
        return _record(b, rtype, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head),
                       <const char *>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    data = _enc(text)
    return _record(b, rtype, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head),
                   PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef int _attr_record(Buf *b, object name, object value) except -1:
    """An A record ``name=value`` (name and value str or bytes)."""
    cdef char head[256]
    cdef Py_ssize_t nn
    cdef bytes nb
    if type(name) is str and PyUnicode_IS_ASCII(name) and PyUnicode_GET_LENGTH(name) < 255:
        nn = PyUnicode_GET_LENGTH(name)
        memcpy(head, PyUnicode_DATA(name), nn)
        head[nn] = 61  # "="
        if type(value) is str and PyUnicode_IS_ASCII(value):
            return _record(b, 0x41, head, nn + 1, <const char *>PyUnicode_DATA(value),
                           PyUnicode_GET_LENGTH(value))
        nb = _enc(value)
        return _record(b, 0x41, head, nn + 1, PyBytes_AS_STRING(nb), PyBytes_GET_SIZE(nb))
    return _text_record(b, 0x41, _enc(name) + b"=", value)


def envelope_block(double arrival, filt, ident, bint ctx_local, envid, ret, fullname, sender,
                   encoding, list attrs, list rcpts, bint orig_rcpt, Py_ssize_t dup_limit,
                   set dups, Py_ssize_t base):
    """The envelope records of a plain message in one buffer (see the reference)."""
    cdef object name, value, key, dsn_orcpt, orig, address
    cdef long long notify
    cdef long long sec
    cdef long usec
    cdef double frac
    cdef char num[64]
    cdef int k
    cdef Buf b
    cdef dict notes
    cdef list recipients = []
    cdef long long qmgr = 0
    cdef Py_ssize_t count = 0
    for item in attrs:
        if not _plain_name(item[0]) or not isinstance(item[1], str):
            return None
    for key in rcpts:
        if not 0 <= key[1] <= 0xFFFFFFFF:
            return None
    sec = <long long>arrival
    frac = nearbyint((arrival - <double>sec) * 1000000.0)
    usec = <long>frac
    if usec > 999999:
        usec = 999999
    b.data = NULL
    b.len = 0
    b.cap = 0
    try:
        if sec >= 0 and usec >= 0:  # "%lld %ld" and "%lld", the digits written here
            k = _decimal(num, sec)
            num[k] = 0x20
            k = k + 1 + _decimal(num + k + 1, usec)
        else:
            k = snprintf(num, sizeof(num), "%lld %ld", sec, usec)
        _record(&b, 0x54, num, k, NULL, 0)  # T
        if sec >= 0:
            k = _decimal(num, sec)
        else:
            k = snprintf(num, sizeof(num), "%lld", sec)
        _record(&b, 0x41, "create_time=", 12, num, k)
        notes = _PyDict_NewPresized(len(attrs) + 6)
        notes["create_time"] = PyUnicode_DecodeASCII(num, k, NULL)
        if filt:
            _text_record(&b, 0x4C, b"", filt)
        if ident:
            _text_record(&b, 0x41, b"log_ident=", ident)
            notes["log_ident"] = ident
        if ctx_local:
            _record(&b, 0x41, "rewrite_context=local", 21, NULL, 0)
            notes["rewrite_context"] = "local"
        else:
            _record(&b, 0x41, "rewrite_context=remote", 22, NULL, 0)
            notes["rewrite_context"] = "remote"
        if envid:
            _text_record(&b, 0x41, b"envelope_id=", envid)
            notes["envelope_id"] = envid
        if ret:
            _text_record(&b, 0x41, b"ret_flags=", ret)
            notes["ret_flags"] = ret
        if fullname is not None:
            _text_record(&b, 0x46, b"", fullname)
        _text_record(&b, 0x53, b"", sender)
        if encoding:
            _text_record(&b, 0x41, b"encoding=", encoding)
            notes["encoding"] = encoding
        for item in attrs:
            name = item[0]
            value = item[1]
            _attr_record(&b, name, value)
            notes[name] = value
        for key in rcpts:
            if key in dups:
                continue
            if len(dups) < dup_limit:
                dups.add(key)
            dsn_orcpt = key[0]
            notify = key[1]
            orig = key[2]
            address = key[3]
            if notify:
                k = snprintf(num, sizeof(num), "%lld", notify)
                _record(&b, 0x41, "notify_flags=", 13, num, k)
                qmgr |= (notify & 0xF) << 1
            if dsn_orcpt:
                _text_record(&b, 0x41, b"dsn_orig_rcpt=", dsn_orcpt)
            if orig_rcpt:
                _text_record(&b, 0x4F, b"", orig)
            recipients.append((base + b.len, address, orig if orig_rcpt else None,
                               dsn_orcpt if dsn_orcpt else None, key[1]))
            _text_record(&b, 0x52, b"", address)
            count += 1
        return (PyBytes_FromStringAndSize(b.data, b.len), sec + usec / 1000000.0, notes,
                recipients, qmgr, count)
    finally:
        free(b.data)
