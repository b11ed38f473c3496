"""The SQL tables' common part: configuration, query building, result assembly.

Postfix counterpart: src/global/dict_mysql.c, dict_pgsql.c, dict_sqlite.c and their
shared db_common.c; formats mysql_table(5), pgsql_table(5), sqlite_table(5).

Settings: ``hosts`` (not sqlite), ``user``, ``password``, ``dbname``, ``query`` (or
the legacy ``table``, ``select_field``, ``where_field``, ``additional_conditions``),
``result_format`` (default ``%s``), ``domain``, ``expansion_limit`` (0). Every column
of every row returned is one value; NULL and empty values are skipped.

Diagnostics: MapError for a file without ``dbname``/``query``; MapRetry when no host
answers or a query fails (the host is then skipped for a while).
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import MapError
from fastpost.mail.maps._netbase import (
    DomainFilter, NetworkMap, Settings, Suppressed, load_settings, expand, format_results,
)


class SqlMap(NetworkMap):
    """Subclasses set ``type`` and implement connect/disconnect/execute/escape."""

    default_hosts = "localhost"
    needs_hosts = True

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, cfg=None,
                 settings: Settings | None = None):
        self.settings = s = settings or load_settings(name, cfg)
        self.user = s.get("user")
        self.password = s.get("password")
        self.dbname = s.get("dbname")
        if not self.dbname:
            raise MapError(f"{s.path}: missing dbname setting")
        self.query_template = s.get("query") or self._legacy_query(s)
        self.result_format = s.get("result_format", "%s") or "%s"
        self.expansion_limit = s.get_int("expansion_limit", 0)
        self.domain = DomainFilter(s.get_list("domain"), cfg)
        hosts = s.get_list("hosts", self.default_hosts) if self.needs_hosts else ["-"]
        super().__init__(name, flags, hosts)

    def _legacy_query(self, s: Settings) -> str:
        table, select, where = s.get("table"), s.get("select_field"), s.get("where_field")
        if not (table and select and where):
            raise MapError(f"{s.path}: missing query setting")
        extra = s.get("additional_conditions")
        return f"SELECT {select} FROM {table} WHERE {where} = '%s' {extra}".rstrip()

    def eligible(self, key: str) -> bool:
        return self.domain.allows(key)

    def escape(self, text: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def execute(self, conn, sql: str) -> list[tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    def query(self, conn, key: str) -> str | None:
        try:
            sql = expand(self.query_template, key, self.escape)
        except Suppressed:
            return None
        values = []
        for row in self.execute(conn, sql):
            for col in row:
                if col is None:
                    continue
                if isinstance(col, (bytes, bytearray, memoryview)):
                    col = bytes(col).decode("utf-8", "surrogateescape")
                values.append(str(col))
        return format_results(values, key, self.result_format, self.expansion_limit,
                              self.spec)
