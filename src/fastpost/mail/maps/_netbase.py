"""What the database and network tables share: configuration files, %-expansion,
the ``domain`` filter, result formatting, host failover and off-loop execution.

Postfix counterpart: src/global/cfg_parser.c, db_common.c (query and result
expansion, domain filter), and the host handling of dict_mysql.c / dict_pgsql.c.

Configuration files have main.cf syntax (``name = value``, continuation lines,
comments). A table name that is not an absolute path names main.cf parameters
instead: ``pgsql:pg`` reads ``pg_hosts``, ``pg_query``... (Postfix's cfg_parser). Query expansion (``query``, LDAP ``query_filter``/``search_base``):

    %%   a literal %            %s  the key
    %u   local part of an address key (the whole key when it has no @);
         an empty local part suppresses the query (not found)
    %d   domain of an address key; no domain suppresses the query
    %1..%9   labels of the key's domain from the right (%1 = top level);
         too few labels (or no domain) suppress the query
    %S %U %D  the same as %s %u %d in a query

``result_format`` applies to each value found: %s %u %d of the *value* (a value
without a domain is skipped when %d is used), %S %U %D %1..%9 of the *key*.
Values are joined with commas; more than ``expansion_limit`` values (0 = no limit)
is a temporary failure.

``domain``: when set (names, /file names or type:table), only keys ``user@domain``
with a non-empty local part and a listed domain are looked up; other keys are not
found without a query.

Hosts: tried in random order (UNIX-domain sockets first); a host that fails is
skipped for 60 seconds while others work; one open connection per host is reused.
Network lookups from an event loop (``aget``) run on a bounded thread pool (one
connection per worker), never on the loop.

Diagnostics: MapError naming file and line for a bad configuration file; MapRetry
when no host answers, a query fails, or the expansion limit is exceeded.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastpost.mail.config import ConfigError, read_logical_lines, split_list
from fastpost.mail.maps import _base
from fastpost.mail.maps._base import Map, MapError, MapRetry, bad_utf8

#: Seconds a failed host is skipped while others are tried.
HOST_RETRY_INTERVAL = 60.0
#: Worker threads (and connections) per network table for aget().
POOL_SIZE = 4


def parse_cf(path: str) -> dict[str, str]:
    """Read a table configuration file into {name: value}; MapError with file and line."""
    values: dict[str, str] = {}
    try:
        for number, line in read_logical_lines(path):
            name, eq, value = line.partition("=")
            if not eq:
                raise MapError(f'{path}, line {number}: missing \'=\' after attribute '
                               f'name: "{name.strip()}"')
            values[name.strip()] = value.strip()
    except OSError as exc:
        raise MapRetry(f"open {path}: {exc.strerror}") from exc
    except ConfigError as exc:
        raise MapError(str(exc)) from exc
    return values


class Settings:
    """Typed access to a table configuration file's values."""

    def __init__(self, path: str, values: dict[str, str] | None = None):
        self.path = path
        self.values = parse_cf(path) if values is None else values

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def get_int(self, name: str, default: int) -> int:
        text = self.values.get(name)
        if text is None or text == "":
            return default
        try:
            return int(text)
        except ValueError:
            raise MapError(f"{self.path}: bad numerical configuration: {name} = {text}")

    def get_bool(self, name: str, default: bool) -> bool:
        text = self.values.get(name)
        if text is None or text == "":
            return default
        low = text.lower()
        if low in ("yes", "true", "1"):
            return True
        if low in ("no", "false", "0"):
            return False
        raise MapError(f"{self.path}: bad boolean configuration: {name} = {text}")

    def get_list(self, name: str, default: str = "") -> list[str]:
        return split_list(self.values.get(name, default))


# -- expansion ------------------------------------------------------------------------

class Suppressed(Exception):
    """The query or this result is not applicable to the key (not found, no query)."""


def _parts(text: str) -> tuple[str, str | None]:
    local, at, domain = text.rpartition("@")
    if not at:
        return text, None
    return local, domain


def expand(template: str, key: str, escape, *, value: str | None = None) -> str:
    """Expand %-sequences of a query (value None) or result_format (value given)."""
    out: list[str] = []
    i, n = 0, len(template)
    klocal, kdomain = _parts(key)
    while i < n:
        c = template[i]
        if c != "%" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        d = template[i + 1]
        i += 2
        if d == "%":
            out.append("%")
            continue
        subject = value if (value is not None and d in "sud") else key
        if d in "sS":
            out.append(escape(subject))
        elif d in "uU":
            local, domain = _parts(subject)
            if domain is not None and local == "":
                raise Suppressed()
            out.append(escape(local))
        elif d in "dD":
            local, domain = _parts(subject)
            if domain is None:
                raise Suppressed()
            out.append(escape(domain))
        elif d.isdigit() and d != "0":
            if kdomain is None:
                raise Suppressed()
            labels = kdomain.split(".")
            idx = int(d)
            if idx > len(labels):
                raise Suppressed()
            out.append(escape(labels[-idx]))
        else:
            raise MapError(f"invalid %-expansion '%{d}' in '{template}'")
    return "".join(out)


def no_escape(text: str) -> str:
    return text


class DomainFilter:
    """The ``domain`` setting: which keys are eligible for a query at all."""

    def __init__(self, items: list[str], cfg=None):
        self.names: set[str] = set()
        self.tables: list[Map] = []
        for item in items:
            if item.startswith("/"):
                try:
                    with open(item, encoding="utf-8", errors="surrogateescape") as fh:
                        for line in fh:
                            line = line.split("#", 1)[0]
                            self.names.update(x.lower() for x in split_list(line))
                except OSError as exc:
                    raise MapRetry(f"open {item}: {exc.strerror}") from exc
            elif ":" in item:
                from fastpost.mail.maps import open_map

                self.tables.append(open_map(item, cfg))
            else:
                self.names.add(item.lower())
        self.active = bool(items)

    def allows(self, key: str) -> bool:
        if not self.active:
            return True
        local, at, domain = key.rpartition("@")
        if not at or not local or not domain:
            return False
        domain = domain.lower()
        if domain in self.names:
            return True
        return any(t.get(domain) is not None for t in self.tables)


def format_results(values: list[str], key: str, result_format: str, limit: int,
                   spec: str) -> str | None:
    """Apply result_format to each value; join with commas; enforce expansion_limit."""
    out: list[str] = []
    for value in values:
        if value is None or value == "":
            continue
        try:
            out.append(expand(result_format, key, no_escape, value=value))
        except Suppressed:
            continue
        if limit and len(out) > limit:
            raise MapRetry(f"{spec}: expansion limit exceeded for key: '{key}'")
    return ",".join(out) if out else None


# -- hosts and connections --------------------------------------------------------------

class HostList:
    """Hosts in failover order; failed hosts are skipped for HOST_RETRY_INTERVAL."""

    def __init__(self, hosts: list[str]):
        self.hosts = hosts
        self.dead_until: dict[str, float] = {}
        self.lock = threading.Lock()

    def order(self) -> list[str]:
        now = time.monotonic()
        with self.lock:
            alive = [h for h in self.hosts if self.dead_until.get(h, 0) <= now]
            dead = [h for h in self.hosts if self.dead_until.get(h, 0) > now]
        unix = [h for h in alive if h.startswith("unix:") or h.startswith("/")]
        inet = [h for h in alive if h not in unix]
        random.shuffle(unix)
        random.shuffle(inet)
        return unix + inet + dead     # dead hosts last: better than failing outright

    def failed(self, host: str) -> None:
        with self.lock:
            self.dead_until[host] = time.monotonic() + HOST_RETRY_INTERVAL

    def worked(self, host: str) -> None:
        with self.lock:
            self.dead_until.pop(host, None)


class ConnectionPool:
    """Idle connections by host, reused; at most POOL_SIZE in use at once."""

    def __init__(self, connect, close):
        self._connect = connect
        self._close = close
        self._idle: queue.LifoQueue = queue.LifoQueue()

    def take(self, host: str):
        kept = []
        conn = None
        while True:
            try:
                h, c = self._idle.get_nowait()
            except queue.Empty:
                break
            if h == host:
                conn = c
                break
            kept.append((h, c))
        for item in kept:
            self._idle.put(item)
        return conn if conn is not None else self._connect(host)

    def give(self, host: str, conn) -> None:
        self._idle.put((host, conn))

    def discard(self, conn) -> None:
        try:
            self._close(conn)
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            pass

    def close_all(self) -> None:
        while True:
            try:
                _, c = self._idle.get_nowait()
            except queue.Empty:
                return
            self.discard(c)


class NetworkMap(Map):
    """A table answered by servers: synchronous get(), aget() on a bounded thread pool.

    Subclasses implement ``connect(host)``, ``disconnect(conn)`` and
    ``query(conn, key) -> list[str] | None`` (None: suppressed, not found), and raise
    any exception for a failure of that host.
    """

    class_flags = _base.FIXED | _base.NETWORK

    def __init__(self, name: str, flags: int, hosts: list[str]):
        super().__init__(name, flags)
        self.hostlist = HostList(hosts)
        self.pool = ConnectionPool(self.connect, self.disconnect)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    # subclass interface
    def connect(self, host: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def disconnect(self, conn) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def query(self, conn, key: str) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def eligible(self, key: str) -> bool:
        return True

    def get(self, key: str) -> str | None:
        if not key.isascii() and bad_utf8(self, key):
            return None
        key = self.fold(key)
        if not self.eligible(key):
            return None
        errors = []
        for host in self.hostlist.order():
            try:
                conn = self.pool.take(host)
            except Exception as exc:  # noqa: BLE001 - any driver error means "host down"
                self.hostlist.failed(host)
                errors.append(f"{host}: {exc}")
                continue
            try:
                result = self.query(conn, key)
            except MapRetry:
                self.pool.give(host, conn)
                raise
            except Exception as exc:  # noqa: BLE001
                self.pool.discard(conn)
                self.hostlist.failed(host)
                errors.append(f"{host}: {exc}")
                continue
            self.pool.give(host, conn)
            self.hostlist.worked(host)
            return result
        raise MapRetry(f"{self.spec}: no server answered: " + "; ".join(errors)
                       if errors else f"{self.spec}: no server configured")

    async def aget(self, key: str) -> str | None:
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=POOL_SIZE, thread_name_prefix=f"map-{self.type}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.get, key)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self.pool.close_all()


def split_hostport(text: str, default_port: int) -> tuple[str, int | str]:
    """Return (host, port) of ``host``, ``host:port``, ``inet:host:port``,
    ``[v6]:port``, or ("unix", path) of ``unix:/path`` and ``/path``."""
    if text.startswith("unix:"):
        return "unix", text[5:]
    if text.startswith("/"):
        return "unix", text
    if text.startswith("inet:"):
        text = text[5:]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if port and not port.isdigit():
        raise MapError(f"bad port in host specification: {text}")
    return host, int(port) if port else default_port


def load_settings(name: str, cfg) -> Settings:
    """The settings of a table: the file ``name`` when it is an absolute path,
    otherwise the main.cf parameters ``name_*`` (``mysql:mydb`` reads ``mydb_hosts``,
    ``mydb_query``...), as Postfix's cfg_parser does."""
    if name.startswith("/"):
        return Settings(name)
    prefix = name + "_"
    values = {}
    if cfg is not None:
        for key in list(cfg.values) + list(cfg.overrides):
            if key.startswith(prefix):
                values[key[len(prefix):]] = cfg.get(key)
    return Settings(f"main.cf ({prefix}*)", values)
