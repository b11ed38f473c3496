# cython: language_level=3, boundscheck=False, wraparound=False
"""cleanup's common-case header pass: the compiled kernel.

Reference and specification: src/fastpost/mail/_hdrpass_py.py (same name, arguments and
results). One loop over the header tuples; the output is joined once at the end. Name
lower-casing, value stripping and the MIME-type scan work on the header's bytes in place;
a Python object is made only for the drop-set lookup and the cache key.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

cdef enum:
    _SENDER = 1
    _RECIPIENT = 2
    _RESENT = 4
    _HDR_MESSAGE_ID = 18
    _HDR_RESENT_MESSAGE_ID = 19
    _HDR_RECEIVED = 22
    _HDR_CONTENT_TYPE = 24
    _HDR_CTE = 25
    _EIGHT_BIT = 1


cdef inline bint _space(unsigned char c) noexcept nogil:
    # what bytes.strip() removes
    return c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D or c == 0x0B or c == 0x0C


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    return c + 32 if 0x41 <= c <= 0x5A else c


cdef bint _word_is(const unsigned char *p, Py_ssize_t n, const char *word) noexcept nogil:
    """The stripped value p[:n], lower-cased, equals word."""
    cdef Py_ssize_t i = 0, j
    while n > 0 and _space(p[n - 1]):
        n -= 1
    while i < n and _space(p[i]):
        i += 1
    j = 0
    while i < n:
        if word[j] == 0 or _lower(p[i]) != <unsigned char>word[j]:
            return False
        i += 1
        j += 1
    return word[j] == 0


cdef bint _contains_ci(const unsigned char *p, Py_ssize_t n, const char *word, Py_ssize_t wn) noexcept nogil:
    """word (lower-case) occurs in p[:n] lower-cased."""
    cdef Py_ssize_t i, k
    i = 0
    while i + wn <= n:
        k = 0
        while k < wn and _lower(p[i + k]) == <unsigned char>word[k]:
            k += 1
        if k == wn:
            return True
        i += 1
    return False


cdef object _stripped(bytes text, Py_ssize_t start):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(text)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(text)
    if start > end:
        start = end
    while start < end and _space(p[start]):
        start += 1
    while end > start and _space(p[end - 1]):
        end -= 1
    return PyBytes_FromStringAndSize(<const char *>p + start, end - start)


def header_pass(list headers, const unsigned char[:] classes, drop, Py_ssize_t hop_limit,
                bint strict7, bint mime, dict cache, ctx, map_ok, sender_class, rcpt_class,
                double now):
    """One pass over a message's headers for the common case (see the reference)."""
    cdef list out = []
    cdef unsigned long long have = 0
    cdef bint resent = False, cte_8bit = False, use_drop = bool(drop)
    cdef object message_id = None, resent_message_id = None
    cdef Py_ssize_t hops = 0, nclasses = classes.shape[0]
    cdef Py_ssize_t name_len, n, i
    cdef int kind, flags, cls
    cdef bytes text, lname
    cdef const unsigned char *p
    cdef unsigned char small[64]
    cdef object item, hclass
    for h in headers:
        kind = h[0]
        name_len = h[1]
        text = h[2]
        flags = h[3]
        if kind == _HDR_RECEIVED:
            hops += 1
            if hops > hop_limit:
                return None
        if flags & _EIGHT_BIT and strict7:
            return None
        cls = classes[kind] if 0 <= kind < nclasses else 0
        p = <const unsigned char *>PyBytes_AS_STRING(text)
        n = PyBytes_GET_SIZE(text)
        if kind:
            if kind < 64:
                have |= (<unsigned long long>1) << kind
            if cls & _RESENT:
                resent = True
            if kind == _HDR_MESSAGE_ID:
                message_id = _stripped(text, name_len + 1)
            elif kind == _HDR_RESENT_MESSAGE_ID:
                resent_message_id = _stripped(text, name_len + 1)
            elif kind == _HDR_CONTENT_TYPE and mime:
                if name_len + 1 <= n and (
                        _contains_ci(p + name_len + 1, n - name_len - 1, b"multipart/", 10)
                        or _contains_ci(p + name_len + 1, n - name_len - 1, b"message/", 8)):
                    return None
            elif kind == _HDR_CTE:
                if name_len + 1 <= n and (_word_is(p + name_len + 1, n - name_len - 1, b"8bit")
                                          or _word_is(p + name_len + 1, n - name_len - 1, b"binary")):
                    cte_8bit = True
        if use_drop:
            if name_len <= 64:
                for i in range(name_len):
                    small[i] = _lower(p[i])
                lname = PyBytes_FromStringAndSize(<const char *>small, name_len)
            else:
                lname = text[:name_len].lower()
            if lname in drop:
                continue
        if kind and cls & (_SENDER | _RECIPIENT) and ctx is not None:
            hclass = sender_class if cls & _SENDER else rcpt_class
            if hclass is None:
                return None
            item = cache.get((ctx, hclass, map_ok, text))
            if item is None or <double>item[1] < now:
                return None
            text = item[0]
        out.append(text)
        out.append(b"\n")
    return (b"".join(out), int(have), resent, message_id, resent_message_id, cte_8bit)
