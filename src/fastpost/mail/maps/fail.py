"""``fail:name``: every lookup is a temporary failure (testing deferral paths).

Postfix counterpart: src/util/dict_fail.c.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapRetry


class FailMap(Map):
    type = "fail"
    class_flags = _base.FIXED | _base.PATTERN

    def get(self, key: str) -> str | None:
        raise MapRetry(f"table {self.spec}: query error: Application error")

    def items(self):
        raise MapRetry(f"table {self.spec}: query error: Application error")
