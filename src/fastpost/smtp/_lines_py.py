"""Command-line kernel: the pure-Python reference.

Postfix counterpart: src/global/smtp_stream.c (smtp_get with a length bound) and the
verb lookup of src/smtpd/smtpd.c.

This is the specification of ext/fastpost/smtp/_lines_c.pyx and the oracle of its
differential tests; production code imports fastpost.smtp.lines.

LineReader is the receive buffer of one SMTP server (or client) connection:

    feed(data)        append received bytes (copied)
    read_line()       the next complete line as (bytes without its terminator, flags),
                      or None when no complete line is buffered
    read_command()    the same, split into (VERB upper-cased, argument bytes, flags)
    take(n)           up to n raw bytes (BDAT chunks); take_all() everything
    clear()           drop everything buffered (plaintext after STARTTLS); returns count
    buffered          number of bytes held

A line ends at LF. CR LF is the standard ending; a LF without a CR before it sets
BARE_LF. The CR of a CR LF is removed; any other CR stays in the line.

Bounds: a line whose content (without the ending) is longer than ``limit`` is
reported truncated to ``limit`` bytes with OVERLONG set (and never BARE_LF: whether
its ending was seen yet depends on how the bytes arrived), and the rest of it is
discarded as it arrives, never buffered. The buffer itself holds what one read
delivered plus an incomplete line of at most ``limit + 1`` bytes.

Verb: the leading run of non-white-space bytes (space, tab, CR, VT, FF), upper-cased
(ASCII); arguments: the rest after that white space, with trailing white space kept
(callers strip what they need). An empty or all-white-space line gives verb b"".

Diagnostics: ValueError for a negative limit or size.
"""

from __future__ import annotations

BARE_LF = 1  # the line ended in LF without CR
OVERLONG = 2  # the line was longer than the limit and was truncated

_WS = b" \t\r\x0b\x0c"


def split_command(line: bytes) -> tuple[bytes, bytes]:
    """Return (VERB upper-cased, arguments) of a command line."""
    n = len(line)
    i = 0
    while i < n and line[i] in _WS:
        i += 1
    j = i
    while j < n and line[j] not in _WS:
        j += 1
    verb = line[i:j].upper()
    while j < n and line[j] in _WS:
        j += 1
    return bytes(verb), bytes(line[j:])


class LineReader:
    """Bounded, CRLF-aware receive buffer (see the module docstring)."""

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self._buf = bytearray()
        self._pos = 0  # read offset into _buf
        self._skipping = False  # discarding the rest of an overlong line

    @property
    def buffered(self) -> int:
        """Return the number of bytes held and not yet read."""
        return len(self._buf) - self._pos

    def feed(self, data) -> None:
        """Append received bytes (copied)."""
        if not data:
            return
        if self._skipping:
            data = bytes(data)
            lf = data.find(b"\n")
            if lf < 0:
                return
            self._skipping = False
            data = data[lf + 1:]
            if not data:
                return
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def _compact(self) -> None:
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 4096 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0

    def read_line(self):
        """Return (line, flags) for the next complete line, or None."""
        buf = self._buf
        pos = self._pos
        lf = buf.find(b"\n", pos)
        limit = self.limit
        if lf < 0:
            if len(buf) - pos >= limit + 2:
                line = bytes(buf[pos: pos + limit])
                self._pos = len(buf)
                self._skipping = True
                self._compact()
                return line, OVERLONG
            return None
        flags = 0
        end = lf
        if end > pos and buf[end - 1] == 0x0D:
            end -= 1
        else:
            flags = BARE_LF
        if end - pos > limit:
            # The ending of an overlong line is not reported: whether it was seen
            # depends on how the bytes arrived.
            line = bytes(buf[pos: pos + limit])
            flags = OVERLONG
        else:
            line = bytes(buf[pos:end])
        self._pos = lf + 1
        self._compact()
        return line, flags

    def read_command(self):
        """Return (VERB, arguments, flags) for the next complete line, or None."""
        got = self.read_line()
        if got is None:
            return None
        line, flags = got
        verb, args = split_command(line)
        return verb, args, flags

    def take(self, n: int) -> bytes:
        """Return up to n buffered bytes, raw."""
        if n < 0:
            raise ValueError("n must be >= 0")
        pos = self._pos
        out = bytes(self._buf[pos: pos + n])
        self._pos = pos + len(out)
        self._compact()
        return out

    def take_all(self) -> bytes:
        """Return every buffered byte, raw, and empty the buffer."""
        out = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return out

    def clear(self) -> int:
        """Drop every buffered byte (and any overlong-line skipping); return the count."""
        n = len(self._buf) - self._pos
        self._buf.clear()
        self._pos = 0
        self._skipping = False
        return n

    def peek(self, n: int) -> bytes:
        """Return up to n buffered bytes without consuming them."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return bytes(self._buf[self._pos: self._pos + n])
