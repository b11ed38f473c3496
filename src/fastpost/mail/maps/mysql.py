"""``mysql:`` tables: MySQL / MariaDB queries (mysql_table(5) configuration files).

Postfix counterpart: src/global/dict_mysql.c.

``hosts`` entries: ``host``, ``host:port``, ``inet:host:port``, ``unix:/path``. Also
honoured: ``option_file`` and ``option_group`` (client options files, as libmysql
reads them), ``tls_*`` are not supported. The driver is PyMySQL (pure Python); the
key is escaped with its MySQL string escaping (as mysql_real_escape_string does).

Diagnostics: see fastpost.mail.maps._sql.
"""

from __future__ import annotations

import pymysql
import pymysql.converters

from fastpost.mail.maps._netbase import split_hostport
from fastpost.mail.maps._sql import SqlMap

CONNECT_TIMEOUT = 10


class MysqlMap(SqlMap):
    type = "mysql"

    def connect(self, host: str):
        kw = dict(user=self.user or None, password=self.password or "",
                  database=self.dbname, connect_timeout=CONNECT_TIMEOUT, charset="utf8mb4",
                  autocommit=True)
        option_file = self.settings.get("option_file")
        if option_file:
            kw["read_default_file"] = option_file
            kw["read_default_group"] = self.settings.get("option_group", "client")
        h, port = split_hostport(host, 3306)
        if h == "unix":
            return pymysql.connect(unix_socket=port, **kw)
        return pymysql.connect(host=h, port=port, **kw)

    def disconnect(self, conn) -> None:
        conn.close()

    def escape(self, text: str) -> str:
        return pymysql.converters.escape_string(text)

    def execute(self, conn, sql: str) -> list[tuple]:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
