"""The aliases(5) source format: ``name: value, value``, as postalias reads it.

Postfix counterpart: the input loop of src/postalias/postalias.c and the RFC 822
tokenizer it uses (src/global/tok822_*.c); behaviour learned from aliases(5) and by
running Debian's postalias.

    name: value, value, ...     continuation lines start with whitespace
    "a name": value             a quoted name (quotes removed)
    values: user, user@domain, /file/name, |command, :include:/file, "|cmd args"

The name ends at the first ``:`` outside quotes; blanks around it are removed and it is
folded like any key. The value is re-written in canonical form, as postalias stores
it: blanks next to specials (``, @ . ; : < > [ ]``) are removed, a comma is followed by
one blank, runs of blanks between words become one blank, quoted strings and
``(comments)`` are kept verbatim, and a backslash outside quotes is dropped (it only
protects the next character); a word that then holds a special character, a blank, a
quote or a backslash is written as a quoted string (``\\\\root`` -> ``"\\\\root"``).

Diagnostics: ``need name:value pair`` (no colon, empty name or empty value, unbalanced
quote) through the warn callback with the line number; the line is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastpost.mail.maps.source import Warn, logical_lines, utf8_ok

_SPECIALS = ",@.;:<>"
_BLANKS = " \t\r\n\f\v"


def normalize_value(text: str) -> str:
    """Return an alias value in the canonical form postalias stores."""
    out: list[str] = []
    prev = None          # "word", "special", "comma" or None
    space = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _BLANKS:
            space = True
            i += 1
            continue
        if c == '"' or c == "(" or c == "[":
            close = {'"': '"', "(": ")", "[": "]"}[c]
            end = _find_close(text, i, close)
            token, kind = text[i:end], "word"
            i = end
        elif c in _SPECIALS:
            token, kind = c, ("comma" if c == "," else "special")
            i += 1
        else:
            buf = []
            while i < n and text[i] not in _BLANKS and text[i] not in _SPECIALS \
                    and text[i] not in '"([':
                if text[i] == "\\" and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
            token, kind = "".join(buf), "word"
            if any(ch in _SPECIALS or ch in _BLANKS or ch in '\\"()[]' for ch in token):
                token = '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if prev == "comma" and kind != "comma":
            out.append(" ")
        elif kind == "word" and prev == "word" and space:
            out.append(" ")
        out.append(token)
        prev, space = kind, False
    return "".join(out)


def _find_close(text: str, i: int, close: str) -> int:
    """Index after the quoted string / comment / literal that opens at text[i]."""
    n = len(text)
    depth = 0
    j = i
    while j < n:
        c = text[j]
        if c == "\\" and j + 1 < n:
            j += 2
            continue
        if j > i and c == close and depth <= 1:
            return j + 1
        if text[i] == "(" and c == "(":
            depth += 1
        elif text[i] == "(" and c == ")":
            depth -= 1
        j += 1
    return n


def split_alias(line: str) -> tuple[str, str] | None:
    """Return (name, raw value) of ``name: value``; None when malformed."""
    quoted = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quoted and c == "\\" and i + 1 < n:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ":" and not quoted:
            break
        i += 1
    else:
        return None
    name = line[:i].strip(_BLANKS)
    value = line[i + 1 :].strip(_BLANKS)
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        name = name[1:-1].replace('\\"', '"')
    elif '"' in name:
        return None
    if not name or not value:
        return None
    return name, value


def alias_records(text: str, warn: Warn | None = None) -> Iterator[tuple[int, str, str]]:
    """Yield (line_number, name, canonical value) of an aliases(5) file."""
    for number, line in logical_lines(text, warn):
        if not utf8_ok(line, number, warn):
            continue
        parsed = split_alias(line)
        if parsed is None:
            if warn is not None:
                warn(number, "need name:value pair")
            continue
        name, value = parsed
        yield number, name, normalize_value(value)
