# cython: language_level=3
"""A minimal binding to Debian's libpcre2-8: compile a pattern, match bytes.

Reference and specification: src/fastpost/mail/maps/_pcre2_py.py (the same API over
ctypes). This is the library C Postfix's pcre: tables use, so fastpost's pcre: tables
have exactly PCRE's semantics. Byte strings only (no UTF mode), as Postfix 3.7 runs
it. No JIT: measured here, JIT made one pattern 2.7x faster but a scan over 1,000
JIT-compiled patterns 1.7x slower (code footprint), and table scans are what pcre:
tables do. RuleSet runs such a scan (first match wins, if/endif) in C.
No I/O; errors are raised as fastpost.mail.maps.pcre_error.PcreError.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint8_t

from fastpost.mail.maps.pcre_error import PcreError

cdef extern from *:
    """
    #define PCRE2_CODE_UNIT_WIDTH 8
    #include <pcre2.h>
    """
    ctypedef struct pcre2_code:
        pass
    ctypedef struct pcre2_match_data:
        pass
    ctypedef const uint8_t *PCRE2_SPTR
    pcre2_code *pcre2_compile(PCRE2_SPTR, size_t, uint32_t, int *, size_t *, void *)
    void pcre2_code_free(pcre2_code *)
    pcre2_match_data *pcre2_match_data_create_from_pattern(const pcre2_code *, void *)
    void pcre2_match_data_free(pcre2_match_data *)
    int pcre2_match(const pcre2_code *, PCRE2_SPTR, size_t, size_t, uint32_t,
                    pcre2_match_data *, void *) nogil
    size_t *pcre2_get_ovector_pointer(pcre2_match_data *)
    int pcre2_get_error_message(int, uint8_t *, size_t)
    int pcre2_pattern_info(const pcre2_code *, uint32_t, void *)

    int PCRE2_INFO_CAPTURECOUNT
    size_t PCRE2_UNSET

CASELESS = 0x00000008
DOLLAR_ENDONLY = 0x00000010
DOTALL = 0x00000020
EXTENDED = 0x00000080
MULTILINE = 0x00000400
UNGREEDY = 0x00040000
ANCHORED = 0x80000000


def error_message(int code):
    """Return PCRE2's text for an error code."""
    cdef uint8_t buf[256]
    cdef int n = pcre2_get_error_message(code, buf, sizeof(buf))
    if n < 0:
        return f"error {code}"
    return (<char *>buf)[:n].decode("ascii", "replace")


cdef class Pattern:
    """A compiled PCRE2 pattern (bytes)."""

    cdef pcre2_code *code              # the compiled pattern
    cdef pcre2_match_data *md          # match data sized for this pattern
    cdef readonly int groups           # number of capturing groups

    def __cinit__(self):
        self.code = NULL
        self.md = NULL

    def __init__(self, bytes pattern, unsigned int options=0):
        cdef int err = 0
        cdef size_t offset = 0
        cdef uint32_t count = 0
        self.code = pcre2_compile(<PCRE2_SPTR>PyBytes_AS_STRING(pattern),
                                  <size_t>PyBytes_GET_SIZE(pattern), options, &err, &offset, NULL)
        if self.code == NULL:
            raise PcreError(error_message(err), offset)
        self.md = pcre2_match_data_create_from_pattern(self.code, NULL)
        if self.md == NULL:
            raise MemoryError()
        pcre2_pattern_info(self.code, PCRE2_INFO_CAPTURECOUNT, &count)
        self.groups = count

    def __dealloc__(self):
        if self.md != NULL:
            pcre2_match_data_free(self.md)
        if self.code != NULL:
            pcre2_code_free(self.code)

    cdef int _exec(self, const char *s, size_t n) except? -2:
        """Run the pattern; return PCRE2's rc (-1: no match); raise on other errors."""
        cdef int rc = pcre2_match(self.code, <PCRE2_SPTR>s, n, 0, 0, self.md, NULL)
        if rc < -1:
            raise PcreError(error_message(rc), -1)
        return rc

    cdef tuple _groups(self, bytes subject, int rc):
        cdef const char *s = PyBytes_AS_STRING(subject)
        cdef size_t *ov = pcre2_get_ovector_pointer(self.md)
        cdef int i
        out = []
        for i in range(self.groups + 1):
            if i < rc and ov[2 * i] != PCRE2_UNSET:
                out.append(s[ov[2 * i]:ov[2 * i + 1]])
            else:
                out.append(None)
        return tuple(out)

    def match(self, bytes subject):
        """Return (group0, group1, ...) with None for unset groups, or None: no match.

        PcreError for a matching error other than "no match" (e.g. a resource limit).
        """
        cdef const char *s = PyBytes_AS_STRING(subject)
        cdef int rc = self._exec(s, <size_t>PyBytes_GET_SIZE(subject))
        cdef size_t *ov
        cdef int i
        if rc == -1:
            return None
        if rc < 0:
            raise PcreError(error_message(rc), -1)
        ov = pcre2_get_ovector_pointer(self.md)
        out = []
        for i in range(self.groups + 1):
            if i < rc and ov[2 * i] != PCRE2_UNSET:
                out.append(s[ov[2 * i]:ov[2 * i + 1]])
            else:
                out.append(None)
        return tuple(out)


cdef class RuleSet:
    """An ordered table of patterns evaluated in C: the first rule that matches wins.

    ``program`` is a list of (Pattern, negate, jump): jump is -1 for a rule, and for
    an "if" block the index just after its "endif" (the block's rules follow it).
    """

    cdef list patterns          # Pattern per program step
    cdef list negates           # bool per step
    cdef list jumps             # int per step (-1: a rule)
    cdef Py_ssize_t n           # number of steps

    def __init__(self, list program):
        self.patterns = [p for p, _, _ in program]
        self.negates = [bool(neg) for _, neg, _ in program]
        self.jumps = [int(j) for _, _, j in program]
        self.n = len(program)
        for p in self.patterns:
            if not isinstance(p, Pattern):
                raise TypeError("RuleSet needs Pattern objects")

    def first_match(self, bytes subject):
        """Return (step index, groups) of the first matching rule, or None.

        groups is () for a negated rule (nothing was captured).
        """
        cdef const char *s = PyBytes_AS_STRING(subject)
        cdef size_t length = <size_t>PyBytes_GET_SIZE(subject)
        cdef Py_ssize_t i = 0, jump
        cdef Pattern pat
        cdef int rc
        cdef bint hit, neg
        while i < self.n:
            pat = <Pattern>self.patterns[i]
            neg = self.negates[i]
            jump = self.jumps[i]
            rc = pat._exec(s, length)
            hit = (rc != -1) != neg
            if jump >= 0:
                i = i + 1 if hit else jump
                continue
            if hit:
                return i, (() if neg else pat._groups(subject, rc))
            i += 1
        return None
