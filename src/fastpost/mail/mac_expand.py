"""$name expansion of delivery attributes (forward_path, luser_relay, pipe's argv=...).

Postfix counterpart: src/util/mac_expand.c, mac_parse.c; src/local/local_expand.c

Some parameters are not expanded from main.cf but per delivery, from the message's
attributes (``$user``, ``$home``, ``$extension``, ``$recipient`` ...):

    $name ${name} $(name)       the value; an undefined name expands to "" and is
                                reported in ``undefined``
    ${name?text} ${name?{text}} text (itself expanded) when name has a non-empty value
    ${name:text} ${name:{text}} text when name is undefined or empty
    ${name?{t1}:{t2}}           t1 or t2
    $$                          a literal $

``lookup(name)`` returns the value or None. When ``filter`` is given, every character
of a looked-up value that is not in it becomes ``_`` (forward_expansion_filter,
command_expansion_filter): literal text of the pattern is left alone.

Diagnostics: MacError for a syntax error (unbalanced braces, a bad name); callers treat
it as a configuration error (Postfix: MAC_PARSE_ERROR, delivery deferred).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z0-9_]+")


class MacError(ValueError):
    """A malformed $name expression."""


@dataclass
class Expansion:
    text: str
    used: set = field(default_factory=set)  # names whose value went into the result
    undefined: set = field(default_factory=set)  # names asked for but not defined


def _censor(value: str, allowed: str | None) -> str:
    if allowed is None:
        return value
    return "".join(c if c in allowed else "_" for c in value)


def _close(text: str, i: int, open_c: str, close_c: str) -> int:
    """Index of the bracket closing text[i] (== open_c), or -1."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return j
    return -1


def _strip_braces(text: str) -> str:
    text = text.strip()
    if text.startswith("{") and _close(text, 0, "{", "}") == len(text) - 1:
        return text[1:-1].strip()
    return text


def expand(pattern: str, lookup, filter: str | None = None) -> Expansion:
    """Expand ``pattern`` with ``lookup`` (see the module docstring)."""
    result = Expansion("")
    result.text = _expand(pattern, lookup, filter, result, 0)
    return result


def names(pattern: str) -> list[str]:
    """Return the attribute names a pattern refers to, in order (MacError if malformed)."""
    seen: list[str] = []

    def probe(name):
        seen.append(name)
        return "x"  # conditionals look at both branches only when they are reached

    expand(pattern, probe)
    return seen


def _value(name: str, lookup, filter, result: Expansion) -> str | None:
    value = lookup(name)
    if value is None:
        result.undefined.add(name)
        return None
    return _censor(value, filter)


def _expand(text: str, lookup, filter, result: Expansion, depth: int) -> str:
    if depth > 100:
        raise MacError("unreasonable macro nesting")
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        i = j + 1
        if i >= n:
            out.append("$")
            break
        c = text[i]
        if c == "$":
            out.append("$")
            i += 1
            continue
        if c in "{(":
            close_c = "}" if c == "{" else ")"
            end = _close(text, i, c, close_c)
            if end < 0:
                raise MacError(f"unbalanced '{c}' in \"{text}\"")
            out.append(_braced(text[i + 1:end], lookup, filter, result, depth))
            i = end + 1
            continue
        m = _NAME.match(text, i)
        if not m:
            out.append("$")
            continue
        value = _value(m.group(), lookup, filter, result)
        if value is not None:
            result.used.add(m.group())
            out.append(value)
        i = m.end()
    return "".join(out)


def _braced(inner: str, lookup, filter, result: Expansion, depth: int) -> str:
    m = _NAME.match(inner)
    if not m:
        raise MacError(f"bad macro name in \"${{{inner}}}\"")
    name, rest = m.group(), inner[m.end():]
    if not rest:
        value = _value(name, lookup, filter, result)
        if value is None:
            return ""
        result.used.add(name)
        return value
    op, rest = rest[0], rest[1:]
    if op not in "?:":
        raise MacError(f"bad macro expression \"${{{inner}}}\"")
    value = lookup(name)
    present = bool(value)
    if op == "?" and rest.startswith("{"):
        t_end = _close(rest, 0, "{", "}")
        after = rest[t_end + 1:].lstrip() if t_end >= 0 else ""
        if after.startswith(":"):
            chosen = rest[1:t_end] if present else _strip_braces(after[1:])
            return _expand(chosen, lookup, filter, result, depth + 1)
    if (op == "?") != present:
        return ""
    return _expand(_strip_braces(rest), lookup, filter, result, depth + 1)
