"""``pipemap:{type:name, ...}``: the value from one table is the key for the next.

Postfix counterpart: src/util/dict_pipe.c.

Not found as soon as any table in the chain does not find its key; a temporary failure
anywhere is a temporary failure of the pipe. Needs at least two tables.

Diagnostics: MapError for bad syntax or fewer than two tables.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError
from fastpost.mail.maps.unionmap import _member_flags, open_members


class PipeMap(Map):
    type = "pipemap"
    class_flags = 0

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, cfg=None):
        self.members = open_members("pipemap", name, flags, cfg)
        if len(self.members) < 2:
            raise MapError(f'bad syntax: "pipemap:{name}"; need "pipemap:{{type:name...}}" '
                           "with at least two tables")
        super().__init__(name, flags | _member_flags(self.members))

    def get(self, key: str) -> str | None:
        value: str | None = key
        for m in self.members:
            value = m.get(value)
            if value is None:
                return None
        return value

    async def aget(self, key: str) -> str | None:
        value: str | None = key
        for m in self.members:
            value = await m.aget(value)
            if value is None:
                return None
        return value
