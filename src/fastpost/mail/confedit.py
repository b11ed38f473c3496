"""Editing main.cf and master.cf in place, keeping comments and every other line.

Postfix counterpart: src/postconf/postconf_edit.c, postconf_master.c (the -e, -X,
-#, -M, -F and -P editing modes of postconf)

main.cf (edit_main_cf):
    set      ``name = value`` replaces the first physical line of every entry of name
             and drops its continuation lines; a name not yet there is appended at the
             end. Comment and blank lines inside a continued entry stay where they are.
    remove   drops the entry's lines (interior comments stay)
    comment  puts ``#`` before each line of the entry

master.cf (MasterFile): the same for whole service entries, keyed ``service/type``.
An entry that is changed (-M replace, -F, -P) is written back in postconf's folded
layout (format_entry(fold=True)); comments that were inside it move above it. A new
entry is appended at the end.

Both write a temporary file next to the original and rename it over the original, so a
reader never sees half a file; the mode of the original is kept.

Formatting (format_entry) follows postconf -M: columns at fixed tab stops (one space at
least), ``-o`` options normalised to ``-o name=value`` (in braces when the value holds
white space), ``{ ... }`` arguments unbraced when they hold no white space; with fold,
each ``-o`` on its own line and other words wrapped before column 80 with a four-space
indent.

Diagnostics: EditError with postconf's wording for a malformed request; OSError for a
file that cannot be read or written (the caller names the file).
"""

from __future__ import annotations

import os

from fastpost.mail.config import C_SPACE, ConfigError, read_logical_lines

FOLD_LIMIT = 80
INDENT = "    "
_TAB_STOPS = (11, 17, 25, 33, 41, 49, 57)

#: -F field names, in master.cf column order.
FIELDS = ("service", "type", "private", "unprivileged", "chroot", "wakeup", "process_limit",
          "command")


class EditError(Exception):
    """A malformed edit request (postconf prints it as fatal)."""


# -- shared -------------------------------------------------------------------------


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip(C_SPACE)
    return not stripped or stripped.startswith("#")


def _is_continuation(line: str) -> bool:
    return line[:1] in (" ", "\t") and not _is_comment_or_blank(line)


def _blocks(lines: list[str]):
    """Yield (start, [indexes of entry lines], [indexes of interior comment lines]).

    An entry is a line that starts with non-white-space plus the continuation lines
    after it; comment and blank lines between them are interior only when another
    continuation line follows them.
    """
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if _is_comment_or_blank(line) or line[:1] in (" ", "\t"):
            i += 1
            continue
        entry = [i]
        interior: list[int] = []
        pending: list[int] = []
        j = i + 1
        while j < n:
            if _is_comment_or_blank(lines[j]):
                pending.append(j)
            elif _is_continuation(lines[j]):
                interior += pending
                pending = []
                entry.append(j)
            else:
                break
            j += 1
        yield i, entry, interior
        i = entry[-1] + 1


def read_lines(path: str) -> list[str]:
    """Return the lines of path without their newlines ([] when it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    # Only \n ends a line: a \r (CRLF files) or a form feed stays in its line.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def write_lines(path: str, lines: list[str]) -> None:
    """Replace path with lines (newline-terminated), atomically, keeping its mode."""
    import tempfile  # only editing needs it; keep `fastpost conf` start-up light

    directory = os.path.dirname(path) or "."
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- main.cf ------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, str]:
    """Split a ``name=value`` request as postconf -e does (EditError if malformed)."""
    stripped = text.strip()
    name, eq, value = stripped.partition("=")
    name = name.strip()
    if not eq or any(c.isspace() for c in name):
        if not eq:
            raise EditError(f"missing '=' after attribute name: \"{text}\"")
        raise EditError(f"missing '=' after attribute name: \"{text}\"")
    if not name:
        raise EditError(f'missing attribute name: "{text}"')
    return name, value.strip()


def _main_name(line: str) -> str:
    return line.partition("=")[0].strip(C_SPACE)


def format_assignment(name: str, value: str) -> str:
    """Return the main.cf line postconf -e writes (``name = `` when value is empty)."""
    return f"{name} = {value}"


def edit_main_cf(lines: list[str], *, set_values: dict[str, str] | None = None,
                 remove: list[str] | None = None, comment: list[str] | None = None,
                 warn=None) -> list[str]:
    """Return main.cf lines with names set, removed or commented out.

    ``warn(text)`` receives ``multiple entries for "name"`` for a name that main.cf
    defines more than once (every entry is edited).
    """
    set_values = dict(set_values or {})
    remove_set = set(remove or ())
    comment_set = set(comment or ())
    drop: set[int] = set()
    replace: dict[int, str] = {}
    found: dict[str, int] = {}
    for start, entry, _interior in _blocks(lines):
        name = _main_name(lines[start])
        if name not in set_values and name not in remove_set and name not in comment_set:
            continue
        found[name] = found.get(name, 0) + 1
        if name in set_values:
            replace[start] = format_assignment(name, set_values[name])
            drop.update(entry[1:])
        elif name in remove_set:
            drop.update(entry)
        else:
            for k in entry:
                replace[k] = "#" + lines[k]
    if warn is not None:
        for name, count in found.items():
            if count > 1:
                warn(f'multiple entries for "{name}"')
    out = [replace.get(k, line) for k, line in enumerate(lines) if k not in drop]
    for name, value in set_values.items():
        if name not in found:
            out.append(format_assignment(name, value))
    return out


# -- master.cf: formatting ----------------------------------------------------------


def _has_space(text: str) -> bool:
    return any(c.isspace() for c in text)


def _unbrace(word: str) -> str:
    if len(word) >= 2 and word[0] == "{" and word[-1] == "}":
        return word[1:-1].strip()
    return word


def split_words(text: str) -> list[str]:
    """Split a command field into words as postconf does: white space separates words
    except inside ``{ ... }``, wherever the brace is (``-o{a = b}`` is one word)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in C_SPACE:
            i += 1
            continue
        start, depth = i, 0
        while i < n:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth = max(0, depth - 1)
            elif depth == 0 and c in C_SPACE:
                break
            i += 1
        words.append(text[start:i])
    return words


def parse_options(args: list[str]) -> tuple[list[tuple[str, str | None, str]], list[str]]:
    """Split command arguments into the leading options and the rest, as postconf does.

    Options are the words starting with ``-`` before the first word that does not;
    ``-o`` takes the next word (``-oX`` its own rest). Returns
    ([(flag, name, value)], rest): flag ``-o`` with name and value (name None when
    there is no ``=``), or another flag word (``-v``) with name None and value "".
    """
    options: list[tuple[str, str | None, str]] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "-o":
            if i + 1 >= len(args):
                break
            value, i = args[i + 1], i + 2
        elif word.startswith("-o"):
            value, i = word[2:], i + 1
        elif word.startswith("-") and len(word) > 1:
            options.append((word, None, ""))
            i += 1
            continue
        else:
            break
        value = _unbrace(value)
        name, eq, val = value.partition("=")
        options.append(("-o", name.strip(C_SPACE), val.strip(C_SPACE)) if eq else ("-o", None, value))
    return options, args[i:]


def option_problems(args: list[str]) -> list[str]:
    """Return postconf's complaints about braced ``-o {...}`` options that are not
    name=value (an unbraced ``-o word`` is taken as it is, without a word)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "-o" and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif word.startswith("-o") and len(word) > 2:
            value, i = word[2:], i + 1
        elif word.startswith("-") and len(word) > 1:
            i += 1
            continue
        else:
            break
        if value.startswith("{") and value.endswith("}") and "=" not in value:
            inner = _unbrace(value)
            out.append(f"missing '=' after attribute name: \"{inner}\"" if inner
                       else 'missing attribute name: ""')
    return out


def split_options(args: list[str]) -> tuple[list[tuple[str | None, str]], list[str]]:
    """Return ([(name, value)] of the leading ``-o`` options, rest); see parse_options."""
    options, rest = parse_options(args)
    return [(name, value) for flag, name, value in options if flag == "-o"], rest


def option_text(flag: str, name: str | None, value: str) -> str:
    """Return one option as postconf prints it: ``-o name=value``, ``-o {n=v w}``, ``-v``."""
    if flag != "-o":
        return flag
    text = f"{name}={value}" if name is not None else value
    if _has_space(text):
        text = "{" + text + "}"
    return "-o " + text


def normalize_words(words: list[str], expand=None) -> list[tuple[bool, str]]:
    """Return the command arguments as postconf prints them: [(is_option, text)].

    ``-o name = value`` (in any of its spellings) becomes ``-o name=value`` or
    ``-o {name=value}``; other ``{ ... }`` words lose their braces unless they hold
    white space.
    """
    out: list[tuple[bool, str]] = []
    options, rest = parse_options(words)
    for flag, name, value in options:
        if expand is not None and flag == "-o" and name is not None:
            value = expand(value)
        # only -o options get a line of their own when folded; -v wraps like a word
        out.append((flag == "-o", option_text(flag, name, value)))
    for word in rest:
        if word.startswith("{") and word.endswith("}"):
            inner = _unbrace(word)
            word = "{" + inner + "}" if _has_space(inner) else inner
        out.append((False, word))
    return out


def _columns(columns: list[str]) -> str:
    out = ""
    for value, stop in zip(columns[:7], _TAB_STOPS):
        out += value
        out += " " * max(1, stop - len(out))
    return out


def format_entry(columns: list[str], fold: bool = False, expand=None) -> list[str]:
    """Return the lines of one master.cf entry as postconf -M (fold: -Mf) prints it.

    ``columns`` are the seven fields and the command text (program and arguments).
    """
    return format_command(_columns(columns), columns[7], fold, expand)


def format_command(head: str, command: str, fold: bool = False, expand=None) -> list[str]:
    """Return ``head`` + the normalised command text, folded as postconf -Mf does.

    ``expand(value)``, when given, is applied to each ``-o`` value (postconf -Mx).
    """
    words = split_words(command)
    program, args = (words[0], words[1:]) if words else ("", [])
    head = head + program
    parts = normalize_words(args, expand)
    if not fold:
        return [" ".join([head] + [text for _opt, text in parts])]
    lines = [head]
    for is_option, text in parts:
        if is_option:
            lines.append(INDENT + text)
            continue
        current = lines[-1]
        if current.startswith(INDENT + "-o ") or (
            len(current) + 1 + len(text) >= FOLD_LIMIT and current.strip()
            and current != INDENT
        ):
            lines.append(INDENT + text)
        else:
            lines[-1] = current + " " + text
    return lines


def entry_fields(entry: Service, expand=None) -> dict[str, str]:
    """Return the -F fields of an entry, the command normalised as -M prints it."""
    command = format_entry(entry.columns, expand=expand)[0][len(_columns(entry.columns)):]
    values = list(entry.columns[:7]) + [command]
    return dict(zip(FIELDS, values))


# -- master.cf: reading as postconf does ---------------------------------------------

_YES_NO = ("y", "n", "-", "yes", "no")
#: master.cf column 2 (as fastpost.mail.SERVICE_TYPES).
SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")


class Service:
    """One master.cf entry as postconf sees it: the columns as written, the command
    split into words. (The master's fuller view is fastpost.mail.Service;
    this one is lighter to import, which keeps `fastpost conf` quick to start.)"""

    __slots__ = ("service", "type", "command", "args", "line", "columns")

    def __init__(self, columns: list[str], line: int):
        self.columns = columns  # the seven fields and the command text
        self.service, self.type = columns[0], columns[1]
        words = split_words(columns[7])
        self.command = words[0] if words else ""  # program name
        self.args = words[1:]  # its arguments
        self.line = line  # line number in master.cf

    @property
    def key(self) -> str:
        """``service/type``, what identifies an entry."""
        return f"{self.service}/{self.type}"


def parse_service(text: str, path: str, line: int) -> Service:
    """Parse one logical master.cf line with postconf's checks only.

    Stricter checks (an inet service marked private, ``-o`` without ``=``, duplicate
    entries) are the master's (fastpost.mail.mastercf); postconf shows such entries.
    """
    fields = text.split(None, 7)
    if len(fields) < 8:
        raise ConfigError(f"file {path}: line {line}: bad field count")
    service, stype, private, unpriv, chroot, wakeup, maxproc, command = fields
    if stype not in SERVICE_TYPES:
        raise ConfigError(f'invalid type field "{stype}" in "{text}"')
    for name, value in (("private", private), ("unprivileged", unpriv), ("chroot", chroot)):
        if value not in _YES_NO:
            raise ConfigError(f'invalid {name} field "{value}" in "{text}"')
    wake = wakeup[:-1] if wakeup.endswith("?") else wakeup
    if wakeup != "-" and not wake.isdigit():
        raise ConfigError(f'invalid wakeup field "{wakeup}" in "{text}"')
    if maxproc != "-" and not maxproc.isdigit():
        raise ConfigError(f'invalid process_limit field "{maxproc}" in "{text}"')
    return Service(fields[:7] + [command], line)


def read_services(path: str) -> list[Service]:
    """Return every entry of a master.cf as postconf reads it (duplicates kept)."""
    return [parse_service(text, path, number)
            for number, text in read_logical_lines(path)]


def service_options(entry: Service) -> dict[str, str]:
    """The ``-o name=value`` parameters of an entry as postconf counts them: only the
    options right after the command name, those with ``=``."""
    options, _rest = split_options(entry.args)
    return {name: value for name, value in options if name is not None}


# -- master.cf: editing -------------------------------------------------------------


class MasterFile:
    """The lines of a master.cf file with its entries located, for editing."""

    def __init__(self, path: str, lines: list[str] | None = None):
        self.path = path
        self.lines = read_lines(path) if lines is None else lines
        self.drop: set[int] = set()
        self.replace: dict[int, list[str]] = {}
        self.appended: list[list[str]] = []
        self.current: dict[int, list[str]] = {}  # entry start -> columns after edits
        self.entries: list[tuple[Service, int, list[int], list[int]]] = []
        for start, entry, interior in _blocks(self.lines):
            text = " ".join(self.lines[k].strip() for k in entry)
            parsed = parse_service(text, path, start + 1)
            self.entries.append((parsed, start, entry, interior))

    def find(self, key: str):
        """Return the located entries whose ``service/type`` is key."""
        return [e for e in self.entries if e[0].key == key]

    def columns(self, located) -> list[str]:
        """Return the current columns of a located entry (after earlier edits)."""
        return list(self.current.get(located[1], located[0].columns))

    def _rewrite(self, located, columns: list[str]) -> None:
        _entry, start, entry, interior = located
        self.current[located[1]] = list(columns)
        new = [self.lines[k] for k in interior] + format_entry(columns, fold=True)
        self.replace[start] = new
        self.drop.update(k for k in entry[1:])
        self.drop.update(interior)

    def set_entry(self, key: str, text: str) -> None:
        """-M service/type='entry': replace the entry, or append it when new."""
        fields = text.split(None, 7)
        if len(fields) < 8:
            raise EditError(f'bad field count: "{key}={text}"')
        try:
            parsed = parse_service(text, self.path, 0)
        except ConfigError as exc:
            raise EditError(str(exc)) from None
        columns = fields[:7] + [fields[7]]
        located = self.find(key)
        if parsed.key != key:
            # Postfix replaces the named entry and drops one the new text would
            # duplicate.
            for _e, _start, entry, _interior in self.find(parsed.key):
                self.drop.update(entry)
        if not located:
            self.appended.append(format_entry(columns, fold=True))
            return
        self._rewrite(located[0], columns)
        for _e, _start, entry, _interior in located[1:]:
            self.drop.update(entry)

    def delete(self, key: str) -> bool:
        """-MX: remove the entry's lines; False when there is no such entry."""
        located = self.find(key)
        for _e, _start, entry, _interior in located:
            self.drop.update(entry)
        return bool(located)

    def comment_out(self, key: str) -> bool:
        """-M#: put ``#`` before each line of the entry."""
        located = self.find(key)
        for _e, _start, entry, _interior in located:
            for k in entry:
                self.replace[k] = ["#" + self.lines[k]]
        return bool(located)

    def set_field(self, key: str, field: str, value: str) -> bool:
        """-F service/type/field=value."""
        if field not in FIELDS:
            raise EditError(f'invalid service attribute name: "{field}"')
        value = value.strip()
        if not value:
            raise EditError(f'empty value for "{key}/{field}"')
        if field != "command" and _has_space(value):
            raise EditError(f'-F does not accept whitespace in "{key}/{field}" value')
        located = self.find(key)
        for loc in located:
            columns = self.columns(loc)
            columns[FIELDS.index(field)] = value
            try:
                parse_service(" ".join(columns), self.path, loc[1] + 1)
            except ConfigError as exc:
                raise EditError(str(exc)) from None
            self._rewrite(loc, columns)
        return bool(located)

    def set_param(self, key: str, name: str, value: str | None) -> bool:
        """-P service/type/name=value (value None: -PX, remove the -o)."""
        if value is not None and _has_space(value):
            raise EditError("-Pe does not accept whitespace in parameter value")
        located = self.find(key)
        for loc in located:
            columns = self.columns(loc)
            words = split_words(columns[7])
            options, rest = parse_options(words[1:])
            present = any(f == "-o" and n == name for f, n, _v in options)
            if value is None and not present:
                continue
            new_options = []
            for flag, oname, ovalue in options:
                if flag == "-o" and oname == name:
                    if value is not None:
                        new_options.append((flag, oname, value))
                    continue
                new_options.append((flag, oname, ovalue))
            if value is not None and not present:
                new_options.append(("-o", name, value))
            new_words = words[:1]
            for flag, oname, ovalue in new_options:
                text = option_text(flag, oname, ovalue)
                new_words += text.split(" ", 1) if text != "-o " else ["-o", "{}"]
            self._rewrite(loc, columns[:7] + [" ".join(new_words + rest)])
        return bool(located)

    def result(self) -> list[str]:
        """Return the edited lines."""
        out: list[str] = []
        for k, line in enumerate(self.lines):
            if k in self.replace:
                out += self.replace[k]
            elif k not in self.drop:
                out.append(line)
        for lines in self.appended:
            out += lines
        return out
