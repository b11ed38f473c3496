"""``texthash:`` tables: a postmap source file read into memory at open.

Postfix counterpart: src/util/dict_thash.c.

The file has postmap's input format (``key whitespace value``, continuation lines,
``#`` comments). Keys are folded like indexed tables; a duplicate key keeps the first
value and is reported. The file is re-read when it changes.

Diagnostics: an unreadable file is a MapRetry; format problems are warnings naming
file and line (the line is ignored), as Postfix does.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import FileMap
from fastpost.mail.maps.source import records


class TexthashMap(FileMap):
    type = "texthash"
    class_flags = _base.FIXED

    def _load(self, text: str) -> None:
        table: dict[str, str] = {}
        fold = bool(self.flags & _base.FOLD_FIX)
        for number, key, value in records(text, self.warn, ignore_note=True):
            if fold:
                key = key.casefold()
            if key in table:
                if self.flags & _base.DUP_REPLACE:
                    table[key] = value
                elif not self.flags & _base.DUP_IGNORE:
                    self.warn(number, f'duplicate entry: "{key}"')
                continue
            table[key] = value
        self._table = table

    def _lookup(self, key: str) -> str | None:
        return self._table.get(key)

    def items(self):
        self.check_reload()
        return iter(list(self._table.items()))
