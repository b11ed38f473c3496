"""Real peers started privately by tests: Dovecot (auth only), postgrey, C Postfix.

    with Dovecot({"alice": "secret"}) as dv:      # dv.socket: the auth client socket
        ...
        dv.stop()                                  # Dovecot down mid-test
        dv.start()
    with Postgrey(delay=2) as pg:                  # pg.port on 127.0.0.1
        ...
    with PrivatePostfix({"smtpd_sasl_auth_enable": "yes", ...}) as pfx:
        pfx.port, pfx.log_text()

Each lives in a fresh directory under /tmp (0755: Dovecot's and postgrey's
unprivileged processes must reach their files), is started in its own session and
stopped by its process group, and removes its directory afterwards. They need root
and the Debian packages in tests/apt-packages.txt (dovecot-core, postgrey, postfix);
need() skips with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers.instance import free_port


def need(program: str) -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root (private Dovecot/postgrey/Postfix instances)")
    exe = shutil.which(program) or (f"/usr/sbin/{program}" if os.path.exists(
        f"/usr/sbin/{program}") else None)
    if exe is None:
        pytest.skip(f"{program} not installed (./dev test installs tests/apt-packages.txt)")
    return exe


def _wait(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout}s")
        time.sleep(0.05)


def _connectable_unix(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def _connectable_inet(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class _Peer:
    def __init__(self, prefix: str):
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.proc: subprocess.Popen | None = None

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # Children may outlive the leader a moment (Dovecot's auth process).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Dovecot(_Peer):
    """Dovecot with only its auth service: a passwd-file, a client socket in the dir."""

    def __init__(self, users: dict[str, str], mechanisms: str = "plain login",
                 inet: bool = False):
        super().__init__("fastpost-dovecot-")
        self.exe = need("dovecot")
        self.socket = str(self.dir / "auth-client")
        self.port = free_port() if inet else 0  # also a TCP listener on 127.0.0.1
        listener = (f"  inet_listener {{\n    address = 127.0.0.1\n    port = {self.port}\n  }}\n"
                    if inet else "")
        (self.dir / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
        (self.dir / "dovecot.conf").write_text(f"""\
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols =
ssl = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {self.socket} {{
    mode = 0666
  }}
{listener}}}
""")

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-F", "-c", str(self.dir / "dovecot.conf")],
                                     start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait(lambda: _connectable_unix(self.socket), "dovecot")

    def stop(self) -> None:
        self._kill_group()
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass


class Postgrey(_Peer):
    """postgrey on a loopback port with its own database directory."""

    def __init__(self, delay: int = 2):
        super().__init__("fastpost-postgrey-")
        self.exe = need("postgrey")
        self.delay = delay
        self.port = free_port()
        self.db = self.dir / "db"
        self.db.mkdir()
        shutil.chown(self.db, "postgrey", "postgrey")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, f"--inet=127.0.0.1:{self.port}", f"--dbdir={self.db}",
             f"--delay={self.delay}", "--user=postgrey", "--group=postgrey"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _connectable_inet(self.port), "postgrey")

    def stop(self) -> None:
        self._kill_group()


class PrivatePostfix(_Peer):
    """C Postfix with one smtpd on a loopback port: own config, queue and log."""

    BASE = {
        "compatibility_level": "3.7",
        "myhostname": "mx.fastpost.test",
        "mydomain": "fastpost.test",
        "mydestination": "$myhostname, localhost",
        "mynetworks": "127.0.0.1/32",
        "smtpd_peername_lookup": "no",
    }

    def __init__(self, main_cf: dict[str, str], extra_master_cf: str = ""):
        super().__init__("fastpost-pfx-")
        self.exe = need("postfix")
        self.port = free_port()
        etc = self.etc = self.dir / "etc"
        etc.mkdir()
        (self.dir / "spool").mkdir()
        (self.dir / "data").mkdir()
        shutil.chown(self.dir / "data", "postfix")
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            words = line.split()
            if words and not line.startswith((" ", "\t", "#")) and len(words) >= 8:
                if words[0] == "smtp" and words[1] == "inet":
                    continue
                if words[4] in ("y", "-"):
                    words[4] = "n"  # no chroot
                line = "  ".join(words)
            lines.append(line)
        lines.append(f"127.0.0.1:{self.port}  inet  n  -  n  -  -  smtpd")
        (etc / "master.cf").write_text("\n".join(lines) + "\n" + extra_master_cf)
        settings = dict(self.BASE)
        settings.update(queue_directory=f"{self.dir}/spool", data_directory=f"{self.dir}/data",
                        maillog_file=f"{self.dir}/maillog", maillog_file_prefixes=str(self.dir))
        settings.update(main_cf)
        (etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))

    def start(self) -> None:
        subprocess.run([self.exe, "-c", str(self.etc), "start"], check=True,
                       capture_output=True)
        _wait(lambda: _connectable_inet(self.port), "postfix")

    def stop(self) -> None:
        pidfile = self.dir / "spool" / "pid" / "master.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        subprocess.run([self.exe, "-c", str(self.etc), "stop"], capture_output=True)
        if pid:  # its children are gone once the master is (the files are quiet)
            _wait(lambda: not os.path.exists(f"/proc/{pid}"), "postfix stop", timeout=30)

    def log_text(self) -> str:
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except FileNotFoundError:
            return ""
