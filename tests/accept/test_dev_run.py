"""The whole mail path of `./dev run`, run by a normal (non-root) user.

The embedded configuration (`fastpost embedded-config`) is started by a real non-root
account, exactly as `./dev run` does it for a developer, only on a free port instead of
2525: master, smtpd, cleanup, qmgr, trivial-rewrite, local (and pickup for local
submission). Mail sent with smtplib and with swaks to that user and to root lands in
Maildirs under <dir>/var/mail/<user>/, written by the running user. The account runs
Debian's own Python 3.11 with the worktree and the virtualenv's site-packages on
PYTHONPATH (the virtualenv lives under /root, which other users cannot enter).
"""

import mailbox
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.instance import free_port  # noqa: E402
from helpers.mailsite import make_user, need_root  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


class DevRun:
    def __init__(self, base: Path, pw, env: dict, port: int):
        self.base, self.pw, self.env, self.port = base, pw, env, port
        self.var = base / "var"
        self.etc = str(self.var / "etc")
        self.as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                        "--init-groups"]

    def run(self, *args, **kw):
        return subprocess.run(self.as_user + [SYSTEM_PYTHON, *args], env=self.env,
                              capture_output=True, timeout=60, **kw)

    def log(self) -> str:
        return (self.base / "out").read_text()

    def maildir(self, name: str) -> Path:
        return self.var / "mail" / name

    def wait_for_mail(self, name: str, subject: str) -> mailbox.MaildirMessage:
        deadline = time.monotonic() + 30
        while True:
            if self.maildir(name).is_dir():
                try:
                    for msg in mailbox.Maildir(self.maildir(name), create=False):
                        if msg["Subject"] == subject:
                            return msg
                except FileNotFoundError:
                    pass  # local is still creating the Maildir's new/ and cur/
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)


def _system_python_ok() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True)
    return proc.stdout.strip() == str(tuple(sys.version_info[:2]))


@pytest.fixture(scope="module")
def dev():
    need_root()
    if not _system_python_ok():
        pytest.skip(f"{SYSTEM_PYTHON} is not Python {sys.version_info[0]}.{sys.version_info[1]}")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed")
    pw = make_user("devrun")
    base = Path(tempfile.mkdtemp(prefix="fastpost-devrun-", dir="/tmp"))
    os.chmod(base, 0o755)
    os.chown(base, pw.pw_uid, pw.pw_gid)
    site_packages = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "LANG": "C", "LOGNAME": pw.pw_name,
           "PYTHONPATH": f"{REPO / 'src'}:{site_packages}", "PYTHONDONTWRITEBYTECODE": "1"}
    d = DevRun(base, pw, env, free_port())
    made = d.run("-m", "fastpost", "embedded-config", str(d.var), text=True)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == d.etc
    master_cf = Path(d.etc) / "master.cf"
    text = master_cf.read_text()
    assert "127.0.0.1:2525 " in text
    master_cf.write_text(text.replace("127.0.0.1:2525 ", f"127.0.0.1:{d.port} "))
    out = open(base / "out", "w+")
    master = subprocess.Popen(d.as_user + [SYSTEM_PYTHON, "-m", "fastpost", "-c", d.etc,
                                           "start-fg"],
                              env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "daemon started" not in d.log():
            assert master.poll() is None and time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        yield d
        log = d.log()
        assert "Traceback" not in log and "fatal" not in log and "panic" not in log, log
    finally:
        d.run("-m", "fastpost", "-c", d.etc, "stop")
        try:
            master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(master.pid, 9)
            master.wait()
        out.close()
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_master_cf_lists_every_service(dev):
    listed = set()
    for line in (Path(dev.etc) / "master.cf").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            listed.add(line.split()[7])  # the command field
    from fastpost import daemons
    have = {p.name.replace("_", "-") for p in Path(daemons.__file__).parent.iterdir()
            if p.is_dir() and (p / "__init__.py").exists()}
    # pipe needs a command of its own to be useful: it is a template line (commented)
    assert have - {"pipe"} <= listed, have - listed


def test_smtplib_message_lands_in_the_users_maildir(dev):
    user = dev.pw.pw_name
    with smtplib.SMTP("127.0.0.1", dev.port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        refused = smtp.sendmail("someone@example.org", [f"{user}@localhost", "root@localhost"],
                                b"Subject: through the whole path\r\n\r\nhello, Maildir\r\n")
        assert refused == {}
    for name in (user, "root"):
        msg = dev.wait_for_mail(name, "through the whole path")
        assert msg["Delivered-To"] == f"{name}@localhost"
        assert msg["Return-Path"] == "<someone@example.org>"
        assert msg["Message-Id"] and msg["Date"]  # added by cleanup
        assert msg.get_payload() == "hello, Maildir\n"
        md = dev.maildir(name)
        for path in (md, *(md / "new").iterdir()):
            assert path.stat().st_uid == dev.pw.pw_uid  # the running user writes everything


def test_swaks_message_is_delivered(dev):
    if not shutil.which("swaks"):
        pytest.skip("swaks not installed")
    user = dev.pw.pw_name
    proc = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(dev.port), "-t",
                           f"{user}@localhost", "-f", "me@localhost", "--h-Subject", "by swaks"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "250 2.0.0 Ok: queued as " in proc.stdout
    msg = dev.wait_for_mail(user, "by swaks")
    assert msg["From"] == "me@localhost"


def test_sendmail_by_the_user_goes_through_pickup(dev):
    user = dev.pw.pw_name
    message = (b"From: Dev User <dev@example.org>\r\nTo: root@localhost\r\n"
               b"Subject: submitted locally\r\n\r\nline one\r\n..not the end\r\n")
    proc = dev.run("-m", "fastpost", "-c", dev.etc, "sendmail", "-i", "-F", "Dev User",
                   "root@localhost", input=message)
    assert proc.returncode == 0, proc.stderr
    msg = dev.wait_for_mail("root", "submitted locally")
    assert msg["Return-Path"] == f"<{user}@localhost.localdomain>"  # login name + $myorigin
    received = msg.get_all("Received")[0]
    assert f"from userid {dev.pw.pw_uid}" in received and "fastpost" in received
    assert msg.get_payload() == "line one\n..not the end\n"  # -i: dots are content
    assert f"uid={dev.pw.pw_uid} from=<{user}>" in dev.log()
    assert list((dev.var / "spool" / "maildrop").iterdir()) == []


def test_sendmail_t_takes_recipients_from_the_headers(dev):
    user = dev.pw.pw_name
    message = (f"To: {user}@localhost\nBcc: root@localhost\nSubject: by -t\n\nbody\n.\n"
               "after the dot\n").encode()
    proc = dev.run("-m", "fastpost", "-c", dev.etc, "sendmail", "-t", "-f", "sender@example.org",
                   input=message)
    assert proc.returncode == 0, proc.stderr
    for name in (user, "root"):
        msg = dev.wait_for_mail(name, "by -t")
        assert msg["Return-Path"] == "<sender@example.org>"
        assert msg["Bcc"] is None  # removed by cleanup
        assert msg.get_payload() == "body\n"  # a lone dot ends the message without -i


def test_sendmail_usage_errors(dev):
    proc = dev.run("-m", "fastpost", "-c", dev.etc, "sendmail", input=b"x\n")
    assert proc.returncode == 64
    assert b"Recipient addresses must be specified" in proc.stderr
    proc = dev.run("-m", "fastpost", "-c", dev.etc, "sendmail", "-N", "sometimes", "root",
                   input=b"x\n")
    assert proc.returncode == 64 and b"bad -N option value" in proc.stderr
    proc = dev.run("-m", "fastpost", "-c", dev.etc, "sendmail", "-bd", "root", input=b"")
    assert proc.returncode == 75 and b"daemon mode requires no recipient" in proc.stderr
    proc = dev.run("-m", "fastpost", "-c", dev.etc, "sendmail", "-bx", input=b"")
    assert proc.returncode == 75 and proc.stderr == b"sendmail: fatal: unsupported: -bx\n"


def test_link_commands_makes_the_sendmail_names(tmp_path):
    (tmp_path / "mailq").write_text("another mail system's\n")
    proc = subprocess.run([sys.executable, "-m", "fastpost", "link-commands", "-d", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "left alone" in proc.stderr
    assert os.path.islink(tmp_path / "sendmail") and not os.path.islink(tmp_path / "mailq")
    proc = subprocess.run([str(tmp_path / "sendmail"), "-bx"], capture_output=True,
                          text=True)
    assert proc.returncode == 75 and proc.stderr == "sendmail: fatal: unsupported: -bx\n"
    proc = subprocess.run([sys.executable, "-m", "fastpost", "link-commands", "-f", "-d",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mailq.pre-fastpost").read_text() == "another mail system's\n"
    assert os.readlink(tmp_path / "mailq") == os.readlink(tmp_path / "newaliases")
    front = os.path.join(os.path.dirname(os.readlink(tmp_path / "mailq")), "fastpost-sendmail")
    assert os.readlink(tmp_path / "sendmail") == (
        front if os.access(front, os.X_OK) else os.readlink(tmp_path / "mailq"))
