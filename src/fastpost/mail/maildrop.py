"""Maildrop files: local submissions waiting for pickup.

Postfix counterpart: the stream src/sendmail/sendmail.c writes to postdrop(1), and
src/postdrop/postdrop.c which stores it in $queue_directory/maildrop; src/pickup/
pickup.c reads it back.

A maildrop file is a record stream in Postfix's queue-file record format
(fastpost.mail.record): envelope records first, then the content, then an empty
extracted section:

    T  "seconds microseconds"    arrival (submission) time
    f  request flags             cleanup_proto.FLAG_EXTRACT when sendmail -t (optional)
    F  full name                 sendmail -F (optional)
    <  RET, i ENVID              sendmail -R, -V (optional)
    A  name=value                attributes (optional; requeue: the original arrival)
    S  sender                    (empty: the null sender)
    o ORCPT, n NOTIFY, R rcpt    per recipient (ORCPT and NOTIFY optional)
    M                            start of content
    N / L                        content lines (L: a piece of a longer line)
    X                            start of the extracted section (empty)
    E                            end

Files are written under a dot-name, flushed to disk and renamed to their final name,
so pickup never sees half a file; the final name is unique (time, pid, random). The
owner of the file is the user who submitted it: pickup logs it as ``uid=N``.

    data = encode(DropMessage(sender="u@h", recipients=[("a@b", "", 0)], content=b"..."))
    name = drop(maildrop_dir, data)          # durable when it returns
    msg = parse(data)                        # DropMessage, or MaildropError

Diagnostics: MaildropError (with the reason) for a file that is not a complete,
well-formed maildrop stream; OSError from drop() as the system reports it.
"""

from __future__ import annotations

import os
import time

from fastpost.mail import rectype as R
from fastpost.mail.record import CorruptRecord, encode_records, split_records

#: Content lines longer than this are split into L records (as Postfix's line_length_limit).
LINE_PIECE = 2048
#: Largest record accepted when reading (an address, a header line piece).
MAX_RECORD = 1 << 20


class MaildropError(ValueError):
    """A maildrop file that cannot be taken (the text says why)."""


class DropMessage:
    """One submission: the envelope and the content (LF line ends).

    A plain class rather than a dataclass: sendmail imports this module on every
    submission, and ``dataclasses`` (with ``inspect``) costs ~5 ms to import.
    """

    __slots__ = ("sender", "recipients", "content", "arrival", "flags", "fullname", "ret",
                 "envid", "attrs")

    def __init__(self, sender: str, recipients: list | None = None, content: bytes = b"",
                 arrival: float = 0.0, flags: int = 0, fullname: str | None = None,
                 ret: str | None = None, envid: str | None = None, attrs: list | None = None):
        self.sender = sender
        self.recipients = [] if recipients is None else recipients  # (address, orcpt, notify)
        self.content = content
        self.arrival = arrival
        self.flags = flags
        self.fullname = fullname
        self.ret = ret
        self.envid = envid
        self.attrs = [] if attrs is None else attrs  # (name, value)

    def __eq__(self, other) -> bool:
        if not isinstance(other, DropMessage):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"DropMessage({fields})"


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def encode(msg: DropMessage) -> bytes:
    """The maildrop stream of ``msg`` (module docstring)."""
    arrival = msg.arrival or time.time()
    sec = int(arrival)
    recs = [(R.REC_TYPE_TIME, b"%d %d" % (sec, int((arrival - sec) * 1e6)))]
    if msg.flags:
        recs.append((R.REC_TYPE_FLGS, b"%d" % msg.flags))
    if msg.fullname is not None:
        recs.append((R.REC_TYPE_FULL, _b(msg.fullname)))
    if msg.ret:
        recs.append((R.REC_TYPE_DSN_RET, _b(msg.ret)))
    if msg.envid:
        recs.append((R.REC_TYPE_DSN_ENVID, _b(msg.envid)))
    for name, value in msg.attrs:
        recs.append((R.REC_TYPE_ATTR, _b(f"{name}={value}")))
    recs.append((R.REC_TYPE_FROM, _b(msg.sender)))
    for address, orcpt, notify in msg.recipients:
        if orcpt:
            recs.append((R.REC_TYPE_DSN_ORCPT, _b(orcpt)))
        if notify:
            recs.append((R.REC_TYPE_DSN_NOTIFY, b"%d" % notify))
        recs.append((R.REC_TYPE_RCPT, _b(address)))
    recs.append((R.REC_TYPE_MESG, b""))
    content = msg.content
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        while len(line) > LINE_PIECE:
            recs.append((R.REC_TYPE_CONT, line[:LINE_PIECE]))
            line = line[LINE_PIECE:]
        recs.append((R.REC_TYPE_NORM, line))
    recs.append((R.REC_TYPE_XTRA, b""))
    recs.append((R.REC_TYPE_END, b""))
    return encode_records(recs)


def parse(data: bytes) -> DropMessage:
    """Read a maildrop stream back (MaildropError when it is not a complete one)."""
    try:
        recs, used = split_records(data, MAX_RECORD)
    except CorruptRecord as exc:
        raise MaildropError(f"corrupt record: {exc}") from None
    if used != len(data):
        raise MaildropError("truncated file")
    msg = DropMessage(sender="")
    have_sender = False
    orcpt, notify = "", 0
    it = iter(recs)
    try:
        for rtype, payload in it:
            text = payload.decode("utf-8", "surrogateescape")
            if rtype == R.REC_TYPE_TIME:
                fields = text.split()
                msg.arrival = int(fields[0]) + (int(fields[1]) / 1e6 if len(fields) > 1 else 0)
            elif rtype == R.REC_TYPE_FLGS:
                msg.flags = int(text)
            elif rtype == R.REC_TYPE_FULL:
                msg.fullname = text
            elif rtype == R.REC_TYPE_DSN_RET:
                msg.ret = text
            elif rtype == R.REC_TYPE_DSN_ENVID:
                msg.envid = text
            elif rtype == R.REC_TYPE_ATTR:
                name, sep, value = text.partition("=")
                if not sep:
                    raise MaildropError(f"attribute without '=': {text[:60]!r}")
                msg.attrs.append((name, value))
            elif rtype == R.REC_TYPE_FROM:
                msg.sender = text
                have_sender = True
            elif rtype == R.REC_TYPE_DSN_ORCPT:
                orcpt = text
            elif rtype == R.REC_TYPE_DSN_NOTIFY:
                notify = int(text)
            elif rtype == R.REC_TYPE_RCPT:
                msg.recipients.append((text, orcpt, notify))
                orcpt, notify = "", 0
            elif rtype == R.REC_TYPE_MESG:
                break
            else:
                raise MaildropError(f"unexpected record type '{chr(rtype)}' in the envelope")
        else:
            raise MaildropError("no content")
        out = []
        for rtype, payload in it:
            if rtype == R.REC_TYPE_NORM:
                out.append(payload)
                out.append(b"\n")
            elif rtype == R.REC_TYPE_CONT:
                out.append(payload)
            elif rtype == R.REC_TYPE_XTRA:
                break
            else:
                raise MaildropError(f"unexpected record type '{chr(rtype)}' in the content")
        else:
            raise MaildropError("no end of content")
        rest = [r for r, _ in it]
        if rest != [R.REC_TYPE_END]:
            raise MaildropError("no end record")
    except ValueError as exc:
        if isinstance(exc, MaildropError):
            raise
        raise MaildropError(f"bad number in a record: {exc}") from None
    if not have_sender:
        raise MaildropError("no sender")
    msg.content = b"".join(out)
    return msg


def new_name() -> str:
    """A file name no other submission uses (time, pid, randomness)."""
    now = time.time()
    return f"{int(now):X}{int((now % 1) * 1e6):05X}{os.getpid():X}{os.urandom(3).hex().upper()}"


def drop(directory: str, data: bytes, owner: tuple[int, int] | None = None,
         name: str | None = None) -> str:
    """Store ``data`` durably in ``directory`` under a new name; return the name.

    ``owner`` (uid, gid): give the file to them before it appears (root's requeue
    hands files to mail_owner, the only owner pickup trusts with a requeue).
    """
    name = name or new_name()
    tmp = os.path.join(directory, "." + name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, 0o644)  # complete: pickup (mail_owner) may read it
        os.fsync(fd)
        os.rename(tmp, os.path.join(directory, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        os.close(fd)
        raise
    try:
        _sync_directory(directory, fd)
    finally:
        os.close(fd)
    return name


def _sync_directory(directory: str, fd: int) -> None:
    """Make the rename durable: fsync the directory, or, when it cannot be opened
    (the set-gid postdrop helper may write into maildrop, 0730, but not read it),
    syncfs(2) the file system through the file's descriptor."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), directory)
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


__all__ = ["DropMessage", "MaildropError", "encode", "parse", "drop", "new_name", "LINE_PIECE"]
