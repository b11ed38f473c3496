"""pipe: deliver mail to an external command named in master.cf.

Postfix counterpart: src/pipe/pipe.c (pipe(8))

    maildrop  unix  -       n       n       -       -       pipe
      flags=DRhu user=vmail argv=/usr/bin/maildrop -d ${recipient}

The service's command attributes (master.cf, after the command name):

    flags=BDFORXhqu.>   B blank line at the end; D Delivered-To: (and loop check: a
                        message that already has it bounces, 5.4.6); F From_ line;
                        O X-Original-To:; R Return-Path:; X final delivery (no effect
                        on the log); h fold domains of $recipient/$original_recipient
                        and $domain/$nexthop to lower case; q quote local parts of
                        $sender/$recipient/$original_recipient (RFC 822); u fold local
                        parts of the recipient macros; . dot-stuff; > quote "From "
    user=name[:group]   run as that user (never root, never mail_owner) - required
    size=bytes          bounce larger messages (5.2.3 message too large)
    eol=string          line end written (default \\n; \\r\\n for SMTP-ish tools)
    null_sender=text    what $sender and From_/Return-Path say for <> (MAILER-DAEMON)
    directory=path      working directory (default: the queue directory)
    argv=command ...    the program and its arguments (last attribute); ``{ a b }``
                        is one argument

Macros in argv: ${sender} ${nexthop} ${size} ${queue_id} ${client_address}
${client_helo} ${client_hostname} ${client_port} ${client_protocol} ${sasl_method}
${sasl_sender} ${sasl_username}, and per recipient ${recipient} ${original_recipient}
${user} ${extension} ${mailbox} ${domain}: an argument that uses one of those is
repeated once per recipient of the request (an empty ${user} drops it). ``$$`` is a
literal ``$``. ``D`` and ``O`` need ``<service>_destination_recipient_limit = 1``
(otherwise the request is deferred, 4.3.5, with a warning).

The command runs without a shell, with the message on standard input, at most
``<service>_time_limit`` (default command_time_limit) seconds; its exit status is the
verdict through <sysexits.h> (fastpost.mail.pipe_command): 0 ``delivered via SERVICE
service`` (with its output in parentheses, if any), 75 defers, 67 bounces ``user
unknown``, ...; the same status applies to every recipient of the request.

Process model as local's: a multi-client process; each request runs the command in a
worker thread. Parameters: command_time_limit, <service>_time_limit,
recipient_delimiter, export_environment, mail_owner, fastpost_delivery_thread_limit.
Diagnostics: fatal at start for a bad attribute, an unknown flag or macro, a missing
user= or argv=, root or mail_owner privileges, or chroot= (not supported).
"""

from __future__ import annotations

import asyncio
import grp
import pwd
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastpost.mail import pipe_command
from fastpost.mail.address import external, split_extension
from fastpost.mail.agent import MessageSource, Outcome, log_outcome, summarize
from fastpost.mail.config import ConfigError, parse_time
from fastpost.mail.deliver import BOUNCED, DEFERRED, SENT, delivery_service
from fastpost.mail.mailcopy import (
    COPY_BLANK, COPY_DELIVERED, COPY_DOT, COPY_FROM, COPY_ORIG_RCPT, COPY_QUOTE,
    COPY_RETURN_PATH, copy_bytes, delivered_key,
)
from fastpost.mail.queue.store import QueueStore
from fastpost.server import multi_server_main
from fastpost.util import log

FOLD_USER = 1 << 16
FOLD_HOST = 1 << 17
QUOTE_LOCAL = 1 << 18
FINAL_DELIVERY = 1 << 19
_FLAGS = {"B": COPY_BLANK, "D": COPY_DELIVERED, "F": COPY_FROM, "O": COPY_ORIG_RCPT,
          "R": COPY_RETURN_PATH, ".": COPY_DOT, ">": COPY_QUOTE, "h": FOLD_HOST,
          "q": QUOTE_LOCAL, "u": FOLD_USER, "X": FINAL_DELIVERY}
_RCPT_MACROS = frozenset({"recipient", "original_recipient", "user", "extension", "mailbox",
                          "domain"})
_MACROS = _RCPT_MACROS | {"sender", "nexthop", "size", "queue_id", "client_address",
                          "client_helo", "client_hostname", "client_port", "client_protocol",
                          "sasl_method", "sasl_sender", "sasl_username"}
_MACRO = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+)|(\$))")

PARAMS = ("command_time_limit", "recipient_delimiter", "export_environment",
          "delay_logging_resolution_limit", "fastpost_delivery_thread_limit")


@dataclass
class PipeAttrs:
    """The service's command attributes (master.cf)."""

    argv: list[str]
    uid: int
    gid: int
    flags: int = 0
    size_limit: int = 0
    eol: bytes = b"\n"
    null_sender: str = "MAILER-DAEMON"
    directory: str | None = None
    macros: list = field(default_factory=list)  # per argv word: the macro names it uses


def unescape(text: str) -> bytes:
    """C-style escapes of eol=: \\a \\b \\f \\n \\r \\t \\v \\ddd \\\\."""
    out = bytearray()
    i = 0
    simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
            if nxt in "01234567":
                j = i + 1
                while j < len(text) and j < i + 4 and text[j] in "01234567":
                    j += 1
                out.append(int(text[i + 1:j], 8) & 0xFF)
                i = j
                continue
        out += c.encode("utf-8")
        i += 1
    return bytes(out)


def parse_attrs(args: list[str], service: str, owner_uid: int, owner_gid: int,
                owner_name: str) -> PipeAttrs:
    """Parse pipe's command attributes; ConfigError with Postfix's wording when bad."""
    where = f"master.cf: service {service}"
    user = group = None
    flags = size = 0
    eol, null_sender, directory = b"\n", "MAILER-DAEMON", None
    argv: list[str] | None = None
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        key = key.lower()
        if not eq:
            raise ConfigError(f"{where}: unknown attribute name: {arg}")
        if key == "flags":
            for c in value:
                if c not in _FLAGS:
                    raise ConfigError(f"{where}: unknown flag: {c}")
                flags |= _FLAGS[c]
        elif key == "user":
            user, _, group = value.partition(":")
        elif key == "directory":
            directory = value
        elif key == "chroot":
            raise ConfigError(f"{where}: chroot= is not supported by fastpost's pipe")
        elif key == "eol":
            eol = unescape(value)
        elif key == "null_sender":
            null_sender = value
        elif key == "size":
            if not value.isdigit():
                raise ConfigError(f"{where}: bad size= value: {value}")
            size = int(value)
        elif key == "argv":
            argv = [value] + list(args[i + 1:])
            break
        else:
            raise ConfigError(f"{where}: unknown attribute name: {arg}")
    if not user:
        raise ConfigError(f"{where}: missing user= command-line attribute")
    if not argv or not argv[0]:
        raise ConfigError(f"{where}: missing argv= command-line attribute")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"{where}: unknown username: {user}") from None
    uid, gid = pw.pw_uid, pw.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"{where}: unknown group: {group}") from None
    if uid == 0:
        raise ConfigError(f"{where}: user= command-line attribute specifies root privileges")
    if uid == owner_uid:
        raise ConfigError(f"{where}: user= command-line attribute specifies mail system owner "
                          f"{owner_name}")
    if gid == 0:
        raise ConfigError(f"{where}: user= command-line attribute specifies privileged group id 0")
    if gid == owner_gid:
        raise ConfigError(f"{where}: user= command-line attribute specifies mail system owner "
                          f"{owner_name} group id {gid}")
    macros = []
    for word in argv:
        used = []
        for m in _MACRO.finditer(word):
            name = m.group(1) or m.group(2) or m.group(3)
            if name is None:
                continue
            if name not in _MACROS:
                raise ConfigError(f'{where}: unknown macro name: "{name}"')
            used.append(name)
        macros.append(used)
    return PipeAttrs(argv, uid, gid, flags, size, eol, null_sender, directory, macros)


def morph(address: str, flags: int) -> str:
    """Quote and fold a recipient address as the q, h and u flags say."""
    if flags & QUOTE_LOCAL:
        address = external(address)
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower() if flags & FOLD_USER else address
    if flags & FOLD_USER:
        local = local.lower()
    if flags & FOLD_HOST:
        domain = domain.lower()
    return f"{local}@{domain}"


def substitute(word: str, values: dict) -> str:
    def one(m):
        if m.group(4):
            return "$"
        return values.get(m.group(1) or m.group(2) or m.group(3), "")
    return _MACRO.sub(one, word)


def expand_argv(attrs: PipeAttrs, request, delimiters: str) -> list[str]:
    """The command's argv for a request (recipient macros repeat their argument)."""
    flags = attrs.flags
    sender = request.sender or attrs.null_sender
    if sender and flags & QUOTE_LOCAL:
        sender = external(sender)
    client = request.client or {}
    common = {
        "sender": sender,
        "nexthop": request.nexthop.lower() if flags & FOLD_HOST else request.nexthop,
        "size": str(request.size), "queue_id": request.queue_id,
        "client_address": str(client.get("addr", "")), "client_helo": str(client.get("helo", "")),
        "client_hostname": str(client.get("name", "")), "client_port": str(client.get("port", "")),
        "client_protocol": str(client.get("proto", "")),
        "sasl_method": str(client.get("sasl_method", "")),
        "sasl_sender": str(client.get("sasl_sender", "")),
        "sasl_username": str(client.get("sasl_username", "")),
    }
    out: list[str] = []
    fold = flags & (FOLD_USER | FOLD_HOST)
    for word, used in zip(attrs.argv, attrs.macros):
        if not _RCPT_MACROS.intersection(used):
            out.append(substitute(word, common))
            continue
        for rcpt in request.recipients:
            values = dict(common)
            values["recipient"] = morph(rcpt.address, flags)
            values["original_recipient"] = morph(rcpt.orig or rcpt.address, flags)
            plain = morph(rcpt.address, fold)
            local, at, domain = plain.rpartition("@")
            if not at:
                local, domain = plain, ""
            base, ext = split_extension(local, delimiters)
            if "user" in used and not base:
                continue
            values.update(user=base, extension=ext, mailbox=local, domain=domain)
            out.append(substitute(word, values))
    return out


class PipeDelivery:
    def __init__(self, service: str, attrs: PipeAttrs, cfg, source, pool):
        self.service = service
        self.attrs = attrs
        self.source = source
        self.pool = pool
        raw = cfg.raw(f"{service}_time_limit")
        limit = parse_time(cfg.expand(raw), "s") if raw else None
        self.time_limit = limit if limit is not None else cfg.get_time("command_time_limit")
        self.delimiters = cfg.get("recipient_delimiter")
        self.export = cfg.get_list("export_environment")
        self.resolution = cfg.get_int("delay_logging_resolution_limit")

    def _all(self, request, started, dsn: str, text: str):
        status = SENT if dsn[0] == "2" else DEFERRED if dsn[0] == "4" else BOUNCED
        results = []
        for rcpt in request.recipients:
            out = Outcome(rcpt.address, rcpt.orig, status, dsn, text, relay=self.service)
            log_outcome(request, rcpt.offset, out, started=started, resolution=self.resolution)
            results.append(summarize(rcpt.offset, [out], self.service))
        return results

    async def deliver(self, request):
        started = time.time()
        attrs = self.attrs
        many = len(request.recipients) > 1
        for bit, name in ((COPY_DELIVERED, "D"), (COPY_ORIG_RCPT, "O")):
            if attrs.flags & bit and many:
                log.warn("pipe flag `%s' requires %s_destination_recipient_limit = 1",
                         name, self.service)
                return self._all(request, started, "4.3.5", "mail system configuration error")
        if attrs.size_limit and request.size > attrs.size_limit:
            return self._all(request, started, "5.2.3", "message too large")
        try:
            msg = self.source.load(request.queue_id)
        except Exception as exc:  # QueueError, CorruptMessage
            log.warn("%s: cannot read the message: %s", request.queue_id, log.printable(str(exc)))
            return self._all(request, started, "4.3.0", "error reading message: queue file unreadable")
        first = request.recipients[0]
        if attrs.flags & COPY_DELIVERED and delivered_key(first.address) in msg.delivered:
            return self._all(request, started, "5.4.6", f"mail forwarding loop for {first.address}")
        sender = request.sender or attrs.null_sender
        argv = expand_argv(attrs, request, self.delimiters)

        def run():  # in a worker thread: the copy, then the command
            data = copy_bytes(msg.text, sender=sender, orig_rcpt=first.orig or first.address,
                              delivered=first.address, flags=attrs.flags & 0xFFFF, eol=attrs.eol)
            return pipe_command.run(data=data, argv=argv, uid=attrs.uid, gid=attrs.gid, env={},
                                    export=self.export, cwd=attrs.directory,
                                    time_limit=self.time_limit, tag="pipe")

        res = await asyncio.get_running_loop().run_in_executor(self.pool, run)
        for w in res.warnings:
            log.warn("%s", w)
        if res.status == pipe_command.OK:
            output = res.output.strip()
            text = f"delivered via {self.service} service" + (f" ({output})" if output else "")
            return self._all(request, started, "2.0.0", text)
        return self._all(request, started, res.dsn, res.text)


class _State:
    engine: PipeDelivery | None = None
    store = None
    pool: ThreadPoolExecutor | None = None
    attrs: PipeAttrs | None = None


_state = _State()


def pre_init(ctx) -> None:
    owner = str(ctx.p["mail_owner"])
    try:
        pw = pwd.getpwnam(owner)
        owner_uid, owner_gid = pw.pw_uid, pw.pw_gid
    except KeyError:
        owner_uid = owner_gid = -1
    _state.attrs = parse_attrs(list(ctx.argv), ctx.service_name or "pipe", owner_uid,
                               owner_gid, owner)


def post_init(ctx) -> None:
    _state.store = QueueStore.open(str(ctx.p["queue_directory"]), ctx.cfg, recover=False)
    _state.pool = ThreadPoolExecutor(max_workers=int(ctx.p["fastpost_delivery_thread_limit"]),
                                     thread_name_prefix="pipe-deliver")
    _state.engine = PipeDelivery(ctx.service_name or "pipe", _state.attrs, ctx.cfg,
                                 MessageSource(_state.store), _state.pool)


def on_exit(ctx) -> None:
    if _state.pool is not None:
        _state.pool.shutdown(wait=True)
    if _state.store is not None:
        _state.store.close()


async def handle(request, ctx):
    return await _state.engine.deliver(request)


def main(argv: list[str]) -> None:
    multi_server_main(argv, delivery_service(handle), name="pipe", params=PARAMS,
                      pre_init=pre_init, post_init=post_init, on_exit=on_exit)
