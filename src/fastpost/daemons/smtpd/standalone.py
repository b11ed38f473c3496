"""Run smtpd alone, without the master: for development and benchmarks.

Postfix counterpart: ``smtpd -S`` (stand-alone mode) in spirit.

    python -m fastpost.daemons.smtpd.standalone -c CONFIG_DIR -l 127.0.0.1:2525 \\
        -d SPOOL_DIR [--fsync | --queue | --null | --cleanup SOCKET] [--workers N]
        [--asyncio] [--accept-handles N] [--maillog FILE] [--port-file FILE] [-o name=value]

One process per worker, each with its own event loop, all accepting on one
listening socket (SO_REUSEPORT is not needed: the socket is bound before fork).
Messages go to FileTestSink in SPOOL_DIR (with --fsync they are made durable before
"250 queued as"), or with --queue into the queue store there (QueueSink: each worker
a committer, group commit), or with --null nowhere (NullSink: every message "queued" at once
under one ID, nothing kept: smtpd's own ceiling), or with --cleanup SOCKET to a cleanup service listening on that
UNIX socket (CleanupSink, the production daemon's sink; benchmarks/smtpd_gap.py points it
at a fake cleanup or at an instance's public/cleanup). Logs go to stdout in Postfix's
format unless --quiet; with --maillog FILE they are appended to FILE once per turn of the
loop, as the daemon writes maillog_file. --accept-handles N serves the listening socket
through N descriptors, as the daemon does (4). FASTPOST_SCHED's ``smtpd`` role applies to each
worker's loop thread as to the daemon's (util/threadprio.py). SIGTERM or SIGINT stops it.

This is not the production daemon: the master's multi skeleton runs smtpd there,
with the cleanup client as the sink.

Diagnostics: exit status 1 and a "fatal:" line for a bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

from fastpost.daemons.smtpd.service import SmtpdService
from fastpost.daemons.smtpd.testsink import FileTestSink
from fastpost.mail.config import Config, ConfigError
from fastpost.util import log, threadprio


def _parse(argv):
    p = argparse.ArgumentParser(prog="smtpd-standalone")
    p.add_argument("-c", "--config", default=None, help="configuration directory")
    p.add_argument("-l", "--listen", default="127.0.0.1:2525", help="host:port")
    p.add_argument("-d", "--spool", required=True, help="directory for the test sink")
    p.add_argument("-o", action="append", default=[], help="name=value override")
    p.add_argument("--fsync", action="store_true", help="make each message durable")
    p.add_argument("--queue", action="store_true",
                   help="store into the queue store in SPOOL_DIR (QueueSink, group commit) "
                        "instead of the file test sink")
    p.add_argument("--null", action="store_true",
                   help="accept every message and keep nothing (NullSink: smtpd's ceiling)")
    p.add_argument("--cleanup", default=None, metavar="SOCKET",
                   help="send messages to the cleanup service on this UNIX socket (CleanupSink)")
    p.add_argument("--maillog", default=None, metavar="FILE",
                   help="append the log lines to FILE, one write per loop turn (as the daemon)")
    p.add_argument("--accept-handles", type=int, default=1,
                   help="descriptors serving the listening socket (the daemon uses 4)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--asyncio", action="store_true", help="stock asyncio instead of uvloop")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    p.add_argument("--port-file", default=None,
                   help="write the listening port here once bound (for -l host:0)")
    return p.parse_args(argv)


def _worker(args, sock, config) -> None:
    if not args.asyncio:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.queue:
        from fastpost.daemons.smtpd.queuesink import QueueSink

        os.makedirs(args.spool, exist_ok=True)
        sink = QueueSink.open(args.spool, config, name=f"smtpd{os.getpid()}")
    elif args.cleanup:
        from fastpost.daemons.smtpd.cleanupsink import CleanupSink

        sink = CleanupSink.from_config(config)
        sink.client.path = args.cleanup
    elif args.null:
        from fastpost.daemons.smtpd.testsink import NullSink

        sink = NullSink()
    else:
        sink = FileTestSink(args.spool, fsync=args.fsync, random_ids=True)
    service = SmtpdService.from_config(config, sink=sink, loop=loop)
    # FASTPOST_SCHED's smtpd role, as the daemon's post_init applies it (measuring
    # only: util/threadprio.py); a QueueSink's threads keep their scheduling
    threadprio.apply("smtpd")

    if args.maillog:
        log.defer_file_writes(loop)

    async def run():
        servers = [await service.listen(sock=sock.dup() if args.accept_handles > 1 else sock)
                   for _ in range(max(1, args.accept_handles))]
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        await stop
        for server in servers:
            server.close()
        await service.close()
        if args.queue or args.cleanup:
            await sink.close()

    loop.run_until_complete(run())
    loop.close()


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    overrides = dict(o.split("=", 1) for o in args.o)
    log.init("smtpd", syslog_name="fastpost", use_syslog=False, maillog_file=args.maillog or "",
             stream=None if args.quiet or args.maillog else sys.stdout)
    try:
        config = Config(args.config, overrides)
        host, _, port = args.listen.rpartition(":")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), int(port)))
        sock.listen(4096)
        sock.setblocking(False)
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(str(sock.getsockname()[1]))
            os.rename(tmp, args.port_file)
    except (ConfigError, OSError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    children = []
    for _ in range(max(1, args.workers) - 1):
        pid = os.fork()
        if pid == 0:
            try:
                _worker(args, sock, config)
            finally:
                os._exit(0)
        children.append(pid)
    try:
        _worker(args, sock, config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
