"""The master's pid file lock."""

import os
import subprocess
import sys

import pytest

from fastpost.master import pidfile


def test_lock_is_exclusive_and_a_stale_file_does_not_count(tmp_path):
    q = str(tmp_path)
    assert pidfile.running(q) == 0
    fd = pidfile.acquire(q)
    assert pidfile.running(q) == os.getpid()
    with pytest.raises(pidfile.AlreadyRunning) as info:
        pidfile.acquire(q)
    assert info.value.pid == os.getpid()
    # Another process sees the lock too.
    code = ("import sys; from fastpost.master import pidfile; "
            f"sys.exit(0 if pidfile.running({q!r}) == {os.getpid()} else 1)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    os.close(fd)  # a crash: the file stays, the lock goes
    assert os.path.exists(pidfile.path(q))
    assert pidfile.running(q) == 0
    fd = pidfile.acquire(q)
    pidfile.release(q, fd)
    assert not os.path.exists(pidfile.path(q))
