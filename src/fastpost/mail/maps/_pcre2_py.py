"""A minimal binding to libpcre2-8 over ctypes: the reference of _pcre2_c.pyx.

Same names, arguments and results as the compiled binding; used as the oracle of the
differential tests and in pure-Python debugging mode. Needs only the runtime library
(libpcre2-8-0, present on every Debian system).
"""

import ctypes
import ctypes.util

from fastpost.mail.maps.pcre_error import PcreError

CASELESS = 0x00000008
DOLLAR_ENDONLY = 0x00000010
DOTALL = 0x00000020
EXTENDED = 0x00000080
MULTILINE = 0x00000400
UNGREEDY = 0x00040000
ANCHORED = 0x80000000

_INFO_CAPTURECOUNT = 4
_UNSET = (1 << (8 * ctypes.sizeof(ctypes.c_size_t))) - 1

_lib = ctypes.CDLL(ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0")
_lib.pcre2_compile_8.restype = ctypes.c_void_p
_lib.pcre2_compile_8.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_int),
                                 ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
_lib.pcre2_code_free_8.argtypes = [ctypes.c_void_p]
_lib.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
_lib.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_lib.pcre2_match_data_free_8.argtypes = [ctypes.c_void_p]
_lib.pcre2_match_8.restype = ctypes.c_int
_lib.pcre2_match_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                               ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p,
                               ctypes.c_void_p]
_lib.pcre2_get_ovector_pointer_8.restype = ctypes.POINTER(ctypes.c_size_t)
_lib.pcre2_get_ovector_pointer_8.argtypes = [ctypes.c_void_p]
_lib.pcre2_get_error_message_8.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
_lib.pcre2_pattern_info_8.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]


def error_message(code):
    """Return PCRE2's text for an error code."""
    buf = ctypes.create_string_buffer(256)
    n = _lib.pcre2_get_error_message_8(code, buf, 256)
    if n < 0:
        return f"error {code}"
    return buf.raw[:n].decode("ascii", "replace")


class Pattern:
    """A compiled PCRE2 pattern (bytes)."""

    def __init__(self, pattern, options=0):
        self._code = None
        self._md = None
        err = ctypes.c_int(0)
        offset = ctypes.c_size_t(0)
        code = _lib.pcre2_compile_8(pattern, len(pattern), options, ctypes.byref(err),
                                    ctypes.byref(offset), None)
        if not code:
            raise PcreError(error_message(err.value), offset.value)
        self._code = code
        self._md = _lib.pcre2_match_data_create_from_pattern_8(code, None)
        count = ctypes.c_uint32(0)
        _lib.pcre2_pattern_info_8(code, _INFO_CAPTURECOUNT, ctypes.byref(count))
        self.groups = count.value

    def __del__(self):
        if self._md:
            _lib.pcre2_match_data_free_8(self._md)
        if self._code:
            _lib.pcre2_code_free_8(self._code)

    def match(self, subject):
        """Return (group0, group1, ...) with None for unset groups, or None: no match."""
        rc = _lib.pcre2_match_8(self._code, subject, len(subject), 0, 0, self._md, None)
        if rc == -1:
            return None
        if rc < 0:
            raise PcreError(error_message(rc), -1)
        ov = _lib.pcre2_get_ovector_pointer_8(self._md)
        out = []
        for i in range(self.groups + 1):
            if i < rc and ov[2 * i] != _UNSET:
                out.append(subject[ov[2 * i]:ov[2 * i + 1]])
            else:
                out.append(None)
        return tuple(out)


class RuleSet:
    """An ordered table of patterns: the first rule that matches wins.

    ``program`` is a list of (Pattern, negate, jump): jump is -1 for a rule, and for
    an "if" block the index just after its "endif" (the block's rules follow it).
    """

    def __init__(self, program):
        self.program = [(p, bool(neg), int(j)) for p, neg, j in program]
        for p, _, _ in self.program:
            if not isinstance(p, Pattern):
                raise TypeError("RuleSet needs Pattern objects")

    def first_match(self, subject):
        """Return (step index, groups) of the first matching rule, or None."""
        i = 0
        n = len(self.program)
        while i < n:
            pat, neg, jump = self.program[i]
            groups = pat.match(subject)
            hit = (groups is not None) != neg
            if jump >= 0:
                i = i + 1 if hit else jump
                continue
            if hit:
                return i, (() if neg else groups)
            i += 1
        return None
