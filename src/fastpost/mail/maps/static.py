"""``static:value`` and ``static:{text with spaces}``: every key finds the same value.

Postfix counterpart: src/util/dict_static.c.

Diagnostics: MapError for an empty value or an unbalanced ``{`` (Postfix's wording).
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError


class StaticMap(Map):
    type = "static"
    class_flags = _base.FIXED

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        super().__init__(name, flags)
        value = name
        if value.startswith("{"):
            if not value.endswith("}"):
                raise MapError(f'bad static:name syntax: missing \'}}\' in "{name}"')
            value = value[1:-1].strip()
        elif not value:
            raise MapError('open dictionary: expecting "type:name" form instead of "static:"')
        self.value = value

    def revision(self) -> tuple[object, float]:
        """Fixed when opened: never changes."""
        return self, float("inf")

    def _lookup(self, key: str) -> str | None:
        return self.value

    def items(self):
        raise MapError(f"table {self.spec}: sequence operation is not supported")
