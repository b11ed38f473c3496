"""``sqlite:`` tables: queries against an SQLite database file (sqlite_table(5)).

Postfix counterpart: src/global/dict_sqlite.c.

Settings: ``dbpath`` (the database file), ``query`` (or the legacy fields),
``result_format``, ``domain``, ``expansion_limit``. The file is opened read-only; a
missing or locked database is a temporary failure. Lookups are fast local calls, so
aget() answers inline.

Diagnostics: MapError without ``dbpath``; MapRetry when the database cannot be read.
"""

from __future__ import annotations

import sqlite3
from fastpost.mail.maps import _base
from fastpost.mail.maps._base import MapError, MapRetry
from fastpost.mail.maps._netbase import load_settings
from fastpost.mail.maps._sql import SqlMap


class SqliteMap(SqlMap):
    type = "sqlite"
    needs_hosts = False
    class_flags = _base.FIXED

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, cfg=None):
        s = load_settings(name, cfg)
        self.dbpath = s.get("dbpath")
        if not self.dbpath:
            raise MapError(f"{s.path}: missing dbpath setting")
        s.values.setdefault("dbname", self.dbpath)
        super().__init__(name, flags, cfg, settings=s)

    def connect(self, host: str):
        conn = sqlite3.connect(f"file:{self.dbpath}?mode=ro", uri=True, timeout=5,
                               check_same_thread=False)
        return conn

    def disconnect(self, conn) -> None:
        conn.close()

    def escape(self, text: str) -> str:
        return text.replace("'", "''")

    def execute(self, conn, sql: str) -> list[tuple]:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.Error as exc:
            raise MapRetry(f"{self.spec}: {exc}") from exc

    async def aget(self, key: str) -> str | None:
        return self.get(key)
