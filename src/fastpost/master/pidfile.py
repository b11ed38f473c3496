"""The master's pid file and lock: one master per queue directory.

Postfix counterpart: src/master/master.c (the master.pid lock), `master -t`

``$queue_directory/pid/master.pid`` holds the master's pid on one line and is locked
(flock, exclusive) for as long as the master lives. A master that cannot take the lock
refuses to start; a command asks "is it running?" by trying to take the lock, so a
stale file left by a crash never fools it.

Diagnostics: AlreadyRunning (with the pid) when another master holds the lock;
OSError for a pid directory that cannot be created or written.
"""

from __future__ import annotations

import fcntl
import os

PID_DIRECTORY = "pid"
PID_FILE = "master.pid"


class AlreadyRunning(Exception):
    """Another master holds the lock; .pid is its process id (or 0 if unreadable)."""

    def __init__(self, pid: int):
        super().__init__(pid)
        self.pid = pid


def path(queue_directory: str) -> str:
    return os.path.join(queue_directory, PID_DIRECTORY, PID_FILE)


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text.split()[0]) if text else 0
    except (OSError, ValueError, IndexError):
        return 0


def acquire(queue_directory: str) -> int:
    """Lock the pid file and write our pid; return its descriptor (keep it open)."""
    os.makedirs(os.path.join(queue_directory, PID_DIRECTORY), mode=0o755, exist_ok=True)
    fd = os.open(path(queue_directory), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise AlreadyRunning(pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(queue_directory: str, fd: int) -> None:
    """Remove the pid file and drop the lock (at a clean exit)."""
    try:
        os.unlink(path(queue_directory))
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def running(queue_directory: str) -> int:
    """Return the pid of the running master, or 0 when none holds the lock."""
    try:
        fd = os.open(path(queue_directory), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return 0
    finally:
        os.close(fd)
