"""``randmap:{value, value, ...}``: every key finds one of the values, chosen at random.

Postfix counterpart: src/util/dict_random.c (used to spread mail over next hops, e.g.
``sender_dependent_default_transport_maps = randmap:{relay1:, relay2:}``).

Diagnostics: MapError for a name without braces or with no values.
"""

from __future__ import annotations

import random

from fastpost.mail.config import split_list, strip_braces
from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError
from fastpost.mail.maps.inline import braced_body


class RandMap(Map):
    type = "randmap"
    class_flags = _base.FIXED | _base.PATTERN

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS):
        super().__init__(name, flags)
        body = braced_body("randmap", name, "{value...}")
        self.values = [strip_braces(v) for v in split_list(body)]
        if not self.values:
            raise MapError(f'bad syntax: "randmap:{name}"; need "randmap:{{value...}}"')
        self._rng = random.Random()

    def get(self, key: str) -> str | None:
        return self._rng.choice(self.values)
