"""Helpers for the services tests (showq, flush, super against a running qmgr).

Not a test module. ``as_mail_owner(fn)`` runs ``fn()`` in a forked child as the
mail_owner (the queue store belongs to it) and returns its JSON-able result;
``unprivileged(args, egid=...)`` runs ``python -m fastpost ARGS`` as ``nobody`` with
Debian's /usr/bin/python3 (the virtualenv's interpreter lives under /root, which other
users cannot enter), optionally with an effective group, as a set-gid program has.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def public_base() -> Path:
    """A temporary directory every user may traverse (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="fastpost-svc-", dir="/tmp"))
    os.chmod(base, 0o755)
    return base


def as_mail_owner(fn, queue_directory: str):
    """Run fn() in a child, in the queue directory, as postfix when root."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            os.chdir(queue_directory)
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postfix")
                os.setgroups([pw.pw_gid])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            os.write(w, json.dumps(fn()).encode())
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, f"ERROR {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while data := os.read(r, 65536):
        chunks.append(data)
    os.close(r)
    os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    if out.startswith("ERROR"):
        raise AssertionError(out)
    return json.loads(out)


def need_unprivileged_runner() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to run commands as nobody)")
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True)
    if proc.stdout.strip() != str(tuple(sys.version_info[:2])):
        pytest.skip(f"{SYSTEM_PYTHON} is not Python {sys.version_info[0]}.{sys.version_info[1]}")


def unprivileged(args, *, egid: str | None = None, timeout: float = 60):
    """Run ``fastpost ARGS`` as nobody (real group nogroup, no supplementary groups);
    with ``egid``, that effective group (what a set-gid executable gets)."""
    site_packages = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C",
           "PYTHONPATH": f"{REPO / 'src'}:{site_packages}", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if egid:
        cmd[2:3] = ["--rgid=nogroup", f"--egid={egid}"]
    return subprocess.run(cmd + [SYSTEM_PYTHON, "-m", "fastpost", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd="/")


__all__ = ["as_mail_owner", "need_unprivileged_runner", "public_base", "unprivileged"]
