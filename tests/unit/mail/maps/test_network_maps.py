"""SQL, LDAP, memcache, socketmap and tcp tables against real servers on loopback.

Servers come from conftest.py (PostgreSQL, MariaDB, slapd, memcached started once per
session); socketmap and tcp peers are small servers in this file. Where Debian ships
the matching Postfix plugin (postfix-pgsql, -mysql, -sqlite, -ldap), the same
configuration file is also queried with the real ``postmap`` and the answers must be
identical. A stopped server must give MapRetry, never "not found".
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

from fastpost.mail import maps
from fastpost.mail.maps import MapRetry, create_map

KEYS = ["a@example.com", "A@Example.COM", "o'q@example.com", "nobody@example.com",
        "x@example.org", "bare", "@example.org", "a@example.com'--"]


@pytest.fixture(autouse=True)
def fresh_cache():
    maps.close_all()
    yield
    maps.close_all()


def postmap_path():
    return shutil.which("postmap") or ("/usr/sbin/postmap" if os.path.exists("/usr/sbin/postmap")
                                       else None)


def plugin_installed(type_: str) -> bool:
    if type_ not in ("pgsql", "mysql", "sqlite", "ldap"):
        return True       # built into Debian's postfix package
    return os.path.exists(f"/usr/lib/postfix/postfix-{type_}.so")


def run_both(spec: str, keys: list[str]):
    """Return (postmap result, fastpost result) of ``-q -`` for keys."""
    stdin = "\n".join(keys) + "\n"
    theirs = subprocess.run([postmap_path(), "-q", "-", spec], input=stdin,
                            capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-m", "fastpost", "map", "-q", "-", spec],
                          input=stdin, capture_output=True, text=True)
    assert "Traceback" not in ours.stderr, ours.stderr
    return (theirs.stdout, theirs.returncode), (ours.stdout, ours.returncode)


def differential(type_: str, cf: str, keys=KEYS):
    if not postmap_path() or not plugin_installed(type_):
        return
    theirs, ours = run_both(f"{type_}:{cf}", keys)
    assert ours == theirs


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- the SQL family ------------------------------------------------------------------------

SQL_VARIANTS = {
    "plain": "query = SELECT target FROM alias WHERE address='%s'\n",
    "domain-key": "query = SELECT target FROM alias WHERE address='@%d'\n"
                  "result_format = %u+via-%1@%d\n",
    "filtered": "query = SELECT target FROM alias WHERE address='%s'\ndomain = example.com\n",
    "labels": "query = SELECT target FROM alias WHERE address='a@%2.%1'\n",
    "legacy": "table = alias\nselect_field = target\nwhere_field = address\n",
    "user-part": "query = SELECT target FROM alias WHERE address LIKE '%u@%%'\n",
}


def sql_cf(tmp_path, type_: str, server, variant: str, hosts: str | None = None) -> str:
    if type_ == "pgsql":
        head = (f"hosts = {hosts or f'inet:127.0.0.1:{server.port}'}\nuser = postgres\n"
                "dbname = mail\n")
    elif type_ == "mysql":
        head = f"hosts = {hosts or f'inet:127.0.0.1:{server.port}'}\nuser = root\ndbname = mail\n"
    else:
        head = f"dbpath = {server}\n"
    return write(tmp_path / f"{type_}-{variant}.cf", head + SQL_VARIANTS[variant])


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sqlite") / "mail.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alias (address text, target text)")
    conn.executemany("INSERT INTO alias VALUES (?, ?)", [
        ("a@example.com", "b@example.net"), ("a@example.com", "c@example.net"),
        ("o'q@example.com", "quoted@example.net"), ("@example.org", "catchall@example.net")])
    conn.commit()
    conn.close()
    return path


@pytest.fixture(params=["pgsql", "mysql", "sqlite"])
def sql(request, sqlite_db):
    type_ = request.param
    if type_ == "sqlite":
        return type_, sqlite_db
    return type_, request.getfixturevalue(f"{type_}_server")


@pytest.mark.parametrize("variant", list(SQL_VARIANTS))
def test_sql_lookups_match_postfix(sql, variant, tmp_path):
    type_, server = sql
    cf = sql_cf(tmp_path, type_, server, variant)
    m = create_map(f"{type_}:{cf}")
    if variant == "plain":
        assert m.get("A@Example.COM") == "b@example.net,c@example.net"   # folded, joined
        assert m.get("o'q@example.com") == "quoted@example.net"          # quoted safely
        assert m.get("nobody@example.com") is None
        assert m.get("a@example.com'--") is None
    if variant == "domain-key":
        assert m.get("x@example.org") == "catchall+via-org@example.net"
        assert m.get("bare") is None                                   # %d: no query
    if variant == "filtered":
        assert m.get("o'q@example.com") == "quoted@example.net"
        assert m.get("@example.org") is None
    differential(type_, cf)


def test_sql_expansion_limit_is_a_failure(sql, tmp_path):
    type_, server = sql
    cf = sql_cf(tmp_path, type_, server, "plain")
    with open(cf, "a") as fh:
        fh.write("expansion_limit = 1\n")
    m = create_map(f"{type_}:{cf}")
    assert m.get("o'q@example.com") == "quoted@example.net"
    with pytest.raises(MapRetry):
        m.get("a@example.com")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("type_", ["pgsql", "mysql"])
def test_sql_failover_between_hosts(type_, request, tmp_path):
    server = request.getfixturevalue(f"{type_}_server")
    hosts = f"inet:127.0.0.1:{_dead_port()} inet:127.0.0.1:{server.port}"
    m = create_map(f"{type_}:{sql_cf(tmp_path, type_, server, 'plain', hosts)}")
    for _ in range(3):   # whichever host comes first, the live one answers
        assert m.get("a@example.com") == "b@example.net,c@example.net"
    # the connection to the live host is kept and reused
    assert m.pool._idle.qsize() == 1


@pytest.mark.parametrize("type_", ["pgsql", "mysql"])
def test_sql_async_lookups(type_, request, tmp_path):
    server = request.getfixturevalue(f"{type_}_server")
    m = create_map(f"{type_}:{sql_cf(tmp_path, type_, server, 'plain')}")

    async def many():
        return await asyncio.gather(*(m.aget(k) for k in ["a@example.com", "nobody@x"] * 8))

    results = asyncio.run(many())
    assert results == ["b@example.net,c@example.net", None] * 8
    m.close()


@pytest.mark.parametrize("type_", ["pgsql", "mysql"])
def test_sql_stopped_server_is_a_temporary_failure(type_, request, tmp_path):
    server = request.getfixturevalue(f"{type_}_server")
    m = create_map(f"{type_}:{sql_cf(tmp_path, type_, server, 'plain')}")
    assert m.get("a@example.com") is not None
    server.stop()
    try:
        with pytest.raises(MapRetry):
            m.get("a@example.com")
        with pytest.raises(MapRetry):
            create_map(f"{type_}:{sql_cf(tmp_path, type_, server, 'plain')}").get("x@y")
    finally:
        server.start()
    assert m.get("a@example.com") is not None      # reconnects once the server is back


def test_sqlite_missing_database_is_a_temporary_failure(tmp_path):
    cf = write(tmp_path / "s.cf", f"dbpath = {tmp_path}/none.sqlite\n"
               "query = SELECT target FROM alias WHERE address='%s'\n")
    with pytest.raises(MapRetry):
        create_map(f"sqlite:{cf}").get("a@example.com")


def test_main_cf_prefix_settings(tmp_path, sqlite_db):
    from fastpost.mail.config import Config

    cfg = Config(str(tmp_path), text=f"mydb_dbpath = {sqlite_db}\n"
                 "mydb_query = SELECT target FROM alias WHERE address='%s'\n")
    assert create_map("sqlite:mydb", cfg).get("o'q@example.com") == "quoted@example.net"


# -- LDAP --------------------------------------------------------------------------------

def ldap_cf(tmp_path, server, extra: str = "", port: int | None = None) -> str:
    return write(tmp_path / "ldap.cf", (
        f"server_host = ldap://127.0.0.1:{port or server.port}\n"
        "search_base = ou=people,dc=example,dc=com\nquery_filter = (mail=%s)\n"
        "result_attribute = description\nbind = no\nversion = 3\n") + extra)


def test_ldap_lookups_match_postfix(ldap_server, tmp_path):
    cf = ldap_cf(tmp_path, ldap_server)
    m = create_map(f"ldap:{cf}")
    assert m.get("o'q@example.com") == "quoted@example.net"
    assert m.get("nobody@example.com") is None
    assert m.get("a*") is None                       # filter metacharacters are escaped
    differential("ldap", cf, KEYS + ["a*", "(x)"])


def test_ldap_special_result_attribute_and_format(ldap_server, tmp_path):
    cf = ldap_cf(tmp_path, ldap_server, "special_result_attribute = seeAlso\n"
                 "result_format = <%s>\n")
    m = create_map(f"ldap:{cf}")
    assert sorted(m.get("list@example.com").split(",")) == ["<ann@example.net>",
                                                            "<bob@example.net>"]
    differential("ldap", cf, ["list@example.com", "ann@example.com"])


def test_ldap_missing_base_is_not_found_and_down_is_failure(ldap_server, tmp_path):
    cf = ldap_cf(tmp_path, ldap_server)
    other = write(tmp_path / "nobase.cf", open(cf).read().replace(
        "ou=people,dc=example,dc=com", "ou=%d,dc=example,dc=com"))
    assert create_map(f"ldap:{other}").get("a@nothere.test") is None
    dead = ldap_cf(tmp_path, ldap_server, port=_dead_port())
    with pytest.raises(MapRetry):
        create_map(f"ldap:{dead}").get("a@example.com")
    m = create_map(f"ldap:{ldap_cf(tmp_path, ldap_server)}")
    assert m.get("a@example.com") is not None
    ldap_server.stop()
    try:
        with pytest.raises(MapRetry):
            m.get("a@example.com")
    finally:
        ldap_server.start()


# -- memcache ----------------------------------------------------------------------------

def mc_command(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)
        out = b""
        while not out.endswith((b"END\r\n", b"STORED\r\n")):
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        return out


def test_memcache_with_backup(memcached_server, tmp_path):
    port = memcached_server.port
    mc_command(port, b"set cached@example.com 0 0 6\r\nhello!\r\n")
    cf = write(tmp_path / "mc.cf", f"memcache = inet:127.0.0.1:{port}\n"
               "backup = inline:{b@example.com=from-backup}\nkey_format = %s\n")
    m = create_map(f"memcache:{cf}")
    assert m.get("CACHED@example.com") == "hello!"
    assert m.get("b@example.com") == "from-backup"
    assert b"from-backup" in mc_command(port, b"get b@example.com\r\n")   # stored for next time
    assert m.get("has space") is None
    assert m.get("nobody@example.com") is None
    differential("memcache", cf, ["cached@example.com", "nobody@example.com"])
    memcached_server.stop()
    assert m.get("b@example.com") == "from-backup"       # backup answers while memcache is down
    plain = write(tmp_path / "plain.cf", f"memcache = inet:127.0.0.1:{port}\n")
    with pytest.raises(MapRetry):
        create_map(f"memcache:{plain}").get("cached@example.com")


# -- socketmap and tcp peers -----------------------------------------------------------------

class LineServer(threading.Thread):
    """A tiny threaded TCP server: handler(bytes stream reader, writer) per connection."""

    def __init__(self, handler):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.connections = 0

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn, conn.makefile("rwb") as f:
            try:
                self.handler(f)
            except (OSError, ValueError):
                pass

    def close(self):
        self.sock.close()


TABLE = {"a@example.com": "b@example.net", "sp ace": "with%20space", "temp": None}


def socketmap_handler(f):
    while True:
        head = b""
        while not head.endswith(b":"):
            c = f.read(1)
            if not c:
                return
            head += c
        data = f.read(int(head[:-1]) + 1)[:-1].decode()
        name, _, key = data.partition(" ")
        if key == "temp":
            reply = "TEMP database busy"
        elif name == "aliases" and key in TABLE:
            reply = "OK " + TABLE[key]
        else:
            reply = "NOTFOUND "
        f.write(f"{len(reply.encode())}:{reply},".encode())
        f.flush()


def tcp_handler(f):
    for line in f:
        key = line.decode().strip()[4:]
        from urllib.parse import unquote

        key = unquote(key)
        if key == "temp":
            f.write(b"400 try again later\n")
        elif key in TABLE:
            f.write(b"200 " + TABLE[key].encode() + b"\n")
        else:
            f.write(b"500 not found\n")
        f.flush()


@pytest.fixture
def peers():
    s = LineServer(socketmap_handler)
    t = LineServer(tcp_handler)
    s.start()
    t.start()
    yield s, t
    s.close()
    t.close()


def test_socketmap(peers):
    s, _ = peers
    spec = f"socketmap:inet:127.0.0.1:{s.port}:aliases"
    m = create_map(spec)
    assert m.get("A@example.com") == "b@example.net"
    assert m.get("nobody") is None
    with pytest.raises(MapRetry):
        m.get("temp")
    assert s.connections == 1                       # one connection, reused
    if postmap_path():
        theirs, ours = run_both(spec, ["a@example.com", "nobody", "sp ace"])
        assert ours == theirs
    with pytest.raises(MapRetry):
        create_map(f"socketmap:inet:127.0.0.1:{_dead_port()}:aliases").get("x")


def test_tcp(peers):
    _, t = peers
    spec = f"tcp:127.0.0.1:{t.port}"
    m = create_map(spec)
    assert m.get("a@example.com") == "b@example.net"
    assert m.get("sp ace") == "with space"           # %XX in both directions
    assert m.get("nothere") is None
    with pytest.raises(MapRetry):
        m.get("temp")
    if postmap_path():
        theirs, ours = run_both(spec, ["a@example.com", "sp ace", "nothere"])
        assert ours == theirs
