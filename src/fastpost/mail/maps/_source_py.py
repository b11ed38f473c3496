"""Table-source parsing for builds: the pure-Python reference.

Specification and oracle of ext/fastpost/mail/maps/_source_c.pyx. Parses a postmap
source file given as bytes straight into the stored form of its records (keys folded
and NUL-terminated as the table wants them), so that a million-line build does not
pay for a Python object per character.

Format (see fastpost.mail.maps.source for the str-level description): logical lines
(continuations start with whitespace; blank and ``#`` lines skipped everywhere), a key
up to the first blank outside double quotes, a value after the blanks.

parse_records(data, fold, nul) -> (records, warnings)
    records:  list of (stored_key: bytes, stored_value: bytes), in input order
    warnings: list of (line_number, message: str), in input order
unique_sorted(records, keep_last) -> (pairs, duplicates)
    records sorted by key (stably, in place), one pair per key: the first one, or
    the last with keep_last; duplicates: the repeated keys, once per extra record
No I/O; never raises for bad input.
"""

_BLANK = b" \t\r\f\v"


def _fold_key(key, fold, nul):
    if fold:
        if key.isascii():
            key = key.lower()
        else:
            key = key.decode("utf-8", "surrogateescape").casefold().encode(
                "utf-8", "surrogateescape")
    return key + b"\0" if nul else key


def _text(raw):
    return raw.decode("utf-8", "surrogateescape")


def _split(line):
    """Return (key, value or None); ValueError for an unbalanced quote."""
    quoted = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quoted and c == 0x5C and i + 1 < n:
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif not quoted and c in _BLANK:
            value = line[i:].lstrip(_BLANK)
            return line[:i], (value if value else None)
        i += 1
    if quoted:
        raise ValueError
    return line, None


def parse_records(data, fold, nul):
    records = []
    warnings = []

    def emit(lineno, line):
        line = line.rstrip(_BLANK)
        if not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                shown = line.decode("utf-8", "replace").replace("\ufffd", "?")
                warnings.append((lineno, f'non-UTF-8 input "{shown}" -- ignoring this line'))
                return
        try:
            key, value = _split(line)
        except ValueError:
            warnings.append((lineno, f"unbalanced '\"' in '{_text(line)}' -- ignoring this line"))
            return
        if value is None:
            warnings.append((lineno, "expected format: key whitespace value"))
            return
        if key.endswith(b":"):
            warnings.append((lineno, 'record is in "key: value" format; is this an alias file?'))
        records.append((_fold_key(key, fold, nul), value + b"\0" if nul else value))

    current = None
    start = 0
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        stripped = raw.lstrip(_BLANK)
        if not stripped or stripped[0] == 0x23:
            continue
        if raw[0] in _BLANK:
            if current is not None:
                current.append(raw)
            else:
                warnings.append((number, "logical line must not start with whitespace: "
                                 f'"{_text(raw)}"'))
            continue
        if current is not None:
            emit(start, b"".join(current))
        current = [raw]
        start = number
    if current is not None:
        emit(start, b"".join(current))
    return records, warnings


def unique_sorted(records, keep_last):
    records.sort(key=lambda pair: pair[0])
    out = []
    dups = []
    for pair in records:
        if out and out[-1][0] == pair[0]:
            dups.append(pair[0])
            if keep_last:
                out[-1] = pair
            continue
        out.append(pair)
    return out, dups
