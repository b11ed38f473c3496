"""Attribute-list frame codec: the pure-Python reference.

Postfix counterpart: src/util/attr_print0.c, attr_scan0.c (same idea, different bytes)

This is the specification of ext/fastpost/mail/_attr_c.pyx and the oracle of the
differential tests; production code imports fastpost.mail.attr, never this module.
The wire format is described in fastpost.mail.attrtype.

    encode(attrs)            -> one frame (header + body) for a dict of attributes
    encode_many(list)        -> the frames of several dicts, concatenated (pipelining)
    decode(body, max_depth)  -> the dict of one frame body
    FrameDecoder(max_frame, max_depth)
        feed(data)                      append received bytes
        get_buffer(n) / buffer_updated(n)   the same without a copy (BufferedProtocol)
        next_frame()                    the next complete frame's dict, or None
        buffered                        bytes held that are not yet a whole frame

Diagnostics: AttrError for malformed input (see attrtype); TypeError for a value that
cannot be encoded; OverflowError for an int outside 64 bits; ValueError for a frame
body longer than the 4-byte length can express.
"""

from fastpost.mail.attrtype import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    MAX_FRAME_LIMIT,
    TAG_BYTES,
    TAG_DICT,
    TAG_INT,
    TAG_LIST,
    TAG_STR,
    AttrError,
)

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1
_MIN_BUFFER = 65536  # the smallest free space get_buffer() offers


# -- encoding -----------------------------------------------------------------------


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_value(out: bytearray, value, name: str) -> None:
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogateescape")
        out.append(TAG_STR)
        _put_varint(out, len(data))
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(TAG_BYTES)
        _put_varint(out, len(data))
        out += data
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise OverflowError(f"attribute {name!r}: integer out of 64-bit range")
        out.append(TAG_INT)
        _put_varint(out, ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)
    elif isinstance(value, dict):
        out.append(TAG_DICT)
        _put_attrs(out, value)
    elif isinstance(value, (list, tuple)):
        out.append(TAG_LIST)
        _put_varint(out, len(value))
        for item in value:
            _put_value(out, item, name)
    else:
        raise TypeError(f"attribute {name!r}: cannot encode a value of type {type(value).__name__}")


def _put_attrs(out: bytearray, attrs: dict) -> None:
    _put_varint(out, len(attrs))
    for name, value in attrs.items():
        if not isinstance(name, str):
            raise TypeError(f"attribute name must be str, not {type(name).__name__}")
        data = name.encode("utf-8", "surrogateescape")
        _put_varint(out, len(data))
        out += data
        _put_value(out, value, name)


def _put_frame(out: bytearray, attrs: dict) -> None:
    if not isinstance(attrs, dict):
        raise TypeError(f"an attribute list must be a dict, not {type(attrs).__name__}")
    start = len(out)
    out += b"\0\0\0\0"
    # The top level is a bare sequence of attributes (no count): a frame is a list.
    for name, value in attrs.items():
        if not isinstance(name, str):
            raise TypeError(f"attribute name must be str, not {type(name).__name__}")
        data = name.encode("utf-8", "surrogateescape")
        _put_varint(out, len(data))
        out += data
        _put_value(out, value, name)
    size = len(out) - start - HEADER_SIZE
    if size > MAX_FRAME_LIMIT:
        raise ValueError(f"attribute frame of {size} bytes is too large to send")
    out[start : start + HEADER_SIZE] = size.to_bytes(HEADER_SIZE, "big")


def encode(attrs: dict) -> bytes:
    """Return one frame (4-byte length + body) carrying the attributes of ``attrs``."""
    out = bytearray()
    _put_frame(out, attrs)
    return bytes(out)


def encode_many(frames) -> bytes:
    """Return the frames of several attribute dicts, concatenated in order."""
    out = bytearray()
    for attrs in frames:
        _put_frame(out, attrs)
    return bytes(out)


# -- decoding -----------------------------------------------------------------------


def _get_varint(buf, pos: int, end: int) -> tuple[int, int]:
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise AttrError(f"truncated attribute frame at offset {start}")
        byte = buf[pos]
        pos += 1
        if shift == 63 and byte > 1:
            raise AttrError(f"varint too long at offset {start}")
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _get_text(buf, pos: int, end: int) -> tuple[str, int]:
    n, pos = _get_varint(buf, pos, end)
    if n > end - pos:
        raise AttrError(f"truncated attribute frame at offset {pos}")
    return bytes(buf[pos : pos + n]).decode("utf-8", "surrogateescape"), pos + n


def _get_value(buf, pos: int, end: int, depth: int, max_depth: int):
    if pos >= end:
        raise AttrError(f"truncated attribute frame at offset {pos}")
    tag = buf[pos]
    if tag == TAG_STR:
        return _get_text(buf, pos + 1, end)
    if tag == TAG_BYTES:
        n, pos = _get_varint(buf, pos + 1, end)
        if n > end - pos:
            raise AttrError(f"truncated attribute frame at offset {pos}")
        return bytes(buf[pos : pos + n]), pos + n
    if tag == TAG_INT:
        z, pos = _get_varint(buf, pos + 1, end)
        return (z >> 1) ^ -(z & 1), pos
    if tag == TAG_LIST or tag == TAG_DICT:
        if depth >= max_depth:
            raise AttrError(f"attribute nesting deeper than {max_depth} at offset {pos}")
        count, pos = _get_varint(buf, pos + 1, end)
        if tag == TAG_DICT:
            return _get_attrs(buf, pos, end, count, depth + 1, max_depth)
        if count > end - pos:
            raise AttrError(f"truncated attribute frame at offset {pos}")
        items = []
        for _ in range(count):
            item, pos = _get_value(buf, pos, end, depth + 1, max_depth)
            items.append(item)
        return items, pos
    raise AttrError(f"bad attribute value type 0x{tag:02x} at offset {pos}")


def _get_attrs(buf, pos: int, end: int, count: int, depth: int, max_depth: int):
    """Decode count attributes (count < 0: until end); return (dict, pos)."""
    out = {}
    if count > end - pos:
        raise AttrError(f"truncated attribute frame at offset {pos}")
    while count < 0 and pos < end or count > 0:
        at = pos
        name, pos = _get_text(buf, pos, end)
        if name in out:
            raise AttrError(f"duplicate attribute name {name!r} at offset {at}")
        out[name], pos = _get_value(buf, pos, end, depth, max_depth)
        count -= 1 if count > 0 else 0
    return out, pos


def decode(body, max_depth: int = DEFAULT_MAX_DEPTH) -> dict:
    """Return the attributes of one frame body (without its 4-byte length)."""
    view = memoryview(body).cast("B")
    attrs, _ = _get_attrs(view, 0, len(view), -1, 0, max_depth)
    return attrs


class FrameDecoder:
    """Incremental decoder: bytes in, one attribute dict per complete frame out.

    Bounded: a frame whose length exceeds ``max_frame`` raises AttrError (fatal) as
    soon as its header arrives, before its body is buffered.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = DEFAULT_MAX_DEPTH):
        if max_frame < 0 or max_frame > MAX_FRAME_LIMIT:
            raise ValueError("max_frame out of range")
        if max_depth < 0:
            raise ValueError("max_depth must be >= 0")
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._buf = bytearray()
        self._start = 0  # first unconsumed byte
        self._end = 0  # end of received data
        self._broken = None  # the fatal error, once the stream is out of sync

    def _reserve(self, size: int) -> None:
        """Make room for at least size more bytes after _end."""
        if len(self._buf) - self._end >= size:
            return
        pending = self._end - self._start
        new = bytearray(max(pending + size, 2 * pending, _MIN_BUFFER))
        new[:pending] = self._buf[self._start : self._end]
        self._buf = new
        self._start, self._end = 0, pending

    def get_buffer(self, sizehint: int = -1):
        """Return a writable memoryview for received bytes (asyncio BufferedProtocol)."""
        self._reserve(max(sizehint, _MIN_BUFFER))
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """Record that nbytes were written into the last get_buffer() view."""
        if nbytes < 0 or nbytes > len(self._buf) - self._end:
            raise ValueError("buffer_updated: bad byte count")
        self._end += nbytes

    def feed(self, data) -> None:
        """Append received bytes (copying them)."""
        n = len(data)
        if n:
            self._reserve(n)
            self._buf[self._end : self._end + n] = data
            self._end += n

    def next_frame(self):
        """Return the next complete frame's attributes, or None when none is complete.

        A malformed body raises AttrError after consuming its frame (the next call
        continues with the next frame); a length over max_frame raises a fatal
        AttrError now and on every later call.
        """
        if self._broken is not None:
            raise AttrError(self._broken, True)
        avail = self._end - self._start
        if avail < HEADER_SIZE:
            return None
        size = int.from_bytes(self._buf[self._start : self._start + HEADER_SIZE], "big")
        if size > self.max_frame:
            self._broken = f"attribute frame length {size} exceeds the limit {self.max_frame}"
            raise AttrError(self._broken, True)
        if avail < HEADER_SIZE + size:
            return None
        body_start = self._start + HEADER_SIZE
        self._start = body_start + size
        view = memoryview(self._buf)[body_start : self._start]
        try:
            attrs, _ = _get_attrs(view, 0, size, -1, 0, self.max_depth)
        finally:
            view.release()
            if self._start == self._end:
                self._start = self._end = 0
        return attrs

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return self._end - self._start
