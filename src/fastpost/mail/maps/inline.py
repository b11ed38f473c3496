"""``inline:{name=value, {name = value with spaces}, ...}`` tables.

Postfix counterpart: src/util/dict_inline.c.

Elements are separated by commas and/or whitespace; ``{ ... }`` groups one element
that may contain whitespace. Each element is ``name=value``: the name runs to the
first blank or ``=``, blanks around ``=`` are allowed only inside braces. Keys are
folded (fixed table); a later duplicate replaces an earlier one; ``-s`` lists the
entries in the order written.

Diagnostics: MapError with Postfix's wording for a missing ``=``, an empty table or
unbalanced braces (postmap exits 1; a daemon gets a surrogate table that defers).
"""

from __future__ import annotations

from fastpost.mail.config import split_list
from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError


def braced_body(type_: str, name: str, need: str) -> str:
    """Return the text inside ``{...}`` of a composite table name, or raise MapError."""
    if len(name) < 2 or name[0] != "{" or name[-1] != "}":
        raise MapError(f'bad syntax: "{type_}:{name}"; need "{type_}:{need}"')
    return name[1:-1]


def split_nameval(element: str) -> tuple[str, str] | None:
    """Split ``name=value`` (inside braces: ``name = value``); None when malformed.

    The name ends at a blank or ``=`` outside double quotes (``"a b"@x=y`` works).
    """
    text = element.strip()
    i = 0
    quoted = False
    while i < len(text) and (quoted or text[i] not in " \t="):
        if text[i] == '"':
            quoted = not quoted
        i += 1
    name = text[:i]
    rest = text[i:].lstrip(" \t")
    if not name or not rest.startswith("="):
        return None
    return name, rest[1:].strip()


class InlineMap(Map):
    type = "inline"
    class_flags = _base.FIXED

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        super().__init__(name, flags)
        body = braced_body("inline", name, "{name=value...}")
        elements = split_list(body)
        if not elements:
            raise MapError(f'bad syntax: "inline:{name}"; need "inline:{{name=value...}}"')
        table: dict[str, str] = {}
        for element in elements:
            braced = element.startswith("{")
            if braced:
                if not element.endswith("}"):
                    raise MapError(f'bad syntax: "inline:{name}"; need "inline:{{name=value...}}"')
                element = element[1:-1]
            pair = split_nameval(element) if braced else (
                tuple(element.split("=", 1)) if "=" in element and element[0] != "=" else None)
            if pair is None:
                raise MapError(f"missing '=' after attribute name: \"inline:{name}\"; "
                               f'need "inline:{{name=value...}}"')
            key, value = pair
            if self.flags & _base.FOLD_FIX:
                key = key.casefold()
            table[key] = value
        self._table = table

    def revision(self) -> tuple[object, float]:
        """Fixed when opened: never changes."""
        return self, float("inf")

    def _lookup(self, key: str) -> str | None:
        return self._table.get(key)

    def items(self):
        return iter(list(self._table.items()))
