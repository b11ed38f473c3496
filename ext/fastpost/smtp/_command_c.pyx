# cython: language_level=3, boundscheck=False, wraparound=False
"""Common-command kernel: the compiled version.

Reference and specification: src/fastpost/smtp/_command_py.py (same names, arguments
and results). One pass over the argument bytes, no intermediate objects: the answer
tuple and its address string are the only allocations.

Diagnostics: as the reference (TypeError for arguments that are not bytes-like).
"""

from cpython.unicode cimport PyUnicode_DecodeASCII

HELO = 1
EHLO = 2
MAIL = 3
RCPT = 4
DATA = 5
RSET = 6
NOOP = 7
QUIT = 8

VERBS = ("", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT")

# 1: RFC 5322 atext; 2: letter, digit, "_" or "-" (host name label); 4: digit.
cdef unsigned char _CLASS[256]


cdef void _init_classes() noexcept:
    cdef int i
    cdef bytes atext = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                        b"!#$%&'*+/=?^_`{|}~-")
    cdef bytes ldh = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    for i in range(256):
        _CLASS[i] = 0
    for i in range(len(atext)):
        _CLASS[<unsigned char>atext[i]] |= 1
    for i in range(len(ldh)):
        _CLASS[<unsigned char>ldh[i]] |= 2
    for i in range(48, 58):
        _CLASS[i] |= 4


_init_classes()


cdef inline unsigned char _upper(unsigned char c) noexcept:
    return c - 32 if 97 <= c <= 122 else c


cdef inline bint _keyword(const unsigned char *p, Py_ssize_t n, const char *word,
                          Py_ssize_t k) noexcept:
    """True when the n bytes at p start with ``word`` (k bytes, upper case), any case."""
    cdef Py_ssize_t i
    if n < k:
        return False
    for i in range(k):
        if _upper(p[i]) != <unsigned char>word[i]:
            return False
    return True


cdef object _address(const unsigned char *p, Py_ssize_t n):
    """The address of <local@domain> at p (n bytes), or None (reference: _address)."""
    cdef Py_ssize_t i, at = -1, end, label_start, label_len
    cdef bint prev_dot = True, numeric = True
    cdef unsigned char c
    if n < 5 or p[0] != 60 or p[n - 1] != 62:
        return None
    end = n - 1
    # local part: a dot-atom
    i = 1
    while i < end:
        c = p[i]
        if c == 64:  # @
            at = i
            break
        if c == 46:
            if prev_dot:
                return None
            prev_dot = True
        elif _CLASS[c] & 1:
            prev_dot = False
        else:
            return None
        i += 1
    if at < 0 or at == 1 or prev_dot:
        return None
    # domain: labels, one trailing dot allowed
    i = at + 1
    if end > i and p[end - 1] == 46:
        end -= 1
    if end <= i or end - i > 255:
        return None
    label_start = i
    while i <= end:
        if i == end or p[i] == 46:
            label_len = i - label_start
            if label_len == 0 or label_len > 63:
                return None
            if p[label_start] == 45 or p[i - 1] == 45:
                return None
            label_start = i + 1
        else:
            c = p[i]
            if not _CLASS[c] & 2:
                return None
            if not _CLASS[c] & 4:
                numeric = False
        i += 1
    if numeric:
        return None
    return PyUnicode_DecodeASCII(<const char *>p + 1, n - 2, NULL)


def quick_command(const unsigned char[:] verb not None, const unsigned char[:] args not None):
    """Return (kind, text, size) for a common command in its simple form, else None."""
    cdef Py_ssize_t vn = verb.shape[0], n = args.shape[0]
    return quick_ptr(&verb[0] if vn else NULL, vn, &args[0] if n else NULL, n)


cdef object quick_ptr(const unsigned char *v, Py_ssize_t vn, const unsigned char *a,
                      Py_ssize_t n):
    """quick_command() of the vn verb bytes at v (upper case) and the n argument bytes
    at a (ServerConnection's entry: no buffer objects)."""
    cdef Py_ssize_t i, sp = -1
    cdef long long size = -1
    cdef int kind
    cdef object address
    if vn != 4:
        return None
    if n == 0:
        a = NULL
    if v[0] == 68 and v[1] == 65 and v[2] == 84 and v[3] == 65:
        kind = DATA
    elif v[0] == 82 and v[1] == 83 and v[2] == 69 and v[3] == 84:
        kind = RSET
    elif v[0] == 78 and v[1] == 79 and v[2] == 79 and v[3] == 80:
        kind = NOOP
    elif v[0] == 81 and v[1] == 85 and v[2] == 73 and v[3] == 84:
        kind = QUIT
    elif ((v[0] == 72 and v[1] == 69) or (v[0] == 69 and v[1] == 72)) and v[2] == 76 \
            and v[3] == 79:
        if n == 0:
            return None
        for i in range(n):
            if a[i] < 0x21 or a[i] > 0x7E:
                return None
        return (HELO if v[0] == 72 else EHLO, PyUnicode_DecodeASCII(<const char *>a, n, NULL),
                -1)
    elif v[0] == 77 and v[1] == 65 and v[2] == 73 and v[3] == 76:
        if not _keyword(a, n, b"FROM:", 5):
            return None
        for i in range(5, n):
            if a[i] == 32:
                sp = i
                break
        if sp >= 0:
            if not _keyword(a + sp + 1, n - sp - 1, b"SIZE=", 5):
                return None
            i = sp + 6
            if i == n or n - i > 18:
                return None
            size = 0
            while i < n:
                if not _CLASS[a[i]] & 4:
                    return None
                size = size * 10 + (a[i] - 48)
                i += 1
            address = _address(a + 5, sp - 5)
        else:
            address = _address(a + 5, n - 5)
        return None if address is None else (MAIL, address, size)
    elif v[0] == 82 and v[1] == 67 and v[2] == 80 and v[3] == 84:
        if not _keyword(a, n, b"TO:", 3):
            return None
        address = _address(a + 3, n - 3)
        return None if address is None else (RCPT, address, -1)
    else:
        return None
    return (kind, "", -1) if n == 0 else None
