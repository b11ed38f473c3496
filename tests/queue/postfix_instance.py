"""A private instance of Debian's C Postfix, for comparing fastpost's queue tools with it.

Not a test module. PostfixInstance(tmp_dir) writes its own main.cf/master.cf (SMTP on a
free loopback port, no chroot, mail relayed to a closed loopback port so that every
message is deferred with a real reason), its own queue and data directories and log
file; start()/stop() run ``postfix -c DIR start|stop``. Needs root (postfix start
does) and the postfix package (tests/apt-packages.txt).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postfix_tmpdir():
    """A scratch directory Postfix's unprivileged processes can reach (pytest's is 0700)."""
    path = tempfile.mkdtemp(prefix="fastpost-pfx-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def need_postfix() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a private Postfix instance (CI runs as root)")
    for prog in ("postfix", "postcat", "postqueue", "postsuper"):
        if not (shutil.which(prog) or os.path.exists(f"/usr/sbin/{prog}")):
            pytest.skip(f"{prog} not installed (./dev test installs tests/apt-packages.txt)")


class PostfixInstance:
    """One private Postfix; see the module docstring."""

    def __init__(self, root, **main_cf):
        need_postfix()
        self.root = str(root)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        self.data = os.path.join(self.root, "data")
        self.maillog = os.path.join(self.root, "maillog")
        for d in (self.etc, self.spool, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix")
        self.port = free_port()
        dead = free_port()  # nothing listens there: deliveries are deferred
        settings = {
            "compatibility_level": "3.7",
            "queue_directory": self.spool,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "myhostname": "pfx.example.test",
            "mydomain": "example.test",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.root,
            "syslog_name": "pfxtest",
            "relayhost": f"[127.0.0.1]:{dead}",
            "default_transport": "smtp",
            "relay_transport": "smtp",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtp_connect_timeout": "2s",
            "smtpd_banner": "$myhostname ESMTP",
        }
        settings.update(main_cf)
        with open(os.path.join(self.etc, "main.cf"), "w") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in settings.items())
        with open(self.maillog, "a"):
            pass
        os.chmod(self.maillog, 0o666)  # postsuper writes it after dropping privileges
        with open(os.path.join(self.etc, "master.cf"), "w") as fh:
            fh.write(MASTER_CF.format(port=f"127.0.0.1:{self.port}"))
        self.running = False

    def _run(self, *cmd, check=True, input=None) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def start(self) -> None:
        self._run("postfix", "-c", self.etc, "start")
        self.running = True
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("private postfix did not start listening")

    def stop(self) -> None:
        if not self.running:
            return
        pidfile = os.path.join(self.spool, "pid", "master.pid")
        try:
            with open(pidfile) as fh:
                pid = int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        self._run("postfix", "-c", self.etc, "stop", check=False)
        deadline = time.time() + 20
        while pid and time.time() < deadline:  # master keeps its pid file: watch the process
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.running = False

    def send(self, sender: str, rcpts, body: bytes | str, *, mail_options=(), rcpt_options=()) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as smtp:
            smtp.ehlo("client.example")
            smtp.sendmail(sender, list(rcpts), body, list(mail_options), list(rcpt_options))

    def queue_files(self, queue: str) -> list[str]:
        out = []
        for dirpath, _dirs, files in os.walk(os.path.join(self.spool, queue)):
            out += [os.path.join(dirpath, f) for f in files]
        return sorted(out)

    def wait_deferred(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` messages are in deferred/ with their defer logs."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            deferred = self.queue_files("deferred")
            logs = self.queue_files("defer")
            if len(deferred) >= count and len(logs) >= count and not self.queue_files("active") \
                    and not self.queue_files("incoming"):
                return
            time.sleep(0.2)
        raise AssertionError(f"expected {count} deferred messages, have {self.queue_files('deferred')}")

    def postqueue(self, *args) -> str:
        return self._run("postqueue", "-c", self.etc, *args).stdout

    def postsuper(self, *args, input=None) -> subprocess.CompletedProcess:
        return self._run("postsuper", "-c", self.etc, *args, check=False, input=input)

    def postcat(self, *args) -> subprocess.CompletedProcess:
        return self._run("postcat", "-c", self.etc, *args, check=False)
