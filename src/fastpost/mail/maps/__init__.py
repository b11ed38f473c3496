"""Lookup tables: ``type:name`` opening, the registry of types, and lists of tables.

Postfix counterpart: src/util/dict_open.c, src/global/maps.c, mail_dict.c,
dict_proxy.c (``proxy:`` is served in-process until a proxymap daemon exists).

    m = open_map("hash:/etc/postfix/access", cfg)      # opened once per process, cached
    m.get("example.com")        -> "REJECT" | None     # raises MapRetry on failure
    await m.aget(key)           # never blocks the event loop (network tables)
    maps = MapList.from_param(cfg, "virtual_alias_maps")
    maps.get(key, partial=False)    # first table that has the key wins; retry propagates

Types (one module each): hash btree lmdb (indexed: LMDB files), texthash inline static
fail environ randmap unionmap pipemap regexp pcre cidr sqlite pgsql mysql ldap memcache
socketmap tcp unix nis, and ``proxy:`` in front of any of them.

Keys are folded to lower case for fixed-string tables (FOLD_FIX, the default); pattern
tables (regexp, pcre, cidr) see the key as given and are asked only whole keys.

Diagnostics: ``MapError`` for a malformed spec (no ``type:``); a table that cannot be
opened (missing file, unsupported type, bad configuration) becomes a surrogate whose
lookups raise ``MapRetry`` with the reason, which is logged once as a warning.
"""

from __future__ import annotations

import importlib
import threading
from time import monotonic as _monotonic

from fastpost.mail.maps._base import (
    DEFAULT_FLAGS, DUP_IGNORE, DUP_REPLACE, DUP_WARN, FIXED, FOLD_FIX, FOLD_MUL, NETWORK,
    PATTERN, TRY0NULL, TRY1NULL, UTF8, WRITABLE, Map, MapError, MapRetry, SurrogateMap,
)

#: type -> "module:Class" (modules under fastpost.mail.maps), imported on first use.
TYPES: dict[str, str] = {
    "hash": "indexed:IndexedMap",
    "btree": "indexed:IndexedMap",
    "lmdb": "indexed:IndexedMap",
    "texthash": "texthash:TexthashMap",
    "inline": "inline:InlineMap",
    "static": "static:StaticMap",
    "fail": "fail:FailMap",
    "environ": "environ:EnvironMap",
    "randmap": "randmap:RandMap",
    "unionmap": "unionmap:UnionMap",
    "pipemap": "pipemap:PipeMap",
    "regexp": "regexp:RegexpMap",
    "pcre": "pcre:PcreMap",
    "cidr": "cidr:CidrMap",
    "sqlite": "sqlite:SqliteMap",
    "pgsql": "pgsql:PgsqlMap",
    "mysql": "mysql:MysqlMap",
    "ldap": "ldap:LdapMap",
    "memcache": "memcache:MemcacheMap",
    "socketmap": "socketmap:SocketMap",
    "tcp": "tcp:TcpMap",
    "unix": "unix:UnixMap",
    "nis": "nis:NisMap",
}

#: Types whose file is the table itself, read at open (postmap -q reads them directly).
INDEXED_TYPES = ("hash", "btree", "lmdb")
#: Types whose constructor takes the configuration (composites and config-file tables).
_NEEDS_CONFIG = ("unionmap", "pipemap", "sqlite", "pgsql", "mysql", "ldap", "memcache")

_cache: dict[tuple[str, int], Map] = {}
_lock = threading.RLock()  # reentrant: unionmap:/pipemap: open their members inside open_map


def split_spec(spec: str) -> tuple[str, str]:
    """Return (type, name) of ``type:name``; MapError when there is no type."""
    type_, colon, name = spec.partition(":")
    if not colon or not type_ or not type_.replace("_", "").isalnum():
        raise MapError(f'open dictionary: expecting "type:name" form instead of "{spec}"')
    return type_, name


def map_class(type_: str):
    """Return the Map class of a type; MapError for an unsupported type."""
    target = TYPES.get(type_)
    if target is None:
        raise MapError(f"unsupported dictionary type: {type_}")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(f"fastpost.mail.maps.{module}"), cls)


def create_map(spec: str, cfg=None, *, flags: int = DEFAULT_FLAGS, warn=None) -> Map:
    """Open a table now, uncached; errors raise (MapError, MapRetry) instead of a surrogate.

    Commands (``fastpost map``) use this to report problems and exit; daemons use
    open_map().
    """
    type_, name = split_spec(spec)
    if type_ == "proxy":
        # Served in-process until a proxymap daemon exists; same semantics.
        return create_map(name, cfg, flags=flags, warn=warn)
    cls = map_class(type_)
    if type_ in INDEXED_TYPES:
        return cls(name, flags, type_)
    if type_ in _NEEDS_CONFIG:
        return cls(name, flags, cfg=cfg)
    if warn is not None and type_ in ("texthash", "regexp", "pcre", "cidr"):
        return cls(name, flags, warn=warn)
    return cls(name, flags)


def open_map(spec: str, cfg=None, *, flags: int = DEFAULT_FLAGS) -> Map:
    """Return the process-wide table for spec, opening it on first use.

    A table whose source changed is reopened. A table that cannot be opened is a
    surrogate (every lookup raises MapRetry) and the reason is logged.
    """
    key = (spec, flags)
    with _lock:
        m = _cache.get(key)
        if m is not None and not isinstance(m, SurrogateMap) and not m.changed():
            return m
        try:
            m = create_map(spec, cfg, flags=flags)
        except (MapError, MapRetry, OSError) as exc:
            if isinstance(exc, MapError) and "expecting \"type:name\"" in str(exc):
                raise
            from fastpost.util import log

            type_, name = split_spec(spec)
            log.warn("%s:%s is unavailable. %s", type_, name, exc)
            m = SurrogateMap(type_, name, flags, str(exc))
        _cache[key] = m
        return m


def close_all() -> None:
    """Close every cached table (tests, reload)."""
    with _lock:
        for m in _cache.values():
            m.close()
        _cache.clear()


class MapList:
    """The tables of one parameter (``hash:/etc/a, cidr:/etc/b``): first match wins.

    A temporary failure of a table stops the search and propagates (Postfix maps_find):
    a later table is not asked, so a result never depends on an outage.
    """

    def __init__(self, title: str, maps: list[Map]):
        self.title = title
        self.maps = maps
        self._inline: bool | None = None

    @property
    def inline(self) -> bool:
        """True when every table answers inline (Map.inline): get() may stand for
        ``await aget()``."""
        v = self._inline
        if v is None:
            v = self._inline = all(m.inline for m in self.maps)
        return v

    @classmethod
    def from_param(cls, cfg, name: str, *, flags: int = DEFAULT_FLAGS) -> MapList:
        """Open the tables listed in parameter ``name`` of cfg."""
        from fastpost.mail.config import strip_braces

        specs = [strip_braces(s) for s in cfg.get_list(name)]
        return cls(name, [open_map(s, cfg, flags=flags) for s in specs])

    @classmethod
    def from_specs(cls, title: str, specs: list[str], cfg=None, *,
                   flags: int = DEFAULT_FLAGS) -> MapList:
        return cls(title, [open_map(s, cfg, flags=flags) for s in specs])

    def __bool__(self) -> bool:
        return bool(self.maps)

    def __repr__(self) -> str:
        return f"<MapList {self.title}: {', '.join(m.spec for m in self.maps)}>"

    def get(self, key: str, *, partial: bool = False) -> str | None:
        """Return the first value found; ``partial`` keys skip pattern tables."""
        for m in self.maps:
            if partial and not m.is_fixed:
                continue
            value = m.get(key)
            if value is not None:
                return value
        return None

    async def aget(self, key: str, *, partial: bool = False) -> str | None:
        for m in self.maps:
            if partial and not m.is_fixed:
                continue
            value = await m.aget(key)
            if value is not None:
                return value
        return None


class TableRevisions:
    """When a memo of answers derived from some tables must be forgotten.

    ``current()`` is True while every table would still answer as it did when the
    memo's entries were made, False when the caller must empty its memo (a table was
    re-read, or cannot be read: the memo then stays unused until it can). Each table
    is asked (Map.revision: the same change check a lookup makes) only once its next
    check is due, so between checks this costs one clock read. ``memoisable`` is False
    when a table cannot promise anything (Map.revision() is None: network tables and
    the like): such a caller keeps no memo at all.
    """

    __slots__ = ("maps", "memoisable", "_tokens", "_until")

    def __init__(self, maps):
        self.maps = tuple(maps)
        self._tokens: tuple | None = None
        self._until = 0.0
        try:
            self.memoisable = all(m.revision() is not None for m in self.maps)
        except MapRetry:  # unreadable now; whether it can promise is its class's trait
            self.memoisable = all(type(m).revision is not Map.revision for m in self.maps)

    def current(self) -> bool:
        if _monotonic() < self._until:
            return True
        seen = self._tokens
        self._tokens = None
        self._until = 0.0
        try:
            revs = [m.revision() for m in self.maps]
        except MapRetry:
            return False
        if any(r is None for r in revs):
            return False
        tokens = tuple(r[0] for r in revs)
        self._tokens = tokens
        self._until = min((r[1] for r in revs), default=float("inf"))
        return seen is not None and all(a is b for a, b in zip(tokens, seen))


__all__ = [
    "Map", "MapList", "TableRevisions", "MapError", "MapRetry", "open_map", "create_map", "close_all",
    "split_spec", "TYPES", "DEFAULT_FLAGS", "FOLD_FIX", "FOLD_MUL", "DUP_WARN",
    "DUP_IGNORE", "DUP_REPLACE", "TRY0NULL", "TRY1NULL", "PATTERN", "FIXED", "NETWORK",
    "WRITABLE", "UTF8",
]
