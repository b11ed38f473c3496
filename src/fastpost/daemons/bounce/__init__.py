"""bounce: the bounce, defer and trace services — status logs and notices to senders.

Postfix counterpart: src/bounce/bounce.c, bounce_notify_service.c,
bounce_warn_service.c, bounce_trace_service.c, bounce_append_service.c,
bounce_notify_util.c.

master.cf (one program, three services; the requests, not the names, decide):

    bounce  unix  -  -  n  -  0  bounce
    defer   unix  -  -  n  -  0  bounce
    trace   unix  -  -  n  -  0  bounce

Protocol ``delivery_status_protocol`` (fastpost.mail.bounce_clnt is the client):

    {request: "append", queue_id, log: bounce|defer|trace, entry: bytes}
        add one entry (fastpost.mail.bounce_log) to a message's log in the queue index
    {request: "flush", queue_id, logs: [...], expired: 0|1}
        a non-delivery notice for the recipients in those logs (the defer log when the
        message expired) whose NOTIFY allows it (not NEVER; FAILURE or not given)
    {request: "warn", queue_id}
        a delay warning for the defer log's recipients with NOTIFY DELAY or not given
    {request: "trace", queue_id}
        a delivery status notice for the trace log (recipients with NOTIFY=SUCCESS)
    -> {status: 0, notices: [new queue IDs]} or {status: -1, error: text}

Notices are new messages (notices.py builds them): envelope sender ``<>``, recipient
the original sender. They are written straight into the queue store through this
process's own Committer (the store takes several), so notices do not depend on the
cleanup daemon, and qmgr is triggered (``I``) when they are indexed. Rules:

  * never a notice to the null sender: a failure of a message from ``<>`` is a double
    bounce, sent to ``2bounce_notice_recipient`` only when ``notify_classes`` has
    ``2bounce`` (sender ``double_bounce_sender``); mail from ``double_bounce_sender``
    itself is never bounced (it ends bounce loops);
  * ``notify_classes`` ``bounce`` / ``delay`` add a postmaster copy (headers only) to
    ``bounce_notice_recipient`` / ``delay_notice_recipient`` of failure / delay notices.

Log lines: ``ID: sender non-delivery notification: NEWID``, ``ID: sender delay
notification: NEWID``, ``ID: sender delivery status notification: NEWID``, ``ID:
postmaster non-delivery notification: NEWID``, ``ID: postmaster delay notification:
NEWID``; ``ID: non-delivery notification to the null sender not sent`` for a double
bounce that is not reported.

Parameters: myhostname, notify_classes, bounce_notice_recipient,
delay_notice_recipient, 2bounce_notice_recipient, double_bounce_sender,
bounce_size_limit, maximal_queue_lifetime, bounce_queue_lifetime, queue_service_name,
bounce_template_file (read once at start, with root privileges; an unreadable or
malformed file logs a warning and the built-in templates are used), the queue store's.
Diagnostics: ``{status: -1}`` with the reason (message not in the queue, queue store
error) and a warning; the caller keeps the message and asks again later.
"""

from __future__ import annotations

import os
import time

from fastpost.daemons.bounce import notices as N
from fastpost.mail import bounce_template as BT
from fastpost.mail import deliver as D
from fastpost.mail import ipc
from fastpost.mail.bounce_log import LogEntry, parse_log
from fastpost.mail.envelope import read_envelope
from fastpost.mail.queue import QueueSettings, QueueStore
from fastpost.mail.queue import builder as _builder  # noqa: F401 - store.committer() imports
from fastpost.mail.queue import committer as _committer  # noqa: F401 - these lazily: load
#                                              them in the master, for a chrooted bounce
from fastpost.mail.queue.message import content_text
from fastpost.server import multi_server_main
from fastpost.util import log

PROTOCOL = "delivery_status_protocol"
PARAMS = ("notify_classes", "bounce_notice_recipient", "delay_notice_recipient",
          "2bounce_notice_recipient", "double_bounce_sender", "bounce_size_limit",
          "maximal_queue_lifetime", "bounce_queue_lifetime", "queue_service_name", "myhostname")


class _State:
    store: QueueStore | None = None
    committer = None
    ctx = None
    template_file = ""
    templates: dict = {}
    texts: dict = {}


state = _State()


def pre_init(ctx) -> None:
    # with root privileges, as Postfix's bounce: the template file may be readable by
    # root only, and it may lie outside a chroot jail
    _load_templates(ctx.cfg)


async def post_init(ctx) -> None:
    settings = QueueSettings.from_config(ctx.cfg, queue_directory=".")
    state.store = QueueStore.open(settings=settings)
    state.ctx = ctx
    state.committer = state.store.committer(f"bounce-{os.getpid()}", on_indexed=_indexed)


def _load_templates(cfg) -> None:
    """Read bounce_template_file once per process (a reload starts new processes)."""
    state.template_file = cfg.get("bounce_template_file").strip() or "built-in templates"
    state.texts = {}
    try:
        state.templates = dict(BT.load(cfg, lambda w: log.warn("%s", w)).templates)
    except (OSError, BT.TemplateError) as exc:
        log.warn("cannot use bounce_template_file: %s -- using the built-in templates",
                 exc if isinstance(exc, BT.TemplateError) else
                 f"{state.template_file}: {exc.strerror}")
        state.templates = dict(BT.BUILTIN)


def _indexed(ids) -> None:
    qmgr = str(state.ctx.p["queue_service_name"])
    task = state.ctx.loop.create_task(ipc.async_mail_trigger(".", qmgr, b"I"))
    task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.warn(
        "cannot wake up %s: %s", qmgr, t.exception()))


async def on_exit(ctx) -> None:
    if state.committer is not None:
        await state.committer.close()
    if state.store is not None:
        state.store.close()


def _qualify(address: str, myhostname: str) -> str:
    return address if "@" in address or not address else f"{address}@{myhostname}"


def _words(kind: str) -> tuple[BT.Template, str]:
    """The template for a kind of notice and its expanded text.

    A text that cannot be expanded (an undefined $name) is logged and replaced by the
    built-in one: the notice still goes out (Postfix's bounce daemon would exit instead
    and the notice would wait for the next queue run).
    """
    name = N.TEMPLATE_OF[kind]
    tmpl = state.templates[name]
    text = state.texts.get(name)
    if text is None:
        try:
            text = BT.expand(tmpl, state.ctx.cfg)
        except BT.TemplateError as exc:
            log.warn("%s: %s -- using the built-in template", state.template_file, exc)
            tmpl = BT.BUILTIN[name]
            text = BT.expand(tmpl, state.ctx.cfg)
        state.templates[name] = tmpl
        state.texts[name] = text
    return tmpl, text


async def _send(kind: str, entries: list[LogEntry], orig: N.Original, to: str, sender: str, *,
                expired: bool = False, postmaster: bool = False) -> str:
    """Write one notice into the queue; return its queue ID."""
    p = state.ctx.p
    myhostname = str(p["myhostname"])
    lifetime = int(p["bounce_queue_lifetime"] if orig.sender == "" else p["maximal_queue_lifetime"])
    b = state.committer.builder()
    now = time.time()
    tmpl, intro = _words(kind)
    text = N.compose(kind, entries, orig, notice_id=b.queue_id, to=f"<{to}>",
                     myhostname=myhostname, bounce_size_limit=int(p["bounce_size_limit"]),
                     lifetime=lifetime, expired=expired, now=now, template=tmpl, intro=intro,
                     postmaster=postmaster)
    b.time(now)
    b.attr("rewrite_context", "local")
    b.set_sender(sender)
    b.add_recipient(to)
    await b.write(text)
    return await state.committer.commit(b)


def _read(queue_id: str):
    info = state.store.get(queue_id)
    if info is None:
        raise LookupError(f"{queue_id}: message not in the queue")
    data = state.store.read(queue_id, info)
    env = read_envelope(data)
    text = content_text(data)
    return env, N.Original(queue_id, env.sender, env.arrival, env.envid, env.ret, env.size, text)


def _logs(queue_id: str, kinds) -> list[LogEntry]:
    out: list[LogEntry] = []
    for kind in kinds:
        out.extend(parse_log(state.store.logs(queue_id, kind)))
    return out


def _wants(entry: LogEntry, bit: int) -> bool:
    n = entry.notify_flags
    if n & D.NOTIFY_NEVER:
        return False
    return n == 0 or bool(n & bit)


async def _failure(queue_id: str, kinds, expired: bool) -> list[str]:
    p = state.ctx.p
    myhostname = str(p["myhostname"])
    classes = set(p["notify_classes"])
    double_bounce = _qualify(str(p["double_bounce_sender"]), myhostname)
    env, orig = _read(queue_id)
    entries = _logs(queue_id, kinds)
    if expired:
        for e in entries:
            e.action = "failed"
    out = []
    if not entries:
        return out
    sender = env.sender
    if sender == "" or sender.lower() == double_bounce.lower() or \
            sender.split("@")[0].lower() == str(p["double_bounce_sender"]).lower():
        if sender != "" or "2bounce" not in classes:
            log.info("%s: non-delivery notification to the null sender not sent", queue_id)
            return out
        to = _qualify(str(p["2bounce_notice_recipient"]), myhostname)
        nid = await _send(N.POSTMASTER, entries, orig, to, double_bounce, expired=expired)
        log.info("%s: postmaster non-delivery notification: %s", queue_id, nid)
        return [nid]
    wanted = [e for e in entries if _wants(e, D.NOTIFY_FAILURE)]
    if wanted:
        nid = await _send(N.FAILURE, wanted, orig, sender, "", expired=expired)
        log.info("%s: sender non-delivery notification: %s", queue_id, nid)
        out.append(nid)
    if "bounce" in classes:
        to = _qualify(str(p["bounce_notice_recipient"]), myhostname)
        nid = await _send(N.POSTMASTER, entries, orig, to, double_bounce, expired=expired)
        log.info("%s: postmaster non-delivery notification: %s", queue_id, nid)
        out.append(nid)
    return out


async def _warn(queue_id: str) -> list[str]:
    p = state.ctx.p
    myhostname = str(p["myhostname"])
    env, orig = _read(queue_id)
    if env.sender == "":
        return []  # nobody to warn
    out = []
    wanted = [e for e in _logs(queue_id, ["defer"]) if _wants(e, D.NOTIFY_DELAY)]
    if wanted:
        nid = await _send(N.DELAY, wanted, orig, env.sender, "")
        log.info("%s: sender delay notification: %s", queue_id, nid)
        out.append(nid)
        if "delay" in set(p["notify_classes"]):
            to = _qualify(str(p["delay_notice_recipient"]), myhostname)
            double_bounce = _qualify(str(p["double_bounce_sender"]), myhostname)
            nid = await _send(N.DELAY, wanted, orig, to, double_bounce, postmaster=True)
            log.info("%s: postmaster delay notification: %s", queue_id, nid)
            out.append(nid)
    return out


async def _trace(queue_id: str) -> list[str]:
    env, orig = _read(queue_id)
    if env.sender == "":
        return []
    entries = [e for e in _logs(queue_id, ["trace"]) if e.notify_flags & D.NOTIFY_SUCCESS]
    if not entries:
        return []
    kind = N.VERIFY if env.attrs.get("verify") else N.SUCCESS
    nid = await _send(kind, entries, orig, env.sender, "")
    log.info("%s: sender delivery status notification: %s", queue_id, nid)
    return [nid]


async def _handle(request: dict) -> dict:
    kind = request.get("request")
    queue_id = request.get("queue_id")
    if not isinstance(queue_id, str) or not queue_id:
        return {"status": -1, "error": "no queue_id"}
    try:
        if kind == "flush":
            logs = [k for k in request.get("logs") or [] if k in ("bounce", "defer")]
            return {"status": 0, "notices": await _failure(queue_id, logs, bool(request.get("expired")))}
        if kind == "warn":
            return {"status": 0, "notices": await _warn(queue_id)}
        if kind == "trace":
            return {"status": 0, "notices": await _trace(queue_id)}
        if kind == "append":
            which = request.get("log")
            entry = request.get("entry")
            if which not in ("bounce", "defer", "trace") or not isinstance(entry, bytes):
                return {"status": -1, "error": "bad append request"}
            with state.store.edit() as ed:
                if ed.get(queue_id) is None:
                    return {"status": -1, "error": f"{queue_id}: message not in the queue"}
                ed.append_log(queue_id, which, entry)
            return {"status": 0, "notices": []}
    except Exception as exc:  # noqa: BLE001 - answer, keep serving
        log.warn("%s: %s request failed: %s", queue_id, kind, log.printable(str(exc)))
        return {"status": -1, "error": str(exc)}
    return {"status": -1, "error": f"unknown request {kind!r}"}


def handle(request: dict, conn):
    return _handle(request)


def main(argv):
    multi_server_main(argv, ipc.attr_service(PROTOCOL, handle), name="bounce", params=PARAMS,
                      pre_init=pre_init, post_init=post_init, on_exit=on_exit)
