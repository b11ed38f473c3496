"""``memcache:`` tables: a memcached cache, optionally in front of a backup table.

Postfix counterpart: src/global/dict_memcache.c; memcache_table(5).

Settings (main.cf-style file): ``memcache`` (``inet:localhost:11211`` or
``unix:/path``), ``key_format`` (``%s``; the %-expansions of the SQL tables),
``backup`` (a table consulted when memcached has no entry; its answer is stored in
memcached for ``ttl`` seconds), ``ttl`` (3600), ``flags`` (0), ``data_size_limit``
(10240), ``line_size_limit`` (1024), ``timeout`` (2), ``domain``.

A key that memcached cannot hold (a blank or control character, over 250 bytes) is
not found. If memcached is unreachable and there is a backup table, the backup's
answer is used; otherwise the lookup is a temporary failure.

Diagnostics: MapError for a bad configuration file; MapRetry when neither memcached
nor the backup can answer.
"""

from __future__ import annotations

from fastpost.mail.maps import _base
from fastpost.mail.maps._base import MapError, MapRetry
from fastpost.mail.maps._netbase import (
    DomainFilter, NetworkMap, Suppressed, expand, load_settings, no_escape,
)
from fastpost.mail.maps._sock import SockClient


class MemcacheMap(NetworkMap):
    type = "memcache"

    def __init__(self, name: str, flags: int = _base.DEFAULT_FLAGS, cfg=None):
        s = load_settings(name, cfg)
        self.key_format = s.get("key_format", "%s") or "%s"
        self.ttl = s.get_int("ttl", 3600)
        self.mc_flags = s.get_int("flags", 0)
        self.data_size_limit = s.get_int("data_size_limit", 10240)
        self.line_size_limit = s.get_int("line_size_limit", 1024)
        self.timeout = s.get_int("timeout", 2)
        self.domain = DomainFilter(s.get_list("domain"), cfg)
        backup = s.get("backup")
        self.backup = None
        if backup:
            from fastpost.mail.maps import open_map

            self.backup = open_map(backup, cfg, flags=flags)
        server = s.get("memcache", "inet:localhost:11211") or "inet:localhost:11211"
        if not server.startswith(("inet:", "unix:")):
            server = "inet:" + server
        super().__init__(name, flags, [server])

    def connect(self, host: str):
        return SockClient(host, self.timeout, 11211)

    def disconnect(self, conn) -> None:
        conn.close()

    def _key(self, key: str) -> str | None:
        try:
            mkey = expand(self.key_format, key, no_escape)
        except Suppressed:
            return None
        raw = mkey.encode("utf-8", "surrogateescape")
        if not raw or len(raw) > 250 or any(b <= 32 or b == 127 for b in raw):
            return None
        return mkey

    def query(self, conn, key: str) -> str | None:
        mkey = self._key(key)
        if mkey is None:
            return None
        conn.send(b"get " + mkey.encode("utf-8", "surrogateescape") + b"\r\n")
        value = None
        while True:
            line = conn.readline(self.line_size_limit)
            if line == b"END":
                break
            parts = line.split()
            if len(parts) < 4 or parts[0] != b"VALUE":
                raise ValueError(f"unexpected memcache reply: {line[:100]!r}")
            size = int(parts[3])
            if size > self.data_size_limit:
                raise MapRetry(f"{self.spec}: value too large ({size} bytes)")
            data = conn.readexact(size + 2)[:-2]
            value = data.decode("utf-8", "surrogateescape")
        return value

    def _store(self, key: str, value: str) -> None:
        mkey = self._key(key)
        if mkey is None:
            return
        data = value.encode("utf-8", "surrogateescape")
        for host in self.hostlist.order():
            try:
                conn = self.pool.take(host)
                conn.send(b"set %s %d %d %d\r\n%s\r\n" % (
                    mkey.encode("utf-8", "surrogateescape"), self.mc_flags, self.ttl,
                    len(data), data))
                conn.readline(self.line_size_limit)
                self.pool.give(host, conn)
            except (OSError, ValueError):
                pass
            return

    def get(self, key: str) -> str | None:
        key = self.fold(key)
        if not self.domain.allows(key):
            return None
        try:
            value = super().get(key)
        except MapRetry:
            if self.backup is None:
                raise
            return self.backup.get(key)
        if value is not None or self.backup is None:
            return value
        value = self.backup.get(key)
        if value is not None:
            self._store(key, value)
        return value


__all__ = ["MemcacheMap", "MapError"]
