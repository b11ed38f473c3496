"""``pgsql:`` tables: PostgreSQL queries (pgsql_table(5) configuration files).

Postfix counterpart: src/global/dict_pgsql.c.

``hosts`` entries: ``host``, ``host:port``, ``inet:host:port``, ``unix:/dir`` or a
socket path, or ``postgresql://`` URIs (user, password, host, port, dbname taken from
the URI when present). The driver is pg8000 (pure Python). Strings are quoted for
``standard_conforming_strings = on`` (the default since PostgreSQL 9.1): a quote is
doubled, backslashes are plain characters.

Diagnostics: see fastpost.mail.maps._sql.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

import pg8000.native

from fastpost.mail.maps._netbase import split_hostport
from fastpost.mail.maps._sql import SqlMap

CONNECT_TIMEOUT = 10


class PgsqlMap(SqlMap):
    type = "pgsql"

    def connect(self, host: str):
        kw = dict(user=self.user or "postgres", password=self.password or None,
                  database=self.dbname, timeout=CONNECT_TIMEOUT)
        if host.startswith("postgresql://") or host.startswith("postgres://"):
            u = urlparse(host)
            if u.username:
                kw["user"] = unquote(u.username)
            if u.password:
                kw["password"] = unquote(u.password)
            if u.path.strip("/"):
                kw["database"] = u.path.strip("/")
            kw["host"] = u.hostname or "localhost"
            kw["port"] = u.port or 5432
            return pg8000.native.Connection(**kw)
        h, port = split_hostport(host, 5432)
        if h == "unix":
            path = port if not os.path.isdir(port) else os.path.join(port, ".s.PGSQL.5432")
            return pg8000.native.Connection(unix_sock=path, **kw)
        return pg8000.native.Connection(host=h, port=port, **kw)

    def disconnect(self, conn) -> None:
        conn.close()

    def escape(self, text: str) -> str:
        return text.replace("\0", "").replace("'", "''")

    def execute(self, conn, sql: str) -> list[tuple]:
        return conn.run(sql) or []
