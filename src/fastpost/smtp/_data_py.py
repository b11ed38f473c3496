"""Message-content kernels: the pure-Python reference.

Postfix counterpart: the DATA and BDAT loops of src/smtpd/smtpd.c (smtpd_proto:
dot-unstuffing, the end-of-data test, smtpd_forbid_bare_newline, the message size
count), as observed on Postfix 3.7.11 (docs/smtp.md).

This is the specification of ext/fastpost/smtp/_data_c.pyx and the oracle of its
differential tests; production code imports fastpost.smtp.data.

DotDecoder decodes DATA content as it arrives, across any split into reads:

    feed(data) -> (output, consumed, done)

``output`` is content with every line ending CR LF and dot-stuffing removed;
``consumed`` is how many bytes of ``data`` were used (all of them, unless ``done``:
then it ends just after the terminator and the rest belongs to the next command).
Lines end at LF; a LF without CR before it is a *bare LF*: the line is delivered with
CR LF and ``bare_lf`` counts it. A CR not followed by LF is content.

End of data (RFC 5321 4.1.1.4, and Postfix's smuggling defence): a line that is
exactly "." ends the message

    strict=True  (smtpd_forbid_bare_newline = normalize, note or reject) only when it
                 ends in CR LF *and* the line before it ended in CR LF (the DATA
                 command line counts as the first "line before"). Any other lone "."
                 line - ".<LF>", "<LF>.<CR><LF>" - does not end the message and is
                 dropped from the content, as Postfix drops it. So "\\n.\\n",
                 "\\n.\\r\\n", "\\r\\n.\\n", "\\r.\\r", "\\r\\r\\n.\\r\\r\\n" never end DATA.
    strict=False (smtpd_forbid_bare_newline = no) any lone "." line ends the message,
                 whatever its line ending (Postfix's historical behaviour; vulnerable
                 to SMTP smuggling, which is why it is not the default).

Other lines starting with "." lose that first dot (RFC 5321 4.5.2).

``raw_lines`` counts the input bytes consumed through the end of the last complete
line (what Postfix reports in "lost connection after DATA (N bytes)").

Size: ``size`` counts every output byte the message has, including those past
``size_limit``; the output itself stops at exactly ``size_limit`` bytes (0: no limit)
and ``too_big`` is set. The caller keeps feeding until ``done`` and then answers 552.

ChunkDecoder does the same for BDAT content, which is not dot-stuffed and has no
terminator: feed(data) -> output (everything is consumed); finish() -> output at the
end of the LAST chunk (a final line without LF gets CR LF, as Postfix stores it).

Diagnostics: ValueError when fed after ``done`` or finished.
"""

from __future__ import annotations

# Decoder states (the compiled kernel uses the same numbers).
BOL = 0  # at the beginning of a line
DOT = 1  # "." seen at the beginning of a line
DOTCR = 2  # ".<CR>" seen at the beginning of a line
MID = 3  # inside a line
MIDCR = 4  # inside a line, a CR held back (it may start CR LF)
DONE = 5


class DotDecoder:
    """Streaming DATA decoder (see the module docstring)."""

    def __init__(self, size_limit: int = 0, strict: bool = True, prev_crlf: bool = True):
        if size_limit < 0:
            raise ValueError("size_limit must be >= 0")
        self.size_limit = size_limit
        self.strict = strict
        self.size = 0  # bytes of content, also those past the limit
        self.bare_lf = 0  # lines that ended in a bare LF
        self.too_big = False
        self.raw_lines = 0  # input bytes consumed through the last complete line
        self._raw = 0  # input bytes consumed by earlier feed() calls
        self._prev_crlf = prev_crlf
        self._state = BOL
        self._out: list[bytes] = []

    @property
    def done(self) -> bool:
        """True once the terminator was seen."""
        return self._state == DONE

    def _emit(self, piece: bytes) -> None:
        size = self.size
        self.size = size + len(piece)
        limit = self.size_limit
        if not limit:
            self._out.append(piece)
        elif self.size <= limit:
            self._out.append(piece)
        else:
            if size < limit:
                self._out.append(piece[: limit - size])
            self.too_big = True

    def feed(self, data) -> tuple[bytes, int, bool]:
        """Decode data; return (output, bytes of data consumed, end of data seen)."""
        if self._state == DONE:
            raise ValueError("DotDecoder fed after the end of data")
        data = bytes(data)
        n = len(data)
        i = 0
        state = self._state
        emit = self._emit
        while i < n:
            if state == MID:
                lf = data.find(b"\n", i)
                if lf < 0:
                    if data[n - 1] == 0x0D:
                        if n - 1 > i:
                            emit(data[i: n - 1])
                        state = MIDCR
                    else:
                        emit(data[i:n])
                    i = n
                    break
                if lf > i and data[lf - 1] == 0x0D:
                    emit(data[i: lf + 1])
                    self._prev_crlf = True
                else:
                    emit(data[i:lf] + b"\r\n")
                    self.bare_lf += 1
                    self._prev_crlf = False
                i = lf + 1
                self.raw_lines = self._raw + i
                state = BOL
                continue
            c = data[i]
            if state == BOL:
                if c == 0x2E:
                    state = DOT
                    i += 1
                else:
                    state = MID
            elif state == DOT:
                if c == 0x0A:
                    i += 1
                    self.raw_lines = self._raw + i
                    if not self.strict:
                        state = DONE
                        break
                    self.bare_lf += 1
                    self._prev_crlf = False
                    state = BOL
                elif c == 0x0D:
                    state = DOTCR
                    i += 1
                else:
                    state = MID
            elif state == DOTCR:
                if c == 0x0A:
                    i += 1
                    self.raw_lines = self._raw + i
                    if not self.strict or self._prev_crlf:
                        state = DONE
                        break
                    self._prev_crlf = True
                    state = BOL
                else:
                    emit(b"\r")
                    state = MID
            else:  # MIDCR
                if c == 0x0A:
                    emit(b"\r\n")
                    self._prev_crlf = True
                    i += 1
                    self.raw_lines = self._raw + i
                    state = BOL
                else:
                    emit(b"\r")
                    state = MID
        self._state = state
        self._raw += i
        out = b"".join(self._out)
        self._out.clear()
        return out, i, state == DONE


class ChunkDecoder:
    """Streaming BDAT content normaliser (see the module docstring)."""

    def __init__(self, size_limit: int = 0):
        if size_limit < 0:
            raise ValueError("size_limit must be >= 0")
        self.size_limit = size_limit
        self.size = 0
        self.bare_lf = 0
        self.too_big = False
        self._state = BOL  # BOL, MID or MIDCR (DONE after finish)
        self._out: list[bytes] = []

    _emit = DotDecoder._emit

    def feed(self, data) -> bytes:
        """Normalise data (all of it is consumed); return the output."""
        if self._state == DONE:
            raise ValueError("ChunkDecoder fed after finish()")
        data = bytes(data)
        n = len(data)
        i = 0
        state = self._state
        emit = self._emit
        while i < n:
            if state == MIDCR:
                if data[i] == 0x0A:
                    emit(b"\r\n")
                    i += 1
                    state = BOL
                    continue
                emit(b"\r")
                state = MID
            lf = data.find(b"\n", i)
            if lf < 0:
                if data[n - 1] == 0x0D:
                    if n - 1 > i:
                        emit(data[i: n - 1])
                    state = MIDCR
                else:
                    emit(data[i:n])
                    state = MID
                break
            if lf > i and data[lf - 1] == 0x0D:
                emit(data[i: lf + 1])
            else:
                emit(data[i:lf] + b"\r\n")
                self.bare_lf += 1
            i = lf + 1
            state = BOL
        self._state = state
        out = b"".join(self._out)
        self._out.clear()
        return out

    def finish(self) -> bytes:
        """Return the output that ends the message (CR LF after a final partial line)."""
        if self._state == DONE:
            raise ValueError("ChunkDecoder finished twice")
        if self._state == MIDCR:
            self._emit(b"\r\r\n")
        elif self._state == MID:
            self._emit(b"\r\n")
        self._state = DONE
        out = b"".join(self._out)
        self._out.clear()
        return out
