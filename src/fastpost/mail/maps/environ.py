"""``environ:name``: look keys up in the process environment.

Postfix counterpart: src/util/dict_env.c. Keys are not folded (environment names are
case-sensitive). Daemons run with a cleaned environment (import_environment), so this
is mostly useful for testing and for commands.
"""

from __future__ import annotations

import os

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, bad_utf8


class EnvironMap(Map):
    type = "environ"
    class_flags = _base.FIXED

    def get(self, key: str) -> str | None:
        if not key.isascii() and bad_utf8(self, key):
            return None
        return os.environ.get(key)

    def items(self):
        return iter(list(os.environ.items()))
