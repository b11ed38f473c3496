"""Per-thread file-system identity: touch files as another user, in one thread only.

Postfix counterpart: src/util/set_eugid.c, open_as.c, stat_as.c, lstat_as.c

The delivery agents (local, virtual, pipe) run as root (master.cf unpriv column ``n``)
and must read and write files with someone else's rights: a recipient's ``.forward``,
an ``:include:`` list, a mailbox. Postfix switches the process's effective ids around
each such operation. A fastpost agent is multi-threaded (the event loop plus worker
threads); a process-wide switch would change every thread at once (glibc broadcasts
seteuid(2) to all threads). Linux keeps a file-system uid and gid per thread
(setfsuid(2)/setfsgid(2), which glibc does not broadcast): permission checks and the
owner of new files use them, and while they are not 0 the thread has none of root's
file capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN, ...). So:

    with fs_identity(uid, gid):          # this thread only; restored on exit
        fd = os.open(path, flags, mode)  # checked, and created, as uid:gid

Supplementary groups belong to the process: a privileged daemon drops them once at
start (drop_supplementary_groups), after which a thread inside fs_identity has exactly
uid and gid, as Postfix's set_eugid leaves only the primary group.

When the process is not root (the embedded ``./dev run`` instance runs everything as
one user) there is nothing to switch: fs_identity does nothing.

Diagnostics: PrivilegeError when the kernel refuses a switch (the caller must not go on
with the wrong identity). Failing to switch back is an internal error: log.panic.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading

from fastpost.util import log

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setfsuid.argtypes = [ctypes.c_uint32]
_libc.setfsuid.restype = ctypes.c_int
_libc.setfsgid.argtypes = [ctypes.c_uint32]
_libc.setfsgid.restype = ctypes.c_int
_INVALID = 0xFFFFFFFF  # (uid_t) -1: refused by the kernel, so the call only reports


class PrivilegeError(OSError):
    """The kernel refused to switch a thread's file-system identity."""


_local = threading.local()


def privileged() -> bool:
    """Return True when this process can switch identities (effective uid 0)."""
    return os.geteuid() == 0


def current_fs_ids() -> tuple[int, int]:
    """Return this thread's (file-system uid, file-system gid)."""
    return int(_libc.setfsuid(_INVALID)), int(_libc.setfsgid(_INVALID))


def _set(uid: int, gid: int) -> None:
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    got = current_fs_ids()
    if got != (uid, gid):
        raise PrivilegeError(f"cannot set file-system identity to {uid}:{gid} (have {got[0]}:{got[1]})")


def set_thread_identity(uid: int, gid: int) -> None:
    """Make uid:gid this thread's standing file-system identity (no-op unless root)."""
    if privileged():
        _set(uid, gid)


@contextlib.contextmanager
def fs_identity(uid: int, gid: int):
    """Run the block with this thread's file access done as uid:gid (see the module doc)."""
    if not privileged():
        yield
        return
    saved = current_fs_ids()
    if saved == (uid, gid):
        yield
        return
    _set(uid, gid)
    try:
        yield
    finally:
        try:
            _set(*saved)
        except PrivilegeError as exc:  # euid is 0: cannot happen unless something is badly wrong
            log.panic("restore file-system identity: %s", exc)


def drop_supplementary_groups() -> None:
    """Forget the process's supplementary groups (root only; see the module doc)."""
    if privileged():
        os.setgroups([])


def stat_as(path: str, uid: int, gid: int, *, follow: bool = True) -> os.stat_result:
    """os.stat (or lstat) with the access rights of uid:gid (search permission on the path)."""
    with fs_identity(uid, gid):
        return os.stat(path, follow_symlinks=follow)


def open_as(path: str, flags: int, mode: int, uid: int, gid: int) -> int:
    """os.open with the access rights of uid:gid; the descriptor is close-on-exec."""
    with fs_identity(uid, gid):
        return os.open(path, flags | os.O_CLOEXEC, mode)


def read_file_as(path: str, uid: int, gid: int, limit: int) -> tuple[bytes, os.stat_result]:
    """Read at most ``limit`` bytes of a regular file as uid:gid; return (data, fstat)."""
    fd = open_as(path, os.O_RDONLY | os.O_NONBLOCK, 0, uid, gid)
    try:
        st = os.fstat(fd)
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)

