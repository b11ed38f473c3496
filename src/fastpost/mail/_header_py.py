"""Message header section -> logical headers: the pure-Python reference.

Postfix counterpart: the header half of src/cleanup/cleanup_message.c with
src/global/is_header.c and src/global/header_opts.c (which header is which), the way
cleanup(8) joins a multi-line header and cuts it at header_size_limit.

This is the specification of ext/fastpost/mail/_header_c.pyx and the oracle of the
differential tests; production code imports fastpost.mail.header, never this module.

HeaderReader(kinds, header_size_limit) reads the start of a message, in chunks of
any size, and returns its logical headers:

  * a line ends at LF; one CR right before the LF is dropped;
  * a header starts with a name of printable ASCII other than ":" (0x21-0x7E),
    optional blanks (space, tab), then ":"; the blanks are removed (``X-A : b``
    becomes ``X-A: b``, flag SPACE_BEFORE_COLON);
  * a line that starts with a blank continues the header before it; the logical
    header is its lines joined with LF (no line ending at the end);
  * a logical header longer than ``header_size_limit`` bytes is cut there (flag
    TRUNCATED), the rest of it is read and dropped;
  * the section ends at the first line that is neither a header nor a continuation:
    an empty line, a line that does not look like a header, or a continuation with
    nothing before it. That line is the first line of the body: ``done`` becomes
    true, ``feed()`` returns the offset where the body starts in the chunk it was
    given, and ``rest`` holds the part of that line that came in earlier chunks.
    A name (with the blanks after it) longer than ``header_size_limit`` is not a
    header name: that line ends the section too;
  * ``finish()`` says there is no more input: the header being read is complete (an
    unterminated last line counts as a line).

Each logical header is a tuple ``(kind, name_length, text, flags)``: ``kind`` is
``kinds[lower-case name]`` (``kinds`` maps lower-case names as bytes to ints) or 0,
``name_length`` the length of the name in ``text``, ``flags`` a bit set of EIGHT_BIT
(a byte >= 0x80 anywhere in the text), TRUNCATED and SPACE_BEFORE_COLON. ``take()``
returns the headers completed so far and forgets them.

Memory: one logical header (at most header_size_limit bytes) and one undecided line
start (at most header_size_limit bytes) are held, whatever the input.
Diagnostics: ValueError for a header_size_limit below 1.
"""

EIGHT_BIT = 1
TRUNCATED = 2
SPACE_BEFORE_COLON = 4

_LINE_START = 0  # at the start of a line
_PENDING = 1  # reading the start of a line, header or not yet unknown
_IN_HEADER = 2  # inside a line that belongs to the current header
_DONE = 3


def _is_name_byte(b: int) -> bool:
    return 0x21 <= b <= 0x7E and b != 0x3A


class HeaderReader:
    """Split the header section of a message into logical headers (module docstring)."""

    def __init__(self, kinds: dict, header_size_limit: int):
        if header_size_limit < 1:
            raise ValueError("header_size_limit must be >= 1")
        self.kinds = kinds
        self.limit = header_size_limit
        self.done = False
        self.rest = b""
        self._out: list = []
        self._cur: bytearray | None = None  # the logical header being read
        self._name_len = 0
        self._flags = 0
        self._state = _LINE_START
        self._pend = bytearray()  # start of an undecided line
        self._cr = False  # the current line's last byte so far was a CR (held back)

    # -- helpers ----------------------------------------------------------------------

    def _add(self, data) -> None:
        """Append bytes to the current header, within the size limit."""
        cur = self._cur
        room = self.limit - len(cur)
        if room <= 0:
            if len(data):
                self._flags |= TRUNCATED
            return
        if len(data) > room:
            data = data[:room]
            self._flags |= TRUNCATED
        cur += data
        if any(b >= 0x80 for b in data):
            self._flags |= EIGHT_BIT

    def _close_header(self) -> None:
        cur = self._cur
        if cur is None:
            return
        name = bytes(cur[: self._name_len]).lower()
        self._out.append((self.kinds.get(name, 0), self._name_len, bytes(cur), self._flags))
        self._cur = None
        self._flags = 0
        self._name_len = 0

    def _decide(self, complete: bool) -> int:
        """Classify the pending line start: 1 header, 2 continuation, 0 body, -1 unknown."""
        p = self._pend
        n = len(p)
        if complete and n and p[n - 1] == 0x0D:
            n -= 1  # the CR of CR LF
        if n == 0:
            return 0 if complete else -1
        first = p[0]
        if first == 0x20 or first == 0x09:
            return 2 if self._cur is not None else 0
        i = 0
        while i < n and _is_name_byte(p[i]):
            i += 1
        if i == 0:
            return 0
        j = i
        while j < n and (p[j] == 0x20 or p[j] == 0x09):
            j += 1
        if j > self.limit:
            return 0
        if j < n:
            return 1 if p[j] == 0x3A else 0
        return 0 if complete else -1

    def _start_header(self) -> None:
        p = self._pend
        i = 0
        while _is_name_byte(p[i]):
            i += 1
        j = i
        while p[j] == 0x20 or p[j] == 0x09:
            j += 1
        self._close_header()
        self._cur = bytearray()
        self._flags = SPACE_BEFORE_COLON if j > i else 0
        self._name_len = i
        self._add(p[:i])
        self._line(p[j:])

    def _line(self, raw) -> None:
        """Append raw bytes of the current line (holding back a final CR)."""
        if not raw:
            return
        if self._cr:
            self._add(b"\r")
            self._cr = False
        if raw[-1] == 0x0D:
            raw = raw[:-1]
            self._cr = True
        self._add(raw)

    def _end_line(self) -> None:
        self._cr = False  # a CR right before the LF is not content

    # -- the API ----------------------------------------------------------------------

    def feed(self, data) -> int:
        """Read header lines from data; return how many bytes of it were used.

        Once ``done`` is true the rest of data (from the returned offset), after
        ``rest``, is the body.
        """
        if self.done:
            return 0
        data = bytes(data)
        pos = 0
        end = len(data)
        while pos < end:
            nl = data.find(b"\n", pos)
            complete = nl >= 0
            stop = nl if complete else end
            if self._state == _LINE_START or self._state == _PENDING:
                prior = bytes(self._pend)
                self._pend += data[pos:stop]
                kind = self._decide(complete)
                if kind < 0:
                    self._state = _PENDING
                    return end
                if kind == 0:
                    self._close_header()
                    self.rest = prior
                    self._pend = bytearray()
                    self._state = _DONE
                    self.done = True
                    return pos
                if kind == 1:
                    self._start_header()
                else:
                    self._add(b"\n")
                    self._line(self._pend)
                self._pend = bytearray()
                self._state = _IN_HEADER
            else:
                self._line(data[pos:stop])
            if not complete:
                return end
            self._end_line()
            self._state = _LINE_START
            pos = nl + 1
        return end

    def finish(self) -> None:
        """No more input: complete the last header (an unterminated line counts)."""
        if self.done:
            return
        if self._state == _PENDING:
            kind = self._decide(True) if self._pend else 0
            if kind == 0 and self._pend:
                self._close_header()
                self.rest = bytes(self._pend)
                self._pend = bytearray()
                self._state = _DONE
                self.done = True
                return
            if kind == 1:
                self._start_header()
            elif kind == 2:
                self._add(b"\n")
                self._line(self._pend)
            self._pend = bytearray()
        if self._cr:
            self._add(b"\r")  # a CR at the very end is content
            self._cr = False
        self._close_header()
        self._state = _DONE
        self.done = True

    def take(self) -> list:
        """Return the logical headers completed so far, and forget them."""
        out, self._out = self._out, []
        return out
