"""UNIX mailbox files: safe open, exclusive locks, append with roll-back.

Postfix counterpart: src/global/mbox_open.c, mbox_conf.c, dot_lockfile.c,
deliver_flock.c, src/util/safe_open.c, myflock.c

open_mailbox() opens (or creates) a mailbox-style file and takes the locks that
``mailbox_delivery_lock`` / ``virtual_mailbox_lock`` name, in Postfix's order:

 1. safe open: an existing file must be reached without a symbolic link (except one
    owned by root), have exactly one hard link and not be a directory; a missing file
    is created with O_CREAT|O_EXCL (mode 0600) and optionally chowned to the recipient;
 2. ``dotlock``: create ``<path>.lock`` exclusively (only for regular files); a lock
    file older than ``stale_lock_time`` is removed; a directory the caller cannot write
    may be tolerated (delivery to /file/name in a read-only directory);
 3. ``fcntl`` then ``flock``: kernel locks, without waiting, retried
    ``deliver_lock_attempts`` times ``deliver_lock_delay`` apart. ``fcntl`` takes an
    open-file-description lock (F_OFD_SETLK): it conflicts with the classic POSIX
    record locks that Postfix's local(8), mutt or procmail take, and, unlike those,
    also between threads of this process;
 4. the file must still have one link (someone may have replaced it meanwhile).

Threads of one process that deliver to the same mailbox first queue on an in-process
mutex (per path, waiting at most attempts x delay), so that they take turns at once
instead of sleeping deliver_lock_delay between attempts at the file locks.

append() writes the delivered form at the end, syncs it, and cuts the file back to
its old length if anything failed; a ``size_limit`` (mailbox_size_limit) is enforced
as EFBIG before anything is written. release() removes the dot lock; closing the
descriptor drops the kernel locks.

Who the calls run as is the caller's business (fastpost.util.privs.fs_identity).

Diagnostics: MailboxError(dsn, text, errno) with Postfix's texts ("cannot open file:
...", "cannot create file exclusively: ...", "file has 2 hard links", "unable to
create lock file X: ...", "unable to lock for exclusive access: ..."); ValueError
from lock_mask() for an unknown lock name. mbox_dsn() maps errno to the status code:
EAGAIN/ESTALE 4.2.0, ENOSPC 4.3.0, EDQUOT/EFBIG 5.2.2, else the caller's default.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import threading
import time
from dataclasses import dataclass

LOCK_FLOCK = 1
LOCK_FCNTL = 2
LOCK_DOTLOCK = 4
_LOCK_NAMES = {"flock": LOCK_FLOCK, "fcntl": LOCK_FCNTL, "dotlock": LOCK_DOTLOCK}

_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid (0 for open-file-description locks), padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")


class MailboxError(Exception):
    """A mailbox that cannot be opened, locked or written; str() is the reason."""

    def __init__(self, dsn: str, text: str, err: int = 0):
        super().__init__(text)
        self.dsn = dsn
        self.text = text
        self.errno = err


def lock_mask(names: list[str], param: str = "mailbox_delivery_lock") -> int:
    """Return the lock bits for a list of lock names; ValueError for unknown ones."""
    mask = 0
    for name in names:
        bit = _LOCK_NAMES.get(name.lower())
        if bit is None:
            raise ValueError(f'{param}: unknown mailbox lock method "{name}" '
                             f"(known: {', '.join(_LOCK_NAMES)})")
        mask |= bit
    return mask


def mbox_dsn(err: int, default: str) -> str:
    """Map an errno value to a mailbox status code (see the module docstring)."""
    if err in (errno.EAGAIN, errno.ESTALE):
        return "4.2.0"
    if err == errno.ENOSPC:
        return "4.3.0"
    if err in (errno.EDQUOT, errno.EFBIG):
        return "5.2.2"
    return default


@dataclass
class Mailbox:
    """An open, locked mailbox (see open_mailbox)."""

    path: str
    fd: int
    st: os.stat_result  # fstat of the open file
    dotlocked: bool = False
    mutex: object = None  # the in-process turn (released by release())


_mutexes: dict[str, list] = {}  # path -> [lock, users]
_mutexes_guard = threading.Lock()


def _take_turn(path: str, timeout: float):
    """Wait for this process's turn at a mailbox path; return the entry, or None."""
    with _mutexes_guard:
        entry = _mutexes.setdefault(path, [threading.Lock(), 0])
        entry[1] += 1
    if entry[0].acquire(timeout=timeout):
        return entry
    _leave(path, entry, held=False)
    return None


def _leave(path: str, entry, held: bool = True) -> None:
    if held:
        entry[0].release()
    with _mutexes_guard:
        entry[1] -= 1
        if entry[1] == 0 and _mutexes.get(path) is entry:
            del _mutexes[path]


# -- safe open ---------------------------------------------------------------------------

def _open_exist(path: str, flags: int) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(path, (flags & ~(os.O_CREAT | os.O_EXCL)) | os.O_CLOEXEC)
    except OSError as exc:
        raise MailboxError("", f"cannot open file: {exc.strerror}", exc.errno) from None
    try:
        fst = os.fstat(fd)
        if fst.st_nlink != 1:
            raise MailboxError("", f"file has {fst.st_nlink} hard links", errno.EPERM)
        if stat.S_ISDIR(fst.st_mode):
            raise MailboxError("", "file is a directory", errno.EISDIR)
        try:
            lst = os.lstat(path)
        except OSError as exc:
            raise MailboxError("", f"file status changed unexpectedly: {exc.strerror}", errno.EPERM) from None
        if stat.S_ISLNK(lst.st_mode):
            if lst.st_uid != 0:
                raise MailboxError("", "file is a symbolic link", errno.EPERM)
        elif (fst.st_dev, fst.st_ino, fst.st_nlink, fst.st_mode) != \
                (lst.st_dev, lst.st_ino, lst.st_nlink, lst.st_mode):
            raise MailboxError("", "file status changed unexpectedly", errno.EPERM)
    except BaseException:
        os.close(fd)
        raise
    return fd, fst


def _open_create(path: str, flags: int, mode: int, chown: tuple[int, int] | None,
                 warn) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise MailboxError("", f"cannot create file exclusively: {exc.strerror}", exc.errno) from None
    if chown is not None:
        try:
            os.fchown(fd, chown[0], chown[1])
        except OSError as exc:
            warn(f"{path}: cannot change file ownership: {exc.strerror}")
    return fd, os.fstat(fd)


def safe_open(path: str, flags: int, mode: int = 0o600, chown: tuple[int, int] | None = None,
              warn=lambda text: None) -> tuple[int, os.stat_result]:
    """Open an existing file carefully, or create it exclusively (see the module doc)."""
    if not flags & os.O_CREAT:
        return _open_exist(path, flags)
    try:
        return _open_exist(path, flags)
    except MailboxError as exc:
        if exc.errno != errno.ENOENT:
            raise
    try:
        return _open_create(path, flags, mode, chown, warn)
    except MailboxError as exc:
        if exc.errno != errno.EEXIST:
            raise
    return _open_exist(path, flags)


# -- locks ---------------------------------------------------------------------------------

def dotlock(path: str, *, attempts: int, delay: float, stale: float) -> None:
    """Create ``path.lock`` exclusively; OSError (EEXIST when someone holds it) otherwise."""
    lock = path + ".lock"
    tries = 0
    while True:
        tries += 1
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno != errno.EEXIST or tries >= attempts:
                raise
            try:
                st = os.stat(lock)
                if st.st_mtime < time.time() - stale:
                    os.unlink(lock)
                    continue
            except OSError:
                continue  # removed meanwhile: try again at once
            time.sleep(delay)
            continue
        os.close(fd)
        return


def dot_unlock(path: str) -> None:
    """Remove ``path.lock`` (ignoring a lock that is already gone)."""
    try:
        os.unlink(path + ".lock")
    except FileNotFoundError:
        pass


def kernel_lock(fd: int, kind: int, *, attempts: int, delay: float) -> None:
    """Take an exclusive fcntl (OFD) or flock lock without waiting, retrying; OSError."""
    tries = 0
    while True:
        tries += 1
        try:
            if kind == LOCK_FCNTL:
                fcntl.fcntl(fd, _F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            busy = exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
            if not busy:
                raise
            if tries >= attempts:
                raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN)) from None
        time.sleep(delay)


def open_mailbox(path: str, *, lock: int, attempts: int = 20, delay: float = 1.0,
                 stale: float = 500.0, flags: int = os.O_APPEND | os.O_WRONLY | os.O_CREAT,
                 mode: int = 0o600, chown: tuple[int, int] | None = None,
                 dotlock_may_fail: bool = False, default_dsn: str = "5.2.0",
                 warn=lambda text: None) -> Mailbox:
    """Open and lock a mailbox (see the module docstring); MailboxError on failure."""
    turn = _take_turn(path, max(1.0, attempts * delay))
    if turn is None:
        raise MailboxError(mbox_dsn(errno.EAGAIN, default_dsn),
                           f"unable to lock for exclusive access: {os.strerror(errno.EAGAIN)}",
                           errno.EAGAIN)
    try:
        fd, st = safe_open(path, flags | os.O_NONBLOCK, mode, chown, warn)
    except MailboxError as exc:
        _leave(path, turn)
        raise MailboxError(mbox_dsn(exc.errno, default_dsn), exc.text, exc.errno) from None
    except BaseException:
        _leave(path, turn)
        raise
    box = Mailbox(path, fd, st, mutex=turn)
    try:
        regular = stat.S_ISREG(st.st_mode)
        if regular and lock & LOCK_DOTLOCK:
            try:
                dotlock(path, attempts=attempts, delay=delay, stale=stale)
                box.dotlocked = True
            except OSError as exc:
                text = f"unable to create lock file {path}.lock: {exc.strerror}"
                if exc.errno == errno.EEXIST:
                    raise MailboxError(mbox_dsn(errno.EAGAIN, default_dsn), text, errno.EAGAIN) from None
                if not dotlock_may_fail:
                    raise MailboxError(mbox_dsn(exc.errno, default_dsn), text, exc.errno) from None
                warn(text)
        if regular:
            for kind in (LOCK_FCNTL, LOCK_FLOCK):
                if lock & kind:
                    try:
                        kernel_lock(fd, kind, attempts=attempts, delay=delay)
                    except OSError as exc:
                        raise MailboxError(mbox_dsn(exc.errno, default_dsn),
                                           f"unable to lock for exclusive access: {exc.strerror}",
                                           exc.errno) from None
            now = os.fstat(fd)
            if now.st_nlink != 1:
                warn(f"{path}: file status changed unexpectedly")
                raise MailboxError(mbox_dsn(errno.EAGAIN, default_dsn),
                                   "target file status changed unexpectedly", errno.EAGAIN)
            box.st = now
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        release(box)
        raise
    return box


def release(box: Mailbox) -> None:
    """Remove the mailbox's dot lock and end this thread's turn (the caller closes
    box.fd, which drops the kernel locks)."""
    if box.dotlocked:
        dot_unlock(box.path)
        box.dotlocked = False
    if box.mutex is not None:
        _leave(box.path, box.mutex)
        box.mutex = None


def close(box: Mailbox) -> None:
    """Close the descriptor (dropping the kernel locks), then release() the rest."""
    try:
        os.close(box.fd)
    except OSError:
        pass
    release(box)


def append(box: Mailbox, data: bytes, *, size_limit: int = 0, sync: bool = True) -> None:
    """Append data at the end; on any failure cut the file back and raise MailboxError.

    The error text is Postfix's ``error writing message: <strerror>``; a mailbox that
    would grow beyond ``size_limit`` (0 = no limit) fails with EFBIG ("File too large").
    """
    fd = box.fd
    regular = stat.S_ISREG(box.st.st_mode)
    start = os.lseek(fd, 0, os.SEEK_END) if regular else 0
    try:
        if size_limit and regular and start + len(data) > size_limit:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if sync and regular:
            os.fsync(fd)
    except OSError as exc:
        if regular:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
        raise MailboxError(mbox_dsn(exc.errno, "5.3.0"),
                           f"error writing message: {exc.strerror}", exc.errno) from None
