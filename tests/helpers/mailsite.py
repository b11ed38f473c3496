"""A small mail site for delivery-agent tests: real users, a real master, real files.

    site = Site(users=("a", "b"), aliases="postmaster: root\\n...", main_cf={...},
                master_cf="local unix - n n - - local\\n")
    with site:                          # starts fastpost, stops it and removes everything
        qid = site.submit(["a@site.test"], b"Subject: x\\n\\nhi\\n")
        results = site.deliver(qid)     # acting as qmgr: a delivery request to private/local

Everything lives in a fresh directory under /tmp (mode 0755, so that the test users can
reach the files they must reach; pytest's own tmp_path is private to root): the
instance (etc/, spool/, maillog), ``mail/`` (the spool directory, root:mail 2775 as
Debian's /var/mail), ``out/`` (mode 1777, for commands to write into).

Users are real accounts created with useradd (names unique to this process, so that
several test runs on one machine do not collide) and removed with userdel -r at the
end; ``site.user["a"]`` is the pwd entry of logical user ``a``. In the aliases and
.forward texts, ``{a}`` stands for user a's name, ``{home_a}`` for its home, ``{W}``
for the site directory.

Needs root (useradd, delivery as other users); tests skip otherwise.
"""

from __future__ import annotations

import grp
import mailbox
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers.instance import Instance
from helpers.queuefeed import QueueFeed

DOMAIN = "site.test"
MASTER_CF = "local unix - n n - - local\n"


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: real users and delivery as them (CI runs as root)")


_created: list[str] = []


def make_user(tag: str) -> pwd.struct_passwd:
    """Create (once per process) a real user for logical name ``tag``."""
    name = f"fpt{os.getpid() % 100000}{tag}"[:31]
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True,
                   capture_output=True)
    _created.append(name)
    return pwd.getpwnam(name)


def remove_users() -> None:
    while _created:
        name = _created.pop()
        subprocess.run(["userdel", "-r", name], capture_output=True)


class Site:
    def __init__(self, *, users=("a", "b"), aliases: str = "", main_cf: dict | None = None,
                 master_cf: str = MASTER_CF, forward: dict | None = None):
        need_root()
        self.dir = Path(tempfile.mkdtemp(prefix="fastpost-site-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.user = {tag: make_user(tag) for tag in users}
        self.spool = self.dir / "mail"
        self.spool.mkdir()
        shutil.chown(self.spool, "root", "mail")
        os.chmod(self.spool, 0o2775)
        self.out = self.dir / "out"
        self.out.mkdir()
        os.chmod(self.out, 0o1777)
        self.aliases = self.dir / "aliases"
        self.write_aliases(aliases)
        for tag, files in (forward or {}).items():
            for name, text in files.items():
                self.write_home_file(tag, name, text)
        settings = {
            "mydestination": f"{DOMAIN}, localhost",
            "myorigin": DOMAIN,
            "alias_maps": f"hash:{self.aliases}",
            "alias_database": f"hash:{self.aliases}",
            "mail_spool_directory": str(self.spool),
            "recipient_delimiter": "+",
            "forward_path": "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
            "command_time_limit": "10s",
        }
        settings.update(main_cf or {})
        self.inst = Instance(self.dir, master_cf=master_cf, main_cf=settings)
        self.feed: QueueFeed | None = None

    # -- set-up ---------------------------------------------------------------------------

    def fill(self, text: str) -> str:
        values = {"W": str(self.dir), "D": DOMAIN}
        for tag, pw in self.user.items():
            values[tag] = pw.pw_name
            values[f"home_{tag}"] = pw.pw_dir
        return text.format(**values)

    def write_aliases(self, text: str) -> None:
        self.aliases.write_text(self.fill(text))
        proc = subprocess.run([sys.executable, "-m", "fastpost", "alias", str(self.aliases)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    def write_home_file(self, tag: str, name: str, text: str, *, mode: int = 0o644,
                        owner: str | None = None) -> Path:
        pw = self.user[tag]
        path = Path(pw.pw_dir) / name
        path.write_text(self.fill(text))
        owner_pw = self.user[owner] if owner else pw
        os.chown(path, owner_pw.pw_uid, owner_pw.pw_gid)
        os.chmod(path, mode)
        return path

    def addr(self, tag_or_local: str) -> str:
        """``a`` -> user a's address; ``a+ext`` -> with the extension; else literal."""
        tag, plus, ext = tag_or_local.partition("+")
        local = self.user[tag].pw_name + plus + ext if tag in self.user else tag_or_local
        return f"{local}@{DOMAIN}"

    # -- running ----------------------------------------------------------------------------

    def start(self) -> "Site":
        self.inst.start()
        self.feed = QueueFeed(self.inst.queue)
        return self

    def submit(self, rcpts, content: bytes, sender: str = "sender@example.org", **kw) -> str:
        return self.feed.submit(sender, [self.addr(r) if "@" not in r else r for r in rcpts],
                                content, **kw)

    def deliver(self, qid: str, transport: str = "local", **kw) -> dict:
        return self.feed.deliver(transport, qid, **kw)

    def send(self, rcpt: str, content: bytes = b"Subject: test\n\nhello\n", transport="local",
             client: dict | None = None, **kw):
        """submit + deliver one recipient; return (queue ID, its RecipientResult)."""
        qid = self.submit([rcpt], content, **kw)
        (result,) = self.deliver(qid, transport, client=client).values()
        return qid, result

    def log_lines(self, qid: str) -> list[str]:
        return [line for line in self.inst.log_text().splitlines() if f" {qid}: " in line]

    def status_lines(self, qid: str) -> list[str]:
        """``to=<...>, [orig_to=<...>, ]... status=... (text)`` with timings removed."""
        out = []
        for line in self.log_lines(qid):
            m = re.search(r": (to=<.*)$", line)
            if m:
                out.append(re.sub(r"delay=[^,]*, delays=[^,]*, ", "", m.group(1)))
        return out

    def mbox(self, tag: str) -> mailbox.mbox:
        return mailbox.mbox(self.spool / self.user[tag].pw_name, create=False)

    def spool_path(self, tag: str) -> Path:
        return self.spool / self.user[tag].pw_name

    def forwarded_id(self, result, timeout: float = 10) -> str:
        """The queue ID in ``forwarded as ID``, once the new message is indexed (qmgr
        would hear of it only then: local wakes it from the committer's on_indexed)."""
        m = re.fullmatch(r"forwarded as (\w+)", result.text)
        assert m, result.text
        deadline = time.monotonic() + timeout
        while not self.feed.store.exists(m.group(1)):
            assert time.monotonic() < deadline, f"{m.group(1)} never appeared in the index"
            time.sleep(0.01)
        return m.group(1)

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.close()
            self.feed = None
        self.inst.cleanup()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def mail_gid() -> int:
    return grp.getgrnam("mail").gr_gid
