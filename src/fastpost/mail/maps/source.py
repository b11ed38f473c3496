"""Reading table source files: logical lines and ``key whitespace value`` records.

Postfix counterpart: src/util/readlline.c, the input loop of src/postmap/postmap.c and
src/util/dict_thash.c (texthash).

A logical line is a physical line that starts with non-whitespace plus every following
line that starts with whitespace; the line break is removed and the continuation's
leading whitespace kept. Lines that are empty, only whitespace, or whose first
non-blank character is ``#`` are skipped, also between a line and its continuations.
Trailing whitespace of the logical line is removed. A logical line that would start
with whitespace (a continuation with nothing to continue) is reported and skipped.

Records are ``key whitespace value``: the key is the text up to the first blank (no
quoting: Postfix 3.7 stores ``"a b"`` with its quotes), the value is the rest with
leading blanks removed.

A logical line that is not valid UTF-8 is reported and ignored (Postfix with
smtputf8_enable does the same).

Diagnostics: every problem goes to the ``warn(lineno, message)`` callback, with the
physical line number of the logical line's start. Nothing raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

Warn = Callable[[int, str], None]


def logical_lines(text: str, warn: Warn | None = None) -> Iterator[tuple[int, str]]:
    """Yield (line_number, logical_line) from table source text."""
    current: list[str] | None = None
    start = 0
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.endswith("\r"):
            raw = raw[:-1]
        stripped = raw.lstrip(" \t\r\f\v")
        if not stripped or stripped[0] == "#":
            continue
        if raw[0] in " \t\r\f\v":
            if current is not None:
                current.append(raw)
                continue
            if warn is not None:
                warn(number, f'logical line must not start with whitespace: "{raw}"')
            continue
        if current is not None:
            yield start, "".join(current).rstrip()
        current = [raw]
        start = number
    if current is not None:
        yield start, "".join(current).rstrip()


def split_record(line: str) -> tuple[str, str | None]:
    """Return (key, value) of ``key whitespace value``; value None when missing.

    The key ends at the first blank outside double quotes; quotes stay part of the key
    (``"a b"`` is the key, quotes included); a backslash escapes the next character
    inside quotes. ValueError for an unbalanced quote.
    """
    quoted = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quoted and c == "\\" and i + 1 < n:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and c in " \t\r\f\v":
            value = line[i:].lstrip(" \t\r\f\v")
            return line[:i], (value if value else None)
        i += 1
    if quoted:
        raise ValueError(f"unbalanced '\"' in '{line}'")
    return line, None


def utf8_ok(line: str, number: int, warn: Warn | None) -> bool:
    """False (and a warning) for a line with bytes that are not UTF-8."""
    if line.isascii():
        return True
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        if warn is not None:
            shown = "".join("?" if "\udc80" <= c <= "\udcff" else c for c in line)
            warn(number, f'non-UTF-8 input "{shown}" -- ignoring this line')
        return False
    return True


def records(text: str, warn: Warn | None = None, *, ignore_note: bool = False
            ) -> Iterator[tuple[int, str, str]]:
    """Yield (line_number, key, value) of a postmap source; bad lines are reported."""
    for number, line in logical_lines(text, warn):
        if not utf8_ok(line, number, warn):
            continue
        try:
            key, value = split_record(line)
        except ValueError as exc:
            if warn is not None:
                warn(number, f"{exc} -- ignoring this line")
            continue
        if value is None:
            if warn is not None:
                warn(number, "expected format: key whitespace value"
                     + (" -- ignoring this line" if ignore_note else ""))
            continue
        if key.endswith(":") and warn is not None:
            warn(number, 'record is in "key: value" format; is this an alias file?')
        yield number, key, value
