"""The embedded one-user set-up (`./dev run` as a normal user): local works unprivileged.

A real non-root account runs the whole instance from `fastpost embedded-config`
(master, local), and also the part of the test that acts as qmgr (the queue belongs
to it). Mail for that user and for root goes into Maildirs under <dir>/mail/, owned by
the running user; an unknown user still bounces. The account runs Debian's own
Python 3.11 with the worktree and the virtualenv's site-packages on PYTHONPATH (the
virtualenv's interpreter lives under /root, which other users cannot enter).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers.mailsite import make_user, need_root

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"

FEED = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from helpers.queuefeed import QueueFeed
feed = QueueFeed(sys.argv[1])
user = sys.argv[3]
qid = feed.submit("me@localhost", [f"{user}@localhost", "root@localhost", "nosuchuser@localhost"],
                  b"Subject: dev run\n\nhello from the embedded instance\n")
out = {a: [r.status, r.text] for a, r in feed.deliver("local", qid).items()}
feed.close()
print(json.dumps(out))
"""


def _system_python_ok() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True)
    return proc.stdout.strip() == str(tuple(sys.version_info[:2]))


def test_embedded_instance_as_a_normal_user():
    need_root()
    if not _system_python_ok():
        pytest.skip(f"{SYSTEM_PYTHON} is not Python {sys.version_info[0]}.{sys.version_info[1]}")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed")
    pw = make_user("dev")
    base = Path(tempfile.mkdtemp(prefix="fastpost-dev-", dir="/tmp"))
    os.chmod(base, 0o755)
    os.chown(base, pw.pw_uid, pw.pw_gid)
    site_packages = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "LANG": "C",
           "PYTHONPATH": f"{REPO / 'src'}:{site_packages}", "PYTHONDONTWRITEBYTECODE": "1"}
    as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"]

    def run(*args, **kw):
        return subprocess.run(as_user + [SYSTEM_PYTHON, *args], env=env, capture_output=True,
                              text=True, timeout=60, **kw)

    made = run("-m", "fastpost", "embedded-config", str(base / "var"))
    assert made.returncode == 0, made.stderr
    etc = made.stdout.strip()
    # This test plays qmgr itself and needs no SMTP listener: drop those services
    # (port 2525 may be in use on a shared machine).
    mcf = Path(etc) / "master.cf"
    kept, skip = [], False
    for line in mcf.read_text().splitlines(keepends=True):
        if line[:1] not in (" ", "\t"):
            skip = line.split()[:1] in (["127.0.0.1:2525"], ["qmgr"])
        if not skip:
            kept.append(line)
    mcf.write_text("".join(kept))
    out = open(base / "out", "w+")
    master = subprocess.Popen(as_user + [SYSTEM_PYTHON, "-m", "fastpost", "-c", etc, "start-fg"],
                              env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "daemon started" not in (base / "out").read_text():
            assert master.poll() is None and time.monotonic() < deadline, \
                (base / "out").read_text()
            time.sleep(0.05)
        fed = run("-c", FEED, str(base / "var" / "spool"), str(REPO / "tests"), pw.pw_name)
        assert fed.returncode == 0, fed.stderr + (base / "out").read_text()
        results = json.loads(fed.stdout)
        assert results == {
            f"{pw.pw_name}@localhost": ["sent", "delivered to maildir"],
            "root@localhost": ["sent", "delivered to maildir"],
            "nosuchuser@localhost": ["bounced", 'unknown user: "nosuchuser"'],
        }
        import mailbox
        for name in (pw.pw_name, "root"):
            md = base / "var" / "mail" / name
            (m,) = list(mailbox.Maildir(md, create=False))
            assert m["Subject"] == "dev run" and m["Delivered-To"] == f"{name}@localhost"
            for path in (md, *(md / "new").iterdir()):
                assert path.stat().st_uid == pw.pw_uid  # the running user writes everything
        log = (base / "out").read_text()
        assert "Traceback" not in log and "fatal" not in log
    finally:
        subprocess.run(as_user + [SYSTEM_PYTHON, "-m", "fastpost", "-c", etc, "stop"],
                       env=env, capture_output=True, timeout=60)
        try:
            master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(master.pid, 9)
            master.wait()
        out.close()
        shutil.rmtree(base, ignore_errors=True)
