"""8BITMIME to 7bit: quoted-printable for a server that did not announce 8BITMIME.

Postfix counterpart: the output conversion of src/global/mime_state.c as the smtp
client uses it (RFC 6152 forbids 8-bit data to a server that lacks 8BITMIME).

``downgrade(content)`` takes a message (CR LF lines) and returns it with every leaf MIME
part whose Content-Transfer-Encoding is ``8bit`` re-encoded as quoted-printable, walking
multipart/* parts by their boundaries and message/* parts as nested messages, as
Postfix 3.7 does here (tests/smtpagent/test_mime7bit.py compares the bytes):

* the part's ``Content-Transfer-Encoding: 8bit`` header is dropped and
  ``Content-Transfer-Encoding: quoted-printable`` is added at the end of that part's
  header; other headers (8-bit ones too) are not touched;
* a part without a Content-Transfer-Encoding header, or a message without MIME headers,
  goes out as it is (Postfix converts only what says 8bit);
* the body is encoded line by line: bytes outside ``!``..``~``, and ``=``, become
  ``=XX``; a space or tab at the end of a line becomes ``=20`` / ``=09``; once a line
  holds 73 characters or more it is broken with a soft ``=`` before the next token
  (so an output line has at most 76 characters with its ``=``).

The caller decides when: the message is 8-bit (its queue file's encoding), the server
did not announce 8BITMIME, and disable_mime_output_conversion = no.
Parameters: none here. Diagnostics: none: a part that does not parse as MIME is sent
as it is.
"""

from __future__ import annotations

import re

from fastpost.daemons.smtp.headers import blocks as header_blocks
from fastpost.daemons.smtp.headers import name_of

__all__ = ["downgrade", "qp_line"]

_SAFE = [33 <= b <= 126 and b != 61 for b in range(256)]
_HEX = [f"={b:02X}".encode() for b in range(256)]
_LIMIT = 73  # a line this long gets its soft break "=" before the next token
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"]*)"|([^\s;]+))', re.I)


def qp_line(line: bytes) -> list[bytes]:
    """One body line (no line end) as quoted-printable output lines."""
    out: list[bytes] = []
    cur = bytearray()
    n = len(line)
    for i, b in enumerate(line):
        if _SAFE[b] or (b in (32, 9) and i < n - 1):
            tok = bytes((b,))
        else:
            tok = _HEX[b]
        if len(cur) >= _LIMIT:
            out.append(bytes(cur) + b"=")
            cur = bytearray()
        cur += tok
    out.append(bytes(cur))
    return out


def _field(blocks, name: bytes) -> bytes | None:
    for block in blocks:
        head, _, value = block[0].partition(b":")
        if head.strip().lower() == name:
            return b" ".join([value] + [x.strip() for x in block[1:]]).strip()
    return None


def _is_delimiter(line: bytes, boundaries: list[bytes]) -> bool:
    return line.startswith(b"--") and any(
        line[2:2 + len(b)] == b and line[2 + len(b):].rstrip(b" \t-") == b"" for b in boundaries)


def _entity(lines: list[bytes], i: int, out: list[bytes], outer: list[bytes]) -> int:
    """Copy (and convert) one entity starting at its header; return the index after it
    (at the enclosing boundary line or the end)."""
    blocks, body = header_blocks(lines, i)
    ctype = (_field(blocks, b"content-type") or b"text/plain").lower()
    cte = _field(blocks, b"content-transfer-encoding")
    cte = cte.split(b"(")[0].strip().lower() if cte is not None else None
    convert = cte == b"8bit" and not ctype.startswith((b"multipart/", b"message/"))
    for block in blocks:
        if convert and name_of(block) == b"content-transfer-encoding":
            continue
        out.extend(block)
    if convert:
        out.append(b"Content-Transfer-Encoding: quoted-printable")
    if body > i and lines[body - 1] == b"":
        out.append(b"")  # the empty line after the header
    j = body
    if ctype.startswith(b"multipart/"):
        m = _BOUNDARY.search(_field(blocks, b"content-type") or b"")
        if not m:
            return _copy(lines, j, out, outer, convert=False)
        mine = m.group(1) if m.group(1) is not None else m.group(2)
        inner = [mine] + outer
        # preamble, then part after part
        while j < len(lines) and not _is_delimiter(lines[j], inner):
            out.append(lines[j])
            j += 1
        while j < len(lines) and _is_delimiter(lines[j], [mine]):
            closing = lines[j][2 + len(mine):].startswith(b"--")
            out.append(lines[j])
            j += 1
            if closing:
                break
            j = _entity(lines, j, out, inner)
        return _copy(lines, j, out, outer, convert=False)  # the epilogue
    if ctype.startswith(b"message/"):
        return _entity(lines, j, out, outer)
    return _copy(lines, j, out, outer, convert=convert)


def _copy(lines, j, out, outer, *, convert: bool) -> int:
    while j < len(lines) and not _is_delimiter(lines[j], outer):
        if convert:
            out.extend(qp_line(lines[j]))
        else:
            out.append(lines[j])
        j += 1
    return j


def downgrade(content: bytes) -> bytes:
    """The message with its 8bit parts made quoted-printable (module docstring)."""
    lines = content.split(b"\r\n")
    last_eol = lines and lines[-1] == b""
    if last_eol:
        lines.pop()
    out: list[bytes] = []
    j = _entity(lines, 0, out, [])
    out.extend(lines[j:])
    return b"\r\n".join(out) + (b"\r\n" if last_eol else b"")
