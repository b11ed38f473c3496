"""Attribute-list frame codec (selector): what daemons send each other.

Postfix counterpart: src/util/attr_print0.c, attr_scan0.c, attr.h

Requests and replies between fastpost daemons are named attribute lists, the way
Postfix's are (``request=resolve, sender=..., address=...``), each carried in one
length-prefixed binary frame. Values are str, bytes, int, lists of values and nested
attribute lists (dicts), e.g. a delivery request's recipients. The wire format is in
fastpost.mail.attrtype; connections, timeouts and the server's ``protocol=<name>``
greeting are fastpost.mail.ipc's.

    encode(attrs) -> bytes            one frame
    encode_many([attrs, ...]) -> bytes  several frames (pipelined requests)
    decode(body, max_depth) -> dict   one frame body
    FrameDecoder(max_frame, max_depth)  incremental; feed()/get_buffer()+buffer_updated(),
                                      next_frame() -> dict | None

Parameters: none read here; receivers pass their bounds (max_frame, max_depth).
Diagnostics: AttrError for malformed input (``fatal`` when the stream is out of sync);
TypeError/OverflowError for values that cannot be encoded.
Fast path: ext/fastpost/mail/_attr_c.pyx; reference: _attr_py.py
"""

from fastpost._accel import select
from fastpost.mail.attrtype import DEFAULT_MAX_DEPTH, DEFAULT_MAX_FRAME, AttrError

_impl = select("fastpost.mail._attr_c", "fastpost.mail._attr_py")

encode = _impl.encode
encode_many = _impl.encode_many
decode = _impl.decode
FrameDecoder = _impl.FrameDecoder

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_FRAME",
    "AttrError",
    "FrameDecoder",
    "decode",
    "encode",
    "encode_many",
]
