"""Reason texts with an optional RFC 3463 detail code in front: ``5.1.1 User unknown``.

Postfix counterpart: src/global/dsn_split.c, dsn_util.c.

``split_dsn(text, default)`` returns (code, rest): the code when the text starts with a
valid one (class 2, 4 or 5, subject and detail of 1-3 digits, then a space or the end),
otherwise ``default``. ``with_class(code, digit)`` forces the class digit (the error
agent bounces whatever code its text carries; the retry agent defers). ``bounce_status(text)``
is both for a refusal that is returned to its sender (pickup, cleanup).

Diagnostics: none (a malformed code is simply not a code).
"""

from __future__ import annotations

import re

_DSN = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def valid_dsn(code: str) -> bool:
    return bool(_DSN.fullmatch(code))


def split_dsn(text: str, default: str) -> tuple[str, str]:
    """Return (detail code, remaining text) of a reason."""
    m = _DSN.match(text.strip())
    if not m:
        return default, text.strip()
    code = f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return code, text.strip()[m.end():]


def with_class(code: str, digit: str) -> str:
    """``4.2.0`` with class 5 -> ``5.2.0``."""
    return digit + code[1:]


def bounce_status(text: str) -> tuple[str, str]:
    """A refusal's text as a bounce's (status, reason): "5.7.1 no thanks" ->
    ("5.7.1", "no thanks"); any class becomes 5, no code gives 5.0.0."""
    code, rest = split_dsn(text, "5.0.0")
    return with_class(code, "5"), rest


__all__ = ["bounce_status", "split_dsn", "valid_dsn", "with_class"]
