"""Destinations in an alias value, a .forward line or an :include: line.

Postfix counterpart: src/global/tok822_parse.c (tok822_parse, tok822_internalize),
src/local/token.c

The right-hand side of an alias (and each line of a .forward or :include: file) is an
RFC 822 address list. It is split at commas (and semicolons) outside quotes, angle
brackets, domain literals and comments; comments are dropped; ``Name <addr>`` keeps
the address; each element is then put in internal form: quoted strings lose their
quotes and backslash escapes, a backslash outside quotes escapes the next character
(``\\user`` is ``user``), words are joined by one blank and specials (``@ . : [ ]``)
without blanks. So ``"|/usr/bin/procmail -a x"`` and ``|exit 67`` are commands,
``/var/log/mail.txt`` a file, ``:include:/etc/list`` an include, ``"a b"@example.com``
the address ``a b@example.com``. Empty elements are skipped.

Diagnostics: none; unbalanced quotes or brackets end at the end of the text.
"""

from __future__ import annotations

_SPECIALS = "()<>@,;:\\\".[]"

# Token kinds
_WORD = "w"  # atom or quoted string (text already unquoted)
_SPECIAL = "s"


def _tokens(text: str):
    """Yield (kind, text) tokens; comments are skipped."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        elif c == '"':
            out = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            i += 1
            yield _WORD, "".join(out)
        elif c == "[":
            j = i + 1
            while j < n and text[j] != "]":
                j += 2 if text[j] == "\\" else 1
            yield _WORD, text[i:j + 1]
            i = j + 1
        elif c in _SPECIALS and c != "\\":
            yield _SPECIAL, c
            i += 1
        else:
            out = []
            while i < n:
                c = text[i]
                if c == "\\" and i + 1 < n:
                    out.append(text[i + 1])
                    i += 2
                    continue
                if c in " \t\r\n" or (c in _SPECIALS and c != "\\"):
                    break
                out.append(c)
                i += 1
            yield _WORD, "".join(out)


def _internalize(tokens: list) -> str:
    if any(t == (_SPECIAL, "<") for t in tokens):
        start = tokens.index((_SPECIAL, "<"))
        end = len(tokens)
        for k in range(start + 1, len(tokens)):
            if tokens[k] == (_SPECIAL, ">"):
                end = k
                break
        tokens = tokens[start + 1:end]
    out: list[str] = []
    prev_word = False
    for kind, text in tokens:
        if kind == _WORD:
            if prev_word:
                out.append(" ")
            out.append(text)
            prev_word = True
        else:
            if text in "<>":
                continue
            out.append(text)
            prev_word = False
    return "".join(out)


def destinations(text: str) -> list[str]:
    """Return the destinations listed in ``text``, in internal form (module docstring)."""
    result: list[str] = []
    current: list = []
    angle = 0
    for tok in _tokens(text):
        if tok[0] == _SPECIAL:
            if tok[1] == "<":
                angle += 1
            elif tok[1] == ">":
                angle = max(0, angle - 1)
            elif tok[1] in ",;" and angle == 0:
                item = _internalize(current)
                if item:
                    result.append(item)
                current = []
                continue
        current.append(tok)
    item = _internalize(current)
    if item:
        result.append(item)
    return result
