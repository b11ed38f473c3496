"""Attribute-list wire format: value tags, limits and the protocol error.

Postfix counterpart: src/util/attr.h (ATTR_TYPE_*), src/util/attr_scan0.c

fastpost's inter-daemon requests and replies are Postfix-style named attribute lists
(``request=resolve, sender=..., address=...``), carried in length-prefixed binary
frames. The codec is fastpost.mail.attr (compiled kernel ext/fastpost/mail/_attr_c.pyx,
reference _attr_py.py); this module holds what both share, so that either can raise the
same exception and callers can catch it without importing a kernel.

    frame  = length body        length: 4 bytes, big-endian, = len(body) <= max_frame
    body   = *attr              a top-level attribute list (may be empty)
    attr   = name value         name: varint n, then n bytes of UTF-8
    value  = "s" varint n, n bytes      str (UTF-8; surrogateescape round-trips 8-bit)
           | "b" varint n, n bytes      bytes
           | "i" zigzag varint          int in -2**63 .. 2**63-1 (bool encodes as int)
           | "l" varint count, values   list (a list of values, any of these types)
           | "d" varint count, attrs    nested attribute list (dict)

varint: unsigned LEB128 (low 7 bits first, high bit = more follows), at most 10 bytes.

Diagnostics: AttrError (a ValueError) for a malformed frame: truncated body, bad type
tag, overlong varint, duplicate name, nesting deeper than the limit, or a frame longer
than the receiver's limit. After AttrError for a bad *body*, the frame has been consumed
and the stream is still in sync; after one for a bad *length* it is not, and the
decoder refuses further input (``AttrError.fatal`` is True).
"""

TAG_STR = ord("s")  # UTF-8 text
TAG_BYTES = ord("b")  # raw bytes
TAG_INT = ord("i")  # signed 64-bit integer, zigzag varint
TAG_LIST = ord("l")  # list of values
TAG_DICT = ord("d")  # nested attribute list

HEADER_SIZE = 4  # bytes of the big-endian frame length
MAX_FRAME_LIMIT = 0xFFFFFFFF  # what the length field can express

#: Defaults for receivers: a frame carries at most this many body bytes, and lists/dicts
#: nest at most this deep (a delivery request's recipient list is depth 2).
DEFAULT_MAX_FRAME = 1 << 24
DEFAULT_MAX_DEPTH = 16


class AttrError(ValueError):
    """A malformed attribute frame; ``fatal`` says the stream is out of sync."""

    def __init__(self, text: str, fatal: bool = False):
        super().__init__(text)
        self.fatal = fatal
