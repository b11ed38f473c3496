"""Real database and directory servers from Debian, started once per test session on
loopback with a fixture schema in a private directory, for the network table tests.

Each fixture skips (with the package to install) when the server is not installed;
``./dev test`` installs them from tests/apt-packages.txt. Every server is stopped at
the end of the session; nothing touches the system's own instances.

Fixture data (the same in every server):

    alias  key               value
           a@example.com     b@example.net
           a@example.com     c@example.net      (two rows: results are joined)
           o'q@example.com   quoted@example.net (a quote in the key)
           @example.org      catchall@example.net
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROWS = [
    ("a@example.com", "b@example.net"),
    ("a@example.com", "c@example.net"),
    ("o'q@example.com", "quoted@example.net"),
    ("@example.org", "catchall@example.net"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def need(path: str, package: str) -> str:
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if not found:
        pytest.skip(f"{path} not installed (apt-get install {package}; ./dev test does)")
    return found


def private_dir(owner: str | None = None) -> str:
    """A directory outside pytest's root-only tmp tree, owned by a server's user."""
    d = tempfile.mkdtemp(prefix="fastpost-maps-")
    os.chmod(d, 0o755)
    if owner and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


class Server:
    def __init__(self, port: int, directory: str, stop, start):
        self.port = port
        self.dir = directory
        self._stop = stop
        self._start = start

    def stop(self) -> None:
        self._stop()

    def start(self) -> None:
        self._start()


# -- PostgreSQL ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pgsql_server():
    bindir = "/usr/lib/postgresql/15/bin"
    need(f"{bindir}/initdb", "postgresql")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as another user needs root (CI runs as root)")
    d = private_dir("postgres")
    data = os.path.join(d, "data")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres",
                            "--no-sync"], check=True, capture_output=True)

    def start():
        subprocess.run(as_pg + [f"{bindir}/pg_ctl", "-D", data, "-w", "-l",
                                os.path.join(d, "log"), "-o",
                                f"-p {port} -c listen_addresses=127.0.0.1 -k {d} -c fsync=off",
                                "start"], check=True, capture_output=True)

    def stop():
        subprocess.run(as_pg + [f"{bindir}/pg_ctl", "-D", data, "-w", "-m", "fast", "stop"],
                       capture_output=True)

    start()
    import pg8000.native

    conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=port,
                                    database="postgres")
    conn.run("CREATE DATABASE mail")
    conn.close()
    conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=port,
                                    database="mail")
    conn.run("CREATE TABLE alias (address text, target text)")
    for k, v in ROWS:
        conn.run("INSERT INTO alias VALUES (:k, :v)", k=k, v=v)
    conn.close()
    yield Server(port, d, stop, start)
    stop()
    shutil.rmtree(d, ignore_errors=True)


# -- MariaDB ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mysql_server():
    mariadbd = need("/usr/sbin/mariadbd", "mariadb-server")
    install = need("mariadb-install-db", "mariadb-server")
    if os.geteuid() != 0:
        pytest.skip("this MariaDB fixture runs the server as root (CI runs as root)")
    d = private_dir()
    data = os.path.join(d, "data")
    port = free_port()
    subprocess.run([install, f"--datadir={data}", "--user=root", "--auth-root-authentication-method=normal",
                    "--skip-test-db"], check=True, capture_output=True)
    state = {}

    def start():
        log = open(os.path.join(d, "log"), "ab")
        state["proc"] = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}",
             "--bind-address=127.0.0.1", f"--socket={d}/sock", "--user=root",
             f"--pid-file={d}/pid", "--skip-grant-tables", "--innodb-flush-log-at-trx-commit=0",
             "--skip-log-bin"], stdout=log, stderr=log)
        wait_port(port, state["proc"], 60)

    def stop():
        p = state.get("proc")
        if p is not None and p.poll() is None:
            p.terminate()
            p.wait(60)

    start()
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE mail")
        cur.execute("CREATE TABLE mail.alias (address varchar(200), target varchar(200))")
        cur.executemany("INSERT INTO mail.alias VALUES (%s, %s)", ROWS)
    conn.close()
    yield Server(port, d, stop, start)
    stop()
    shutil.rmtree(d, ignore_errors=True)


# -- OpenLDAP slapd -----------------------------------------------------------------------

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {d}/slapd.pid
moduleload back_mdb
database mdb
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw secret
directory {d}/db
maxsize 10485760
"""


@pytest.fixture(scope="session")
def ldap_server():
    slapd = need("/usr/sbin/slapd", "slapd")
    d = private_dir()
    os.mkdir(os.path.join(d, "db"))
    conf = os.path.join(d, "slapd.conf")
    with open(conf, "w") as fh:
        fh.write(SLAPD_CONF.format(d=d))
    port = free_port()
    state = {}

    def start():
        state["proc"] = subprocess.Popen(
            [slapd, "-f", conf, "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, state["proc"])

    def stop():
        p = state.get("proc")
        if p is not None and p.poll() is None:
            p.terminate()
            p.wait(30)

    start()
    import fastpost.mail.maps.ldap  # noqa: F401  (imports ldap3 without its deprecation noise)
    import ldap3

    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port), "cn=admin,dc=example,dc=com",
                            "secret", auto_bind=True)
    conn.add("dc=example,dc=com", ["dcObject", "organization"], {"o": "Example", "dc": "example"})
    conn.add("ou=people,dc=example,dc=com", ["organizationalUnit"], {"ou": "people"})
    conn.add("cn=list,ou=people,dc=example,dc=com", ["inetOrgPerson"],
             {"sn": "list", "mail": "list@example.com", "seeAlso": [
                 "cn=ann,ou=people,dc=example,dc=com", "cn=bob,ou=people,dc=example,dc=com"]})
    for i, (k, v) in enumerate(ROWS):
        conn.add(f"cn=u{i},ou=people,dc=example,dc=com", ["inetOrgPerson"],
                 {"sn": f"u{i}", "mail": k, "description": v})
    for name in ("ann", "bob"):
        conn.add(f"cn={name},ou=people,dc=example,dc=com", ["inetOrgPerson"],
                 {"sn": name, "mail": f"{name}@example.com",
                  "description": f"{name}@example.net"})
    conn.unbind()
    yield Server(port, d, stop, start)
    stop()
    shutil.rmtree(d, ignore_errors=True)


# -- memcached ----------------------------------------------------------------------------

@pytest.fixture
def memcached_server():
    """A fresh memcached per test (it starts in milliseconds and holds test state)."""
    memcached = need("/usr/bin/memcached", "memcached")
    port = free_port()
    state = {}

    def start():
        cmd = [memcached, "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        state["proc"] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        wait_port(port, state["proc"])

    def stop():
        p = state.get("proc")
        if p is not None and p.poll() is None:
            p.terminate()
            p.wait(10)

    start()
    yield Server(port, "", stop, start)
    stop()
