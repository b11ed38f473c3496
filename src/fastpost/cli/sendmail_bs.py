"""sendmail -bs: an SMTP conversation on standard input and output.

Postfix counterpart: sendmail -bs, which runs smtpd(8) in stand-alone mode (-S) with
postdrop(1) as its queue.

The same session layer and SMTP core as the smtpd daemon (fastpost.daemons.smtpd:
SmtpdService, SmtpdProtocol, DefaultPolicy; replies, limits and logs as smtpd's) run
on one end of a socketpair; two threads copy standard input to it and its output to
standard output. The peer is a UNIX-domain socket, which the session treats as
``localhost[127.0.0.1]``, as Postfix's stand-alone smtpd names a local client.
Messages go to ``MaildropSink``: each accepted message becomes a maildrop file
(fastpost.mail.maildrop, through the set-gid helper when the user may not write
maildrop), written and synced before ``250 2.0.0 Ok: queued as ID``; pickup then takes
it and logs ``uid=N from=<sender>``. ID is the maildrop file's name (the helper names
its own file: then ID only labels the message in smtpd's log lines).

Log lines (to the instance's maillog / syslog) carry the program name smtpd, as
Postfix's do for sendmail -bs. Where they go depends on the user, as with Postfix 3.7
(checked on a private instance with maillog_file): root and mail_owner write
maillog_file; a member of setgid_group reaches the postlog service in public/; a user
outside setgid_group can do neither, and the lines are left out silently (Postfix's
stand-alone smtpd drops them the same way; standard error stays quiet). With syslog
every user's lines reach /dev/log.

Parameters: everything smtpd honours, queue_directory, command_directory,
pickup_service_name. Exit status: 0 after the conversation (whatever its replies),
78 for a configuration error.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading

from fastpost.daemons.smtpd.sink import MessageSink, SinkError, Transaction
from fastpost.mail import cleanup_proto as P
from fastpost.mail import maildrop
from fastpost.smtp.replies import Reply
from fastpost.util import log


class _DropTxn(Transaction):
    def __init__(self, sink, envelope):
        self.sink = sink
        self.envelope = envelope
        self.queue_id = maildrop.new_name()
        self.recipients = []
        self.chunks: list[bytes] = []

    def add_recipient(self, recipient) -> None:
        self.recipients.append(recipient)

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def finish(self):
        from fastpost.cli.sendmail import drop_stream

        env = self.envelope
        content = b"".join(self.chunks).replace(b"\r\n", b"\n")
        msg = maildrop.DropMessage(
            sender=env.sender,
            recipients=[(r.address, r.orcpt or "", P.notify_bits(r.notify) if r.notify else 0)
                        for r in self.recipients],
            content=content, ret=P.RET.get(env.ret.upper()) if env.ret else None,
            envid=env.envid)
        status = drop_stream(self.sink.cfg, "sendmail", maildrop.encode(msg),
                             name=self.queue_id)
        if status != 0:
            raise SinkError(Reply(451, "Error: queue file write error", "4.3.0"),
                            f"cannot store the message (status {status})")
        return self.queue_id

    def abort(self) -> None:
        self.chunks = []


class MaildropSink(MessageSink):
    """smtpd's sink for sendmail -bs: maildrop files (module docstring)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def begin(self, client, envelope):
        return _DropTxn(self, envelope)


def _copy_in(sock: socket.socket) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _copy_out(sock: socket.socket, done: threading.Event) -> None:
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:
        pass
    done.set()


def _init_logging(cfg) -> None:
    """smtpd's log lines: maillog_file, else the postlog service, else (a user outside
    setgid_group, who can reach neither) nowhere, without a word on standard error."""
    from fastpost.mail.maillog import init_logging, postlog_endpoint

    maillog = cfg.get("maillog_file")
    if maillog and maillog not in ("/dev/stdout", "/dev/stderr"):
        try:
            os.close(os.open(maillog, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644))
        except OSError:
            if not os.access(postlog_endpoint(cfg), os.W_OK):
                log.init("smtpd", syslog_name=cfg.get("syslog_name"), use_syslog=False)
                return
    init_logging("smtpd", cfg)


def run(cfg) -> int:
    """The conversation; returns the exit status."""
    from fastpost.daemons.smtpd.service import SmtpdService

    _init_logging(cfg)
    ours, theirs = socket.socketpair()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    service = SmtpdService.from_config(cfg, sink=MaildropSink(cfg), loop=loop,
                                       service_name="sendmail")
    ended = loop.create_future()
    service.on_session_end = lambda s: ended.done() or ended.set_result(None)
    done = threading.Event()
    reader = threading.Thread(target=_copy_in, args=(theirs,), daemon=True)
    writer = threading.Thread(target=_copy_out, args=(theirs, done), daemon=True)

    async def converse():
        ours.setblocking(False)
        await loop.connect_accepted_socket(service.protocol, ours)
        reader.start()
        writer.start()
        await ended
        await service.close()

    try:
        loop.run_until_complete(converse())
    finally:
        loop.close()
    done.wait(30)
    theirs.close()
    sys.stdout.flush()
    return 0


__all__ = ["MaildropSink", "run"]
