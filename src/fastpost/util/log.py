"""Logging for every daemon and command, in Postfix's line format.

Postfix counterpart: src/util/msg.c, msg_syslog.c, msg_logger.c; src/postlog/

A line is ``<syslog_name>/<service>[pid]: text``; non-info severities put ``warning: ``,
``error: ``, ``fatal: `` or ``panic: `` before the text. Lines go to one or more sinks,
chosen once per process by init():

    syslog       a datagram to /dev/log (connected before any chroot), facility from
                 syslog_facility: ``<PRI>Mmm dd hh:mm:ss tag[pid]: text``
    maillog_file an O_APPEND file opened before any chroot (each write whole lines, so lines
                 of concurrent processes never interleave): ``Mmm dd hh:mm:ss host tag[pid]: text``.
                 A process with an event loop may ask for its informational lines to be
                 written once per turn of the loop (defer_file_writes(loop): smtpd), one
                 write for all the lines of that turn; flush() writes them at once
    postlog      for processes that may not open maillog_file: ``tag[pid]: text`` as a
                 datagram to the postlog service, which writes the file
    stdout/err   the maillog_file layout, for foreground runs and commands

info_later() lets a busy daemon gather maillog file lines and write them with one
write at flush() (cleanup: the ``message-id=`` lines of a commit batch, written when its
replies go out); any other line (from a process that does not defer per loop turn),
close_sinks() and exit flush them first, so the order in the file is the order of the
calls. Both ways share one list of waiting lines.

While the deferred maillog file is the only sink, info() hands its text to KEEPER
(util/_logline_py, compiled as _logline_c: the line made from typed fields, no
interpreted frame); smtpd's compiled session core calls KEEPER.keep() itself. The
keeper declines (and _emit() logs the line, the same bytes) from other threads and in
a second whose time stamp is not made yet; log.py keeps its fields in step with _state.

Untrusted text must go through printable() before it is logged; the format helpers here
do not guess which arguments are untrusted.

fatal() logs and raises Fatal (exit status 1: the master throttles the service);
panic() logs and raises Panic (exit status 2: an internal bug). error() counts, and
after 13 errors becomes fatal, as Postfix's msg_error does.

Diagnostics: a sink that fails is dropped silently (logging never kills a daemon);
everything else is the caller's.
"""

from __future__ import annotations

import atexit
import errno
import os
import socket
import sys
import threading
import time

from fastpost._accel import select

# The deferred maillog file's common line without an interpreted frame (_logline_py).
_logline = select("fastpost.util._logline_c", "fastpost.util._logline_py")
#: The process's one LineKeeper: on while _keeper_fits(); its fields follow _state's.
KEEPER = _logline.KEEPER

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
_LEVELS = {"info": 6, "warning": 4, "error": 3, "fatal": 2, "panic": 0}
_ERROR_LIMIT = 13
#: defer_file_writes(): a turn's lines are written when this many are waiting.
_DEFER_MAX_LINES = 256


class Fatal(SystemExit):
    """Raised by fatal(): the process must exit with status 1."""

    def __init__(self, text: str):
        super().__init__(1)
        self.text = text

    def __str__(self) -> str:
        return self.text


class Panic(SystemExit):
    """Raised by panic(): an internal inconsistency; exit status 2."""

    def __init__(self, text: str):
        super().__init__(2)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _State:
    tag = "postfix/fastpost"
    host = socket.gethostname().partition(".")[0]
    facility = FACILITIES["mail"]
    syslog_sock: socket.socket | None = None
    postlog_sock: socket.socket | None = None  # datagrams to a postlogd-like service
    file_fd: int | None = None
    stream = None  # a text stream (stdout/stderr) or None
    errors = 0
    verbose = 0
    # getpid() is a system call (glibc does not cache it): kept, refreshed after fork.
    pid = os.getpid()
    # The time stamp of file lines, made once a second, with the host after it.
    stamp_second = -1
    stamp = ""
    stamp_host = ""
    # "tag[pid]: ", made when either changes (not per line).
    head = f"{tag}[{pid}]: "
    # defer_file_writes(): the loop that writes the file lines once per turn, the thread
    # it runs in (lines from other threads are written at once), the lines waiting.
    defer_loop = None
    defer_thread = 0
    pending: list = []


_state = _State()


def _refresh_head() -> None:
    _state.head = f"{_state.tag}[{_state.pid}]: "
    KEEPER.set_head(_state.head)


def _keeper_fits() -> None:
    """Switch KEEPER on exactly when info() would only add the line to the waiting
    ones: the maillog file deferred per loop turn is the only sink. Called wherever
    one of those sinks or the loop changes."""
    st = _state
    KEEPER.pending = st.pending
    KEEPER.thread = st.defer_thread
    KEEPER.set_head(st.head)
    KEEPER.limit = _DEFER_MAX_LINES
    KEEPER.loop = st.defer_loop
    KEEPER.flush = flush
    KEEPER.on = (st.defer_loop is not None and st.stream is None and st.file_fd is not None
                 and st.syslog_sock is None and st.postlog_sock is None)


def _forked() -> None:
    _state.pid = os.getpid()
    _refresh_head()
    # The parent writes its own waiting lines; the child's loop is not the parent's.
    _state.pending = []
    _state.defer_loop = None
    _keeper_fits()


os.register_at_fork(after_in_child=_forked)


def init(
    service: str,
    *,
    syslog_name: str = "postfix",
    syslog_facility: str = "mail",
    maillog_file: str = "",
    use_syslog: bool = True,
    stream=None,
    postlog: str = "",
) -> None:
    """Choose the identity and sinks of this process's log lines.

    ``stream`` (e.g. sys.stderr) gets every line too; maillog_file, when set, replaces
    syslog as Postfix does. When this process may not open maillog_file (an
    unprivileged command) and ``postlog`` names a datagram socket, each line goes there
    as ``tag[pid]: text`` for the log service to write (Postfix's postlogd). Call
    again after fork to refresh the pid (it is read per line).
    """
    _state.tag = f"{syslog_name}/{service}" if syslog_name else service
    _refresh_head()
    _state.facility = FACILITIES.get(syslog_facility, FACILITIES["mail"])
    _state.stream = stream
    close_sinks()
    if maillog_file and maillog_file not in ("/dev/stdout", "/dev/stderr"):
        try:
            _state.file_fd = os.open(
                maillog_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            if not (postlog and exc.errno in (errno.EACCES, errno.EPERM) and _connect_postlog(postlog)):
                print(f"{_state.tag}[{os.getpid()}]: warning: open {maillog_file}: {exc.strerror}",
                      file=sys.stderr)
    elif maillog_file == "/dev/stdout":
        _state.stream = sys.stdout
    elif maillog_file == "/dev/stderr":
        _state.stream = sys.stderr
    elif use_syslog and os.path.exists("/dev/log"):
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect("/dev/log")
            _state.syslog_sock = sock
        except OSError:
            _state.syslog_sock = None
    _keeper_fits()


def _connect_postlog(path: str) -> bool:
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.connect(path)
    except OSError:
        return False
    _state.postlog_sock = sock
    return True


def defer_file_writes(loop) -> None:
    """Write maillog_file's informational lines once per turn of ``loop``.

    The lines logged by callbacks of one turn of the loop (many sessions' ``connect
    from``, ``client=`` and ``disconnect from`` under load) go out in one write, at
    the start of the next turn (a ``call_soon``), instead of one write each. Lines
    of other severities are written at once, after the waiting ones (the file keeps
    the order); lines logged from other threads are written at once (only the loop's
    thread touches the waiting lines). flush() writes them; it runs at exit, and
    close_sinks() and init() call it. ``None`` stops deferring. Call from the loop's
    thread (and flush() too): a process killed with SIGKILL loses at most one turn's
    lines.
    """
    flush()
    _state.defer_loop = loop
    _state.defer_thread = threading.get_ident() if loop is not None else 0
    _keeper_fits()


def flush() -> None:
    """Write the lines defer_file_writes() and info_later() keep waiting, now."""
    st = _state
    pending = st.pending
    if not pending:
        return
    st.pending = []  # a swap: a line added meanwhile goes to the new list
    KEEPER.pending = st.pending
    if st.file_fd is None:
        return
    data = pending[0] if len(pending) == 1 else b"".join(pending)
    try:
        os.write(st.file_fd, data)
    except OSError:
        pass


atexit.register(flush)


def close_sinks() -> None:
    """Close the file, postlog and syslog sinks (streams are left alone)."""
    flush()
    if _state.file_fd is not None:
        os.close(_state.file_fd)
        _state.file_fd = None
    if _state.postlog_sock is not None:
        _state.postlog_sock.close()
        _state.postlog_sock = None
    if _state.syslog_sock is not None:
        _state.syslog_sock.close()
        _state.syslog_sock = None
    _keeper_fits()


def set_verbose(level: int) -> None:
    """Set the -v level: debug() lines are logged when it is > 0."""
    _state.verbose = level


def verbose() -> int:
    """Return the -v level."""
    return _state.verbose


def set_tag(text: str) -> None:
    """Replace the tag (``postlog -t``)."""
    _state.tag = text
    _refresh_head()


def tag() -> str:
    """Return the current ``syslog_name/service`` tag."""
    return _state.tag


def stream():
    """Return the text stream lines also go to (stdout under start-fg), or None."""
    return _state.stream


def _stamp_host(st, now: int) -> str:
    """The time stamp and host of file lines for second ``now`` (made once a second)."""
    if now != st.stamp_second:
        st.stamp_second = now
        st.stamp = time.strftime("%b %d %H:%M:%S", time.localtime(now))
        st.stamp_host = f"{st.stamp} {st.host} "
        KEEPER.set_stamp(now, st.stamp_host)
    return st.stamp_host


def _waiting(st) -> None:
    """A line was added to the waiting ones: the first of a turn has them written at
    the turn's end, the _DEFER_MAX_LINES-th writes them now (KEEPER.keep() does the
    same for its lines)."""
    if len(st.pending) == 1:
        try:
            st.defer_loop.call_soon(flush)
        except RuntimeError:  # the loop is closed: no more turns
            flush()
    else:
        flush()


def _emit(level: str, text: str) -> None:
    st = _state
    body = st.head + text if level == "info" else f"{st.head}{level}: {text}"
    fd = st.file_fd
    stream = st.stream
    if fd is not None or stream is not None:
        now = int(time.time())
        line = (st.stamp_host if now == st.stamp_second else _stamp_host(st, now)) \
            + body + "\n"
        if fd is not None:
            data = line.encode("utf-8", "surrogateescape")
            # Only the loop's thread touches the waiting lines; other threads write
            # their own at once (no order between threads, as without deferring).
            if st.defer_loop is not None and threading.get_ident() == st.defer_thread:
                pending = st.pending
                if level == "info":
                    pending.append(data)
                    data = None
                    if len(pending) == 1 or len(pending) >= _DEFER_MAX_LINES:
                        _waiting(st)
                elif pending:
                    flush()  # the waiting lines first: the file keeps their order
            elif st.pending and st.defer_loop is None:
                flush()  # info_later()'s lines first: the file keeps their order
            if data is not None:
                try:
                    os.write(fd, data)
                except OSError:
                    pass
        if stream is not None:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass
    if st.postlog_sock is not None:
        try:
            st.postlog_sock.send(body.encode("utf-8", "surrogateescape"))
        except OSError:
            pass
    if st.syslog_sock is not None:
        pri = st.facility * 8 + _LEVELS[level]
        stamp = time.strftime("%b %e %H:%M:%S")
        try:
            st.syslog_sock.send(f"<{pri}>{stamp} {body}".encode("utf-8", "surrogateescape"))
        except OSError:
            pass


def _fmt(fmt: str, args: tuple) -> str:
    return fmt % args if args else fmt


def info(fmt: str, *args) -> None:
    """Log an informational line.

    A busy daemon's usual line (smtpd's connect/client=/disconnect: only the maillog
    file, waiting for the loop's turn to end) is KEEPER's (_logline_py), which makes
    _emit()'s line without its branches; smtpd's compiled session core hands its
    finished texts to KEEPER.keep() itself (then to info() when it answers False).
    """
    text = fmt % args if args else fmt
    if not KEEPER.keep(text):
        _emit("info", text)


def info_later(fmt: str, *args) -> None:
    """An informational line whose write to the maillog file may wait for flush(),
    so that the lines of many messages cost one write (cleanup's ``message-id=``
    lines: written with the batch's replies). Any line logged before that flush
    writes the waiting ones first: the file keeps the order of the calls. With a
    stream, syslog or postlog sink the line is logged at once, as info()."""
    st = _state
    if st.file_fd is None or st.stream is not None or st.syslog_sock is not None \
            or st.postlog_sock is not None:
        _emit("info", fmt % args if args else fmt)
        return
    now = int(time.time())
    line = (st.stamp_host if now == st.stamp_second else _stamp_host(st, now)) \
        + st.head + (fmt % args if args else fmt) + "\n"
    st.pending.append(line.encode("utf-8", "surrogateescape"))


def debug(fmt: str, *args) -> None:
    """Log an informational line only under -v."""
    if _state.verbose:
        _emit("info", _fmt(fmt, args))


def warn(fmt: str, *args) -> None:
    """Log a ``warning:`` line."""
    _emit("warning", _fmt(fmt, args))


def error(fmt: str, *args) -> None:
    """Log an ``error:`` line; the 13th error in a process is fatal."""
    _emit("error", _fmt(fmt, args))
    _state.errors += 1
    if _state.errors >= _ERROR_LIMIT:
        fatal("too many errors - program terminated")


def fatal(fmt: str, *args):
    """Log a ``fatal:`` line and raise Fatal (exit status 1)."""
    text = _fmt(fmt, args)
    _emit("fatal", text)
    raise Fatal(text)


def panic(fmt: str, *args):
    """Log a ``panic:`` line and raise Panic (exit status 2)."""
    text = _fmt(fmt, args)
    _emit("panic", text)
    raise Panic(text)


def log_at(level: str, text: str) -> None:
    """Log text at a named level (info, warning, error) without side effects."""
    _emit(level if level in _LEVELS else "info", text)


def printable(text, replacement: str = "?") -> str:
    """Return text with control characters and invalid UTF-8 replaced.

    Bytes are decoded as UTF-8 first; undecodable bytes become the replacement, as do
    C0/C1 control characters and DEL. Printable non-ASCII characters are kept.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "replace").replace("\ufffd", replacement)
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or 0xDC80 <= code <= 0xDCFF or not ch.isprintable() and ch != " ":
            out.append(replacement)
        else:
            out.append(ch)
    return "".join(out)
