"""Delivery work done as a user: mailboxes, Maildirs, files, list files, commands.

Postfix counterpart: src/local/mailbox.c (deliver_mailbox_file), maildir.c, file.c,
command.c, src/virtual/mailbox.c, maildir.c (the I/O halves), src/util/open_as.c,
stat_as.c

The delivery agents (local, virtual) call these from worker threads, never from the
event loop. Each does every file access inside fastpost.util.privs.fs_identity, so it
is checked against, and creates files as, the user the delivery is for:

* mailbox_file: UNIX mailbox. The mailbox is opened, created and dot-locked as the
  ``spool`` ids and written as the ``user`` ids. local passes, for the mail spool
  directory, the recipient when the directory is world-writable, the recipient with
  the directory's group when it is group-writable (Debian's /var/mail root:mail 2775),
  root otherwise (a new mailbox is then chowned to the recipient); for a mailbox in the
  home directory, and for virtual, spool and user are the same;
* maildir: tmp/ -> new/ as the user;
* file: /file/name destinations of aliases and .forward files, as the user (or
  default_privs); a file with an execute bit is refused; the dot lock may fail
  (a file in a directory the user cannot write);
* read_list: a .forward or :include: file, as the user;
* command: a command through fastpost.mail.pipe_command.

Everything returns an OpResult (never raises for delivery problems): ``ok``, a status
code, the text Postfix would log, the errno, and warnings for the caller to log.

Diagnostics: see OpResult; PrivilegeError (an identity switch refused) propagates and
defers the delivery.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from fastpost.mail import maildir as maildir_mod
from fastpost.mail import mbox, pipe_command
from fastpost.util.privs import fs_identity


@dataclass
class OpResult:
    ok: bool
    dsn: str = "2.0.0"
    text: str = ""
    errno: int = 0
    warnings: list = field(default_factory=list)
    data: object = None  # read_list: the file content


@dataclass
class Ids:
    uid: int
    gid: int


@dataclass
class LockPolicy:
    mask: int
    attempts: int
    delay: float
    stale: float


def mailbox_file(path: str, data: bytes, *, spool: Ids, user: Ids, chown: tuple | None,
                 locks: LockPolicy, size_limit: int, strict_owner: bool,
                 default_dsn: str = "5.2.0") -> OpResult:
    """Append to a UNIX mailbox (see the module docstring); ``default_dsn`` is the
    status of errors mbox_dsn has no code for (local bounces them, virtual defers)."""
    warnings: list[str] = []
    try:
        with fs_identity(spool.uid, spool.gid):
            box = mbox.open_mailbox(path, lock=locks.mask, attempts=locks.attempts,
                                    delay=locks.delay, stale=locks.stale, chown=chown,
                                    default_dsn=default_dsn, warn=warnings.append)
    except mbox.MailboxError as exc:
        return OpResult(False, exc.dsn, exc.text, exc.errno, warnings)
    try:
        with fs_identity(user.uid, user.gid):
            if not stat.S_ISREG(box.st.st_mode):
                return OpResult(False, "5.2.0", f"destination {path} is not a regular file",
                                0, warnings)
            if strict_owner and box.st.st_uid != user.uid:
                warnings.append('specify "strict_mailbox_ownership = no" to ignore mailbox '
                                "ownership mismatch")
                return OpResult(False, "4.2.0", f"destination {path} is not owned by recipient",
                                0, warnings)
            end = os.lseek(box.fd, 0, os.SEEK_END)
            mbox.append(box, data, size_limit=size_limit)
            return OpResult(True, warnings=warnings, data=end)
    except mbox.MailboxError as exc:
        return OpResult(False, exc.dsn, exc.text, exc.errno, warnings)
    finally:
        with fs_identity(spool.uid, spool.gid):
            mbox.close(box)


def maildir(path: str, data: bytes, *, user: Ids, size_limit: int) -> OpResult:
    """Deliver into a Maildir as the user."""
    try:
        with fs_identity(user.uid, user.gid):
            name = maildir_mod.deliver(path, data, size_limit=size_limit)
    except maildir_mod.MaildirError as exc:
        return OpResult(False, exc.dsn, exc.text, exc.errno)
    return OpResult(True, data=name)


def file(path: str, data: bytes, *, user: Ids, locks: LockPolicy, size_limit: int) -> OpResult:
    """Append to /file/name as the user (a non-regular file such as /dev/null is
    written without locks, size limit or sync)."""
    warnings: list[str] = []
    try:
        with fs_identity(user.uid, user.gid):
            box = mbox.open_mailbox(path, lock=locks.mask, attempts=locks.attempts,
                                    delay=locks.delay, stale=locks.stale, dotlock_may_fail=True,
                                    default_dsn="5.2.0", warn=warnings.append)
            try:
                if box.st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
                    return OpResult(False, "5.2.0", "destination file is executable", 0, warnings)
                regular = stat.S_ISREG(box.st.st_mode)
                mbox.append(box, data, size_limit=size_limit if regular else 0, sync=regular)
                return OpResult(True, warnings=warnings)
            finally:
                mbox.close(box)
    except mbox.MailboxError as exc:
        return OpResult(False, exc.dsn, exc.text, exc.errno, warnings)


def lstat_as(path: str, user: Ids) -> os.stat_result | None:
    """lstat() with the user's rights, or None when that fails."""
    try:
        with fs_identity(user.uid, user.gid):
            return os.lstat(path)
    except OSError:
        return None


def stat_as(path: str, user: Ids) -> tuple[os.stat_result | None, str]:
    """stat() with the user's rights: (result, "") or (None, strerror)."""
    try:
        with fs_identity(user.uid, user.gid):
            return os.stat(path), ""
    except OSError as exc:
        return None, exc.strerror or str(exc)


def read_list(path: str, user: Ids, limit: int) -> OpResult:
    """Read a .forward or :include: file as the user (at most ``limit`` bytes)."""
    try:
        with fs_identity(user.uid, user.gid):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return OpResult(False, text=exc.strerror or str(exc), errno=exc.errno)
    try:
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return OpResult(True, data=b"".join(chunks))
    except OSError as exc:
        return OpResult(False, text=exc.strerror or str(exc), errno=exc.errno)
    finally:
        os.close(fd)


def directory_usable(path: str, user: Ids) -> str:
    """Return "" when the user may enter directory ``path``, else the reason."""
    try:
        with fs_identity(user.uid, user.gid):
            os.stat(os.path.join(path, "."))  # needs search permission on path itself
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def command(**kwargs) -> pipe_command.CommandResult:
    """Run a delivery command (fastpost.mail.pipe_command.run)."""
    return pipe_command.run(**kwargs)
