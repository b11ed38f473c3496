"""qmail-style Maildir delivery: write in tmp/, link into new/, never lock.

Postfix counterpart: src/local/maildir.c, src/virtual/maildir.c

deliver() writes one message into the Maildir at ``path`` (which ends in ``/``):

 1. ``tmp/<sec>.P<pid>Q<n>.<host>`` is created with O_EXCL, mode 0600 (missing
    ``tmp/``, and the Maildir itself, are created with mode 0700), written and synced;
 2. it is hard-linked to ``new/<sec>.V<dev>I<ino>M<usec>.<host>`` (device and inode in
    hex, as Postfix names them: unique as long as the file exists), creating ``cur/``
    and ``new/`` when missing, and the tmp name is removed.

Readers (mutt, Dovecot, Python's mailbox.Maildir) never see a partial message, and
concurrent deliveries need no lock. The host name has ``/`` and ``:`` written as
``\\057`` and ``\\072``, as the Maildir specification asks.

Who the calls run as is the caller's business (fastpost.util.privs.fs_identity).

Parameters: the caller passes mailbox_size_limit / virtual_mailbox_limit as size_limit
(a message bigger than that fails with EFBIG, "File too large").
Diagnostics: MaildirError(dsn, text, errno): ``create <tmpfile>: <strerror>``, ``link
to <newfile>: <strerror>``, ``error writing message: <strerror>``; the dsn follows
Postfix: ENOSPC 4.3.0 and ESTALE 4.2.0 (try again), EDQUOT/EFBIG 5.2.2, others 5.2.0.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import time

_counter = itertools.count(1)


class MaildirError(Exception):
    """A Maildir delivery that failed; str() is the reason."""

    def __init__(self, dsn: str, text: str, err: int = 0):
        super().__init__(text)
        self.dsn = dsn
        self.text = text
        self.errno = err


def _dsn(err: int) -> str:
    if err == errno.ENOSPC:
        return "4.3.0"
    if err == errno.ESTALE:
        return "4.2.0"
    if err in (errno.EDQUOT, errno.EFBIG):
        return "5.2.2"
    return "5.2.0"


def hostname() -> str:
    """The host part of Maildir file names (gethostname, with / and : escaped)."""
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def _make_dirs(path: str) -> None:
    """Create path and its missing parents, each with mode 0700 (as Postfix's make_dirs)."""
    path = path.rstrip("/")
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass


def deliver(path: str, data: bytes, *, size_limit: int = 0, now: float | None = None) -> str:
    """Deliver ``data`` into the Maildir ``path``; return the new file's path."""
    if not path.endswith("/"):
        path += "/"
    tmpdir, newdir, curdir = path + "tmp/", path + "new/", path + "cur/"
    stamp = time.time() if now is None else now
    sec = int(stamp)
    usec = int((stamp - sec) * 1_000_000)
    host = hostname()
    tmpfile = f"{tmpdir}{sec}.P{os.getpid()}Q{next(_counter)}.{host}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmpfile, flags, 0o600)
        except FileNotFoundError:
            _make_dirs(tmpdir)
            fd = os.open(tmpfile, flags, 0o600)
    except OSError as exc:
        raise MaildirError(_dsn(exc.errno), f"create {tmpfile}: {exc.strerror}", exc.errno) from None
    newfile = ""
    try:
        try:
            st = os.fstat(fd)
            if size_limit and len(data) > size_limit:
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            raise MaildirError(_dsn(exc.errno), f"error writing message: {exc.strerror}",
                               exc.errno) from None
        finally:
            os.close(fd)
        newfile = f"{newdir}{sec}.V{st.st_dev:x}I{st.st_ino:x}M{usec}.{host}"
        try:
            try:
                os.link(tmpfile, newfile)
            except FileNotFoundError:
                _make_dirs(curdir)
                _make_dirs(newdir)
                os.link(tmpfile, newfile)
        except OSError as exc:
            raise MaildirError(_dsn(exc.errno), f"link to {newfile}: {exc.strerror}", exc.errno) from None
    finally:
        try:
            os.unlink(tmpfile)
        except OSError:
            pass
    return newfile
