"""Mailbox open, locks and append (fastpost.mail.mbox), on real files.

The lock tests use a second *process* holding a classic POSIX fcntl lock (what Postfix's
local, mutt and procmail take), a dot lock file, or a flock: fastpost must wait for it,
and give up with "unable to lock for exclusive access" / EAGAIN after the attempts.
"""

import errno
import mailbox
import os
import subprocess
import sys
import threading
import time

import pytest

from fastpost.mail import mbox

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
if sys.argv[2] == "fcntl":
    fcntl.lockf(fd, fcntl.LOCK_EX)
else:
    fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
"""


def holder(path, kind, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), kind, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def open_box(path, lock=mbox.LOCK_FCNTL | mbox.LOCK_DOTLOCK, attempts=2, delay=0.05, **kw):
    return mbox.open_mailbox(str(path), lock=lock, attempts=attempts, delay=delay, stale=500, **kw)


def test_create_append_and_release(tmp_path):
    path = tmp_path / "box"
    box = open_box(path)
    assert (tmp_path / "box.lock").exists()
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    mbox.append(box, b"From a@b  Sat Nov 21 08:00:00 2026\nSubject: one\n\nbody\n\n")
    mbox.close(box)
    assert not (tmp_path / "box.lock").exists()
    box = open_box(path)
    mbox.append(box, b"From a@b  Sat Nov 21 08:00:01 2026\nSubject: two\n\nbody\n\n")
    mbox.close(box)
    assert [m["Subject"] for m in mailbox.mbox(path)] == ["one", "two"]


def test_size_limit_fails_with_efbig_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "box"
    path.write_bytes(b"x" * 100)
    box = open_box(path)
    with pytest.raises(mbox.MailboxError) as exc:
        mbox.append(box, b"y" * 200, size_limit=250)
    mbox.close(box)
    assert (exc.value.dsn, exc.value.text) == ("5.2.2", "error writing message: File too large")
    assert path.read_bytes() == b"x" * 100


@pytest.mark.parametrize("kind, bit", [("fcntl", mbox.LOCK_FCNTL), ("flock", mbox.LOCK_FLOCK)])
def test_kernel_lock_held_by_another_process(tmp_path, kind, bit):
    path = tmp_path / "box"
    path.write_bytes(b"")
    proc = holder(path, kind, 30)
    try:
        with pytest.raises(mbox.MailboxError) as exc:
            open_box(path, lock=bit)
        assert (exc.value.dsn, exc.value.errno) == ("4.2.0", errno.EAGAIN)
        assert exc.value.text == "unable to lock for exclusive access: Resource temporarily unavailable"
    finally:
        proc.kill()
        proc.wait()
    mbox.close(open_box(path, lock=bit))  # free again


def test_waits_for_a_lock_that_goes_away(tmp_path):
    path = tmp_path / "box"
    path.write_bytes(b"")
    proc = holder(path, "fcntl", 0.3)
    t0 = time.monotonic()
    box = open_box(path, lock=mbox.LOCK_FCNTL, attempts=20, delay=0.1)
    mbox.close(box)
    assert time.monotonic() - t0 >= 0.1
    proc.wait()


def test_dotlock_held_then_stale(tmp_path):
    path = tmp_path / "box"
    path.write_bytes(b"")
    lock = tmp_path / "box.lock"
    lock.write_bytes(b"")
    with pytest.raises(mbox.MailboxError) as exc:
        open_box(path, lock=mbox.LOCK_DOTLOCK)
    assert exc.value.dsn == "4.2.0"
    assert exc.value.text.startswith(f"unable to create lock file {path}.lock: ")
    old = time.time() - 1000
    os.utime(lock, (old, old))
    mbox.close(open_box(path, lock=mbox.LOCK_DOTLOCK))  # stale lock removed
    assert not lock.exists()


def test_ofd_fcntl_lock_excludes_threads_of_one_process(tmp_path):
    path = tmp_path / "box"
    path.write_bytes(b"")
    fd1 = os.open(path, os.O_RDWR)
    fd2 = os.open(path, os.O_RDWR)
    try:
        mbox.kernel_lock(fd1, mbox.LOCK_FCNTL, attempts=1, delay=0)
        with pytest.raises(OSError):
            mbox.kernel_lock(fd2, mbox.LOCK_FCNTL, attempts=1, delay=0)
        # ... and it conflicts with a classic POSIX lock of another process.
        probe = subprocess.run([sys.executable, "-c",
                                "import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); "
                                "fcntl.lockf(fd, fcntl.LOCK_EX|fcntl.LOCK_NB)", str(path)],
                               capture_output=True)
        assert probe.returncode != 0
    finally:
        os.close(fd1)
        os.close(fd2)


def test_threads_of_one_process_take_turns(tmp_path):
    path = tmp_path / "box"
    errors = []

    def writer(n):
        try:
            for i in range(20):
                box = open_box(path, attempts=3, delay=1)
                try:
                    part = b"From w@x  Sat Nov 21 08:00:00 2026\nSubject: %d-%d\n\n" % (n, i)
                    os.write(box.fd, part)
                    time.sleep(0.001)
                    mbox.append(box, b"body %d-%d\n\n" % (n, i))
                finally:
                    mbox.close(box)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert time.monotonic() - t0 < 5  # turns, not 1-second retry sleeps
    for m in mailbox.mbox(path):
        assert m.get_payload() == f"body {m['Subject']}\n"
    assert len(mailbox.mbox(path)) == 100


def test_safe_open_refusals(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"")
    os.link(target, tmp_path / "hardlink")
    with pytest.raises(mbox.MailboxError, match="file has 2 hard links"):
        open_box(tmp_path / "hardlink")
    (tmp_path / "dir").mkdir()
    with pytest.raises(mbox.MailboxError, match="cannot open file: Is a directory"):
        open_box(tmp_path / "dir")
    other = tmp_path / "other"
    other.write_bytes(b"")
    os.symlink(other, tmp_path / "link")
    if os.geteuid() == 0:
        os.lchown(tmp_path / "link", 65534, 65534)
    if os.lstat(tmp_path / "link").st_uid != 0:
        with pytest.raises(mbox.MailboxError, match="file is a symbolic link"):
            open_box(tmp_path / "link")


def test_non_regular_files_are_not_locked(tmp_path):
    box = open_box("/dev/null", lock=mbox.LOCK_DOTLOCK | mbox.LOCK_FCNTL)
    assert not box.dotlocked
    mbox.append(box, b"discarded\n", size_limit=1)  # no size limit on a device
    mbox.close(box)


def test_lock_mask():
    assert mbox.lock_mask(["fcntl", "dotlock"]) == mbox.LOCK_FCNTL | mbox.LOCK_DOTLOCK
    assert mbox.lock_mask(["FLOCK"]) == mbox.LOCK_FLOCK
    with pytest.raises(ValueError, match='unknown mailbox lock method "lockf"'):
        mbox.lock_mask(["lockf"])
    assert mbox.mbox_dsn(errno.ENOSPC, "5.2.0") == "4.3.0"
    assert mbox.mbox_dsn(errno.EDQUOT, "4.2.0") == "5.2.2"
    assert mbox.mbox_dsn(errno.EACCES, "5.2.0") == "5.2.0"
