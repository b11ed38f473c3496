"""Debian's Dovecot LMTP server for tests: own config, passwd-file users, Maildirs.

    with Dovecot(["alice", "bob"]) as dc:
        dc.port                       # LMTP over TCP on 127.0.0.1
        dc.socket                     # LMTP over a UNIX-domain socket
        dc.maildir("alice")           # mailbox.Maildir of the user's INBOX

Users are virtual (passwd-file) and map to the system user ``nobody``; everything
lives in a fresh directory under /tmp. Dovecot's own log is ``dc.log()``.
"""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from helpers.instance import free_port


class Dovecot:
    def __init__(self, users, *, domain: str = "example.net"):
        path = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        nobody = pwd.getpwnam("nobody")
        self.mail = self.dir / "mail"
        self.mail.mkdir()
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        self.port = free_port()
        self.socket = str(self.dir / "run" / "lmtp")
        self.domain = domain
        with open(self.dir / "passwd", "w") as fh:
            for user in users:
                fh.write(f"{user}@{domain}:{{PLAIN}}pw:{nobody.pw_uid}:{nobody.pw_gid}::"
                         f"{self.mail}/{user}::\n")
        conf = self.dir / "dovecot.conf"
        conf.write_text(f"""\
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 1
mail_location = maildir:~/Maildir
postmaster_address = postmaster@{domain}
auth_username_format = %Lu
passdb {{
  driver = passwd-file
  args = {self.dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/passwd
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
""")
        self.proc = subprocess.Popen([path, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read() if self.proc.poll() is not None else b""
                self.stop()
                raise RuntimeError(f"dovecot did not start: {err!r} {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return (self.dir / "dovecot.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def maildir(self, user: str) -> mailbox.Maildir:
        return mailbox.Maildir(str(self.mail / user / "Maildir"), create=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
