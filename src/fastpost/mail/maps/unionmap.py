"""``unionmap:{type:name, ...}``: ask every table, join all results with commas.

Postfix counterpart: src/util/dict_union.c.

The key goes to each table in turn; the values found are joined with ``,`` (not found
when no table has the key). A temporary failure in any table is a temporary failure
of the union. The union is a pattern table unless every member is fixed.

Diagnostics: MapError for bad syntax; members that cannot be opened are surrogates.
"""

from __future__ import annotations

from fastpost.mail.config import split_list, strip_braces
from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError
from fastpost.mail.maps.inline import braced_body


def open_members(type_: str, name: str, flags: int, cfg) -> list[Map]:
    from fastpost.mail.maps import open_map

    body = braced_body(type_, name, "{type:name...}")
    specs = [strip_braces(s) for s in split_list(body)]
    if not specs:
        raise MapError(f'bad syntax: "{type_}:{name}"; need "{type_}:{{type:name...}}"')
    return [open_map(s, cfg, flags=flags) for s in specs]


def _member_flags(members: list[Map]) -> int:
    if all(m.is_fixed and not m.is_pattern for m in members):
        return _base.FIXED
    return _base.PATTERN


class UnionMap(Map):
    type = "unionmap"
    class_flags = 0

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, cfg=None):
        self.members = open_members("unionmap", name, flags, cfg)
        super().__init__(name, flags | _member_flags(self.members))

    def get(self, key: str) -> str | None:
        found = [v for v in (m.get(key) for m in self.members) if v is not None]
        return ",".join(found) if found else None

    async def aget(self, key: str) -> str | None:
        found = []
        for m in self.members:
            v = await m.aget(key)
            if v is not None:
                found.append(v)
        return ",".join(found) if found else None
