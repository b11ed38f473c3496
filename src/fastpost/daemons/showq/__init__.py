"""showq: the queue listing service for users who cannot read the queue themselves.

Postfix counterpart: src/showq/showq.c (what to list; the client formats it, as
postqueue's showq_compat.c/showq_json.c do since Postfix 3.1).

master.cf: ``showq  unix  n  -  n  -  -  showq`` — private column ``n``: the socket is
``$queue_directory/public/showq``. public/ is mode 0710, group setgid_group, so the
clients are members of that group (Postfix's postqueue is set-gid to it; fastpost's
commands are Python, so the account must be in the group — see docs/queue.md).
The queue itself (segments/, index/) stays mode 0700 to mail_owner; this daemon runs
as mail_owner (chrooted or not) and opens the store read-only.

Protocol ``showq_protocol`` (attribute frames, fastpost.mail.ipc):

    {request: "list", count: N}  -> {status: 0, messages: [part, ...], more: 0|1}
        the next at most N (1..1000, default 100) parts of a walk that the
        connection keeps, and at most MAX_REPLY_RECIPIENTS recipients beyond the
        first part's; ``more: 0`` ends it (the next "list" starts a new walk);
        part = fastpost.mail.queue.showq.Entry.to_parts(): a message's fields and up
        to 1,000 recipients, then (``more_recipients: 1``) continuation parts
        ``{queue_id, continued: 1, recipients, more_recipients}``
    anything else                -> {status: -1, error: text}

A walk reads the index in batches of 1,000 (never a message body) and a message's
recipients a chunk at a time, so listing a queue of any size, or a message with any
number of recipients, costs bounded memory on both sides; the client prints each batch as it
arrives (``fastpost queue -p`` / ``-j`` / ``mailq``: fastpost.cli.postqueue).

Parameters: queue_directory (the store), plus the skeleton's.
Diagnostics: fatal when the queue store cannot be opened (it is opened at the first
request that finds an index: before that the queue is empty); ``warning: showq_protocol:
bad request: ...`` for a malformed request (answered with status -1).
"""

from __future__ import annotations

import os

from fastpost.mail.ipc import attr_service
from fastpost.mail.queue import QueueSettings, QueueStore
from fastpost.mail.queue.showq import entries
from fastpost.server import multi_server_main
from fastpost.util import log

PROTOCOL = "showq_protocol"
DEFAULT_BATCH = 100
MAX_BATCH = 1000
#: A reply stops adding parts once it carries this many recipients.
MAX_REPLY_RECIPIENTS = 5000


class _State:
    store: QueueStore | None = None
    settings: QueueSettings | None = None
    queue_directory = ""


_state = _State()


def post_init(ctx) -> None:
    _state.settings = QueueSettings.from_config(ctx.cfg, queue_directory=".")
    _state.queue_directory = ctx.cfg.get("queue_directory")


def _store() -> QueueStore | None:
    """The store, opened read-only on first use; None while no queue index exists yet
    (a new instance before its first message: the listing is empty)."""
    if _state.store is None:
        if not os.path.exists(os.path.join("index", "data.mdb")):
            return None
        try:
            _state.store = QueueStore.open(settings=_state.settings, readonly=True)
        except Exception as exc:  # noqa: BLE001 - reported as the reason we cannot run
            log.fatal("open the queue store in %s: %s", _state.queue_directory, exc)
    return _state.store


def on_exit(ctx) -> None:
    if _state.store is not None:
        _state.store.close()


def _bad(text: str) -> dict:
    log.warn("%s: bad request: %s", PROTOCOL, log.printable(text))
    return {"status": -1, "error": text}


def handle(request: dict, conn) -> dict:
    if request.get("request") != "list":
        return _bad(f"unknown request {request.get('request')!r}")
    count = request.get("count", DEFAULT_BATCH)
    if not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
        return _bad(f"count must be 1..{MAX_BATCH}")
    walk = conn.state.get("walk")
    if walk is None:
        store = _store()
        if store is None:
            return {"status": 0, "messages": [], "more": 0}
        walk = conn.state["walk"] = (part for e in entries(store) for part in e.to_parts())
    out = []
    more = 1
    carried = 0
    for part in walk:
        out.append(part)
        carried += len(part["recipients"])
        if len(out) >= count or carried >= MAX_REPLY_RECIPIENTS:
            break
    else:
        more = 0
        del conn.state["walk"]  # finished: the next request starts a new walk
    return {"status": 0, "messages": out, "more": more}


def main(argv):
    multi_server_main(argv, attr_service(PROTOCOL, handle), name="showq",
                      post_init=post_init, on_exit=on_exit)
