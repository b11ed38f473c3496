"""postlogd: writes maillog_file for processes that may not (the postlog service).

Postfix counterpart: src/postlogd/postlogd.c

    postlog   unix-dgram n  -       n       -       1       postlogd

Processes that cannot open $maillog_file themselves (unprivileged commands; see
fastpost.mail.maillog) send each log line as one datagram ``tag[pid]: text`` to
$queue_directory/public/postlog. postlogd opens the file once as root (pre_init) and
appends ``Mmm dd hh:mm:ss host tag[pid]: text`` lines to it (one write each, O_APPEND,
so lines never interleave with those the daemons write directly). maillog_file
``/dev/stdout`` (start-fg, ./dev run) writes to the master's standard output.

The text is untrusted (any local user can send it, as with syslog): it is made
printable, one line, at most MAX_LINE bytes.

Runs on the trigger skeleton (one datagram per call); max_use and max_idle apply, so
a changed main.cf is picked up as Postfix's postlogd does.

Parameters: maillog_file, plus the skeleton's.
Diagnostics: fatal when maillog_file is empty or cannot be opened (the master
throttles the service); a failed write is a warning.
"""

from __future__ import annotations

import os
import socket
import time

from fastpost.server import trigger_server_main
from fastpost.util import log

#: Longest line written (longer text is cut, as a syslog daemon would).
MAX_LINE = 4096

_HOST = socket.gethostname().partition(".")[0]


def pre_init(ctx) -> None:
    path = str(ctx.p["maillog_file"])
    if not path:
        log.fatal("maillog_file is empty: the postlog service has nowhere to write")
    if path == "/dev/stdout":
        ctx.maillog_fd = 1
    elif path == "/dev/stderr":
        ctx.maillog_fd = 2
    else:
        try:
            ctx.maillog_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                     0o644)
        except OSError as exc:
            log.fatal("open %s: %s", path, exc.strerror)


def format_line(data: bytes, now: float | None = None) -> bytes:
    """Return the maillog line for one datagram (untrusted bytes)."""
    text = log.printable(data[:MAX_LINE].rstrip(b"\n"))
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime(now))
    return f"{stamp} {_HOST} {text}\n".encode("utf-8", "replace")


def service(data: bytes, ctx) -> None:
    try:
        os.write(ctx.maillog_fd, format_line(data))
    except OSError as exc:
        log.warn("write %s: %s", ctx.p["maillog_file"], exc.strerror)


def main(argv: list[str]) -> None:
    trigger_server_main(argv, service, name="postlogd", pre_init=pre_init)
