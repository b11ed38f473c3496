"""``regexp:`` tables: POSIX regular expressions, run on Python's ``re``.

Postfix counterpart: src/util/dict_regexp.c; syntax regexp_table(5).

    /pattern/flags result        first match wins; $1..$9, ${n}, $$ in the result
    !/pattern/flags result       matches when the pattern does not (no $n allowed)
    if /pattern/flags  ...  endif   (and "if !/pattern/"), nestable
    any non-blank delimiter instead of "/"

Flags toggle: ``i`` case-insensitive (on by default), ``x`` extended syntax (on: ERE;
off: basic regular expressions), ``m`` multi-line (off). The key is matched whole
(this is a pattern table: no partial keys) and is not folded.

Dialect. Postfix hands the pattern to the C library's regcomp() in the C locale:
matching works on bytes, case folding is ASCII-only, ``.`` is one byte. fastpost
translates the POSIX pattern into an equivalent Python ``re`` pattern over bytes:

  * bracket expressions: ``\\`` is literal inside ``[...]``, ``]`` first is literal,
    ``[:alpha:]``-style classes are expanded to ASCII ranges;
  * GNU escapes ``\\w \\W \\s \\S \\b \\B \\< \\> \\` \\'`` are mapped; other escaped
    characters are literal; ``$`` anchors at the very end (Python's ``$`` would also
    match before a final newline); ``.`` matches a newline unless ``m`` is set;
  * BRE (``x`` off): ``\\( \\) \\{ \\} \\| \\+ \\?`` are operators, the unescaped forms literal;
  * ``(?`` is refused, as glibc refuses it (Python would read an extension).

Where they still differ: POSIX chooses the leftmost-*longest* match among
alternatives, Python the first alternative that matches. Whether a key matches is the
same; the text captured for ``$n`` can differ for patterns such as ``(a|ab)(c|bcd)``
where an earlier, shorter alternative also leads to a match. Stacked quantifiers
(``a+?``, ``a*+``) mean "repeat the repetition" in POSIX but are lazy/possessive or
errors in Python. Use ``pcre:`` when exact semantics of such patterns matter.

The scan over the rules (if/endif included) runs in the compiled RuleScan kernel
(ext/fastpost/mail/maps/_rules_c.pyx), one C-level call of each pattern's search.

Diagnostics: a bad rule is a warning naming file and line, and the rule is skipped
(Postfix does the same); an unreadable file is a MapRetry.
"""

from __future__ import annotations

import re

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import FileMap
from fastpost.mail.maps._patterns import (
    Block, ReplacementError, Rule, RuleBuilder, expand, flatten, keyword, parse_replacement,
    split_delimited,
)
from fastpost.mail.maps._rules import RuleScan
from fastpost.mail.maps.source import logical_lines

_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "0-9A-Za-z", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "print": "\\x20-\\x7e", "graph": "\\x21-\\x7e", "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f",
}


class TranslateError(ValueError):
    pass


def _class_char(c: str) -> str:
    return "\\" + c if c in "\\]^-[" else (c if c.isalnum() else re.escape(c))


def _bracket(p: str, i: int, multiline: bool) -> tuple[str, int]:
    """Translate the bracket expression starting at p[i] == '['; return (text, next i)."""
    n = len(p)
    j = i + 1
    neg = False
    if j < n and p[j] == "^":
        neg = True
        j += 1
    members: list[str] = []
    first = True
    while True:
        if j >= n:
            raise TranslateError("brackets ([ ]) not balanced")
        c = p[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if c == "[" and j + 1 < n and p[j + 1] in ":=.":
            kind = p[j + 1]
            end = p.find(kind + "]", j + 2)
            if end < 0:
                raise TranslateError("brackets ([ ]) not balanced")
            name = p[j + 2 : end]
            j = end + 2
            if kind == ":":
                if name not in _CLASSES:
                    raise TranslateError("invalid character class")
                members.append(_CLASSES[name])
            else:
                members.extend(_class_char(ch) for ch in name)
            continue
        if j + 2 < n and p[j + 1] == "-" and p[j + 2] != "]":
            lo, hi = c, p[j + 2]
            if ord(lo) > ord(hi):
                raise TranslateError("invalid range end")
            members.append(f"{_class_char(lo)}-{_class_char(hi)}")
            j += 3
            continue
        members.append(_class_char(c))
        j += 1
    if neg and multiline:
        members.append("\\n")
    return "[" + ("^" if neg else "") + "".join(members) + "]", j


_GNU = {"w": r"\w", "W": r"\W", "s": r"\s", "S": r"\S", "b": r"\b", "B": r"\B",
        "<": r"\b(?=\w)", ">": r"\b(?<=\w)", "`": r"\A", "'": r"\Z"}


def translate(pattern: str, *, extended: bool = True, multiline: bool = False) -> str:
    """Return a Python ``re`` pattern equivalent to a POSIX (ERE or BRE) pattern."""
    p = pattern
    n = len(p)
    out: list[str] = []
    i = 0
    end_anchor = "$" if multiline else r"\Z"
    atom_start = True       # at the start of the RE, after "(" or "|"
    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 >= n:
                raise TranslateError("trailing backslash (\\)")
            d = p[i + 1]
            i += 2
            if not extended and d in "(){}|+?":
                if d == "(":
                    out.append("(")
                    atom_start = True
                    continue
                if d == "|":
                    out.append("|")
                    atom_start = True
                    continue
                out.append(d)
                atom_start = False
                continue
            if d in _GNU:
                out.append(_GNU[d])
            elif d.isdigit() and d != "0":
                out.append("\\" + d)
            else:
                out.append(re.escape(d))
            atom_start = False
            continue
        if c == "[":
            text, i = _bracket(p, i, multiline)
            out.append(text)
            atom_start = False
            continue
        if extended:
            if c == "(":
                if p[i + 1 : i + 2] == "?":
                    raise TranslateError("Invalid preceding regular expression")
                out.append("(")
                atom_start = True
            elif c == "|":
                out.append("|")
                atom_start = True
            elif c in "*+?":
                if atom_start:
                    raise TranslateError("Invalid preceding regular expression")
                out.append(c)
            elif c == "{":
                m = re.match(r"\{(\d*)(,(\d*))?\}", p[i:])
                if m and not atom_start and (m.group(1) or m.group(3)):
                    out.append(m.group(0))
                    i += len(m.group(0))
                    continue
                out.append(r"\{")
            elif c == "$":
                out.append(end_anchor)
            elif c in ".^)":
                out.append(c)
                atom_start = c == "^" and atom_start
            else:
                out.append(re.escape(c))
                atom_start = False
            if c not in "(|^":
                atom_start = False
            i += 1
            continue
        # basic regular expressions
        if c == "*" and atom_start:
            out.append(r"\*")
        elif c == "^" and atom_start:
            out.append("^")
            i += 1
            continue
        elif c == "$" and (i + 1 == n or p[i + 1 : i + 3] in ("\\)", "\\|")):
            out.append(end_anchor)
        elif c in ".*":
            out.append(c)
        else:
            out.append(re.escape(c))
        atom_start = False
        i += 1
    return "".join(out)


def compile_posix(pattern: str, flags: str) -> re.Pattern:
    """Compile a regexp_table pattern with its flags; TranslateError/re.error if bad."""
    icase, extended, multiline = True, True, False
    for f in flags:
        if f == "i":
            icase = not icase
        elif f == "x":
            extended = not extended
        elif f == "m":
            multiline = not multiline
        else:
            raise TranslateError(f'unknown regexp option "{f}"')
    py = translate(pattern, extended=extended, multiline=multiline)
    reflags = (re.IGNORECASE if icase else 0) | (re.MULTILINE if multiline else re.DOTALL)
    return re.compile(py.encode("utf-8", "surrogateescape"), reflags)


def _make_test(rx: re.Pattern):
    search = rx.search

    def test(key: bytes):
        m = search(key)
        if m is None:
            return None
        return (m.group(0),) + m.groups()

    test.search = search
    return test


class RegexpMap(FileMap):
    type = "regexp"
    class_flags = _base.PATTERN

    def compile(self, pattern: str, flags: str):
        """Return (test, number of groups) or raise ValueError."""
        rx = compile_posix(pattern, flags)
        return _make_test(rx), rx.groups

    def _load(self, text: str) -> None:
        builder = RuleBuilder(self.warn)
        for lineno, line in logical_lines(text, self.warn):
            kind, rest = keyword(line)
            if kind == "endif":
                builder.pop(lineno)
                continue
            negate = rest.startswith("!")
            if negate:
                rest = rest[1:].lstrip(" \t")
            parsed = split_delimited(rest)
            if parsed is None:
                self.warn(lineno, f'no closing regexp delimiter "{rest[:1]}": ignoring this rule')
                continue
            pattern, flags, result = parsed
            try:
                test, ngroups = self.compile(pattern, flags)
            except (ValueError, re.error) as exc:
                self.warn(lineno, f"{exc}: skipping this rule")
                continue
            if kind == "if":
                if result:
                    self.warn(lineno, f'ignoring extra text after IF: "{result}"')
                builder.push(Block(lineno, test, negate))
                continue
            if not result:
                self.warn(lineno, "no replacement text: using empty string")
            parts = None
            if "$" in result:
                if negate:
                    self.warn(lineno, "$number found in negative match replacement text"
                              ": skipping this rule")
                    continue
                try:
                    parts = parse_replacement(result, ngroups)
                except ReplacementError as exc:
                    self.warn(lineno, str(exc))
                    self.warn(lineno, "bad replacement syntax: skipping this rule")
                    continue
            builder.add(Rule(lineno, test, negate, parts, result))
        self._items = builder.finish()
        if type(self) is RegexpMap:
            program, self._rules = flatten(self._items, lambda test: test.search)
            self._scan = RuleScan(program)

    def _lookup(self, key: str) -> str | None:
        found = self._scan.first_match(key.encode("utf-8", "surrogateescape"))
        if found is None:
            return None
        index, m = found
        rule = self._rules[index]
        if rule.parts is None:
            return rule.result
        return expand(rule.parts, (m.group(0),) + m.groups())
