"""local: final delivery to local users (aliases, .forward, mailboxes, commands, files).

Postfix counterpart: src/local/local.c (local(8))

    local     unix  -       n       n       -       -       local

The queue manager sends delivery requests (fastpost.mail.deliver) for recipients whose
domain is local; this agent reads the message from the queue store, expands aliases,
``:include:`` lists and ``.forward`` files, and delivers into mailboxes (mbox with
locks, or Maildir), files and commands, as the recipient (see
fastpost.daemons.local.engine for the rules, docs/local.md for the design).

Process model: one multi-client process (the multi skeleton). Each request is a
coroutine on the event loop; the expansion (table lookups, queue reads, forwarding
commits) stays on the loop, and each blocking operation (a mailbox append with its
locks, a Maildir file, a command with its time limit) runs in a worker thread whose
file-system identity is switched to the user for that operation only
(fastpost.util.privs). So several deliveries proceed at once in one process, up to
fastpost_delivery_thread_limit blocking operations, and a slow command or a mailbox
lock held by a mail reader does not hold up other recipients. The process runs as root
(unpriv ``n``): it needs to become each recipient. As a non-root user (the embedded
``./dev run`` instance) every delivery is done as that user.

Forwarded mail (aliases to other domains, owner- lists, :include: and .forward
expansions) is committed to the queue store by this process's own Committer and qmgr
is woken (``W`` to public/$queue_service_name), until a cleanup daemon takes over
that role; the files it writes belong to the owner of the queue's segment directory.

Parameters: see fastpost.daemons.local.settings.PARAMS (alias_maps, forward_path,
allow_mail_to_commands, allow_mail_to_files, home_mailbox, mail_spool_directory,
mailbox_command[_maps], mailbox_transport[_maps], fallback_transport[_maps],
luser_relay, mailbox_size_limit, mailbox_delivery_lock, recipient_delimiter,
prepend_delivered_header, default_privs, command_time_limit, ...) and
fastpost_delivery_thread_limit, queue_service_name.
Diagnostics: fatal at start for bad configuration (file and line); per delivery,
Postfix's status lines and warnings; an internal error defers the request (4.3.0).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from fastpost.daemons.local.engine import LocalDelivery
from fastpost.daemons.local.settings import PARAMS, LocalSettings
from fastpost.mail import ipc
from fastpost.mail.agent import MessageSource
from fastpost.mail.deliver import delivery_service
from fastpost.mail.queue.store import QueueStore
from fastpost.server import multi_server_main
from fastpost.util import log, privs


class _State:
    settings: LocalSettings | None = None
    engine: LocalDelivery | None = None
    store = None
    committer = None
    pool: ThreadPoolExecutor | None = None


_state = _State()


def pre_init(ctx) -> None:
    _state.settings = LocalSettings.from_config(ctx.cfg, ctx.service_name or "local")
    privs.drop_supplementary_groups()


def store_owner(queue_directory: str) -> tuple[int, int]:
    """The ids new queue files must have: those of the segment directory's owner."""
    for path in (os.path.join(queue_directory, "segments"), queue_directory):
        try:
            st = os.stat(path)
            return st.st_uid, st.st_gid
        except OSError:
            continue
    return os.geteuid(), os.getegid()


def make_committer_factory(ctx, store, name: str):
    """Return ``async () -> Committer``, created on first use (most processes never forward)."""
    qdir = str(ctx.p["queue_directory"])
    service = ctx.cfg.get("queue_service_name") or "qmgr"

    def wake(_ids) -> None:
        async def send():
            try:
                await ipc.async_mail_trigger(qdir, service, b"W", timeout=5)
            except ipc.IPCError as exc:
                log.debug("wake %s: %s", service, exc)
        ctx.loop.create_task(send())

    lock = asyncio.Lock()

    async def factory():
        async with lock:  # two first forwards at once must not make two committers
            if _state.committer is None:
                committer = store.committer(name, on_indexed=wake)
                await committer.run_io(privs.set_thread_identity, *store_owner(qdir))
                _state.committer = committer
        return _state.committer

    return factory


def post_init(ctx) -> None:
    qdir = str(ctx.p["queue_directory"])
    _state.store = QueueStore.open(qdir, ctx.cfg, recover=False)
    _state.pool = ThreadPoolExecutor(max_workers=int(ctx.p["fastpost_delivery_thread_limit"]),
                                     thread_name_prefix="local-deliver")
    _state.engine = LocalDelivery(
        _state.settings, MessageSource(_state.store),
        make_committer_factory(ctx, _state.store, f"{ctx.service_name or 'local'}-{os.getpid()}"),
        _state.pool, qdir)


async def on_exit(ctx) -> None:
    if _state.committer is not None:
        await _state.committer.close()
    if _state.engine is not None:
        _state.engine.passer.close()
    if _state.pool is not None:
        _state.pool.shutdown(wait=True)
    if _state.store is not None:
        _state.store.close()


async def handle(request, ctx):
    return await _state.engine.deliver(request)


def main(argv: list[str]) -> None:
    multi_server_main(argv, delivery_service(handle), name="local",
                      params=PARAMS + ("fastpost_delivery_thread_limit", "queue_service_name"),
                      pre_init=pre_init, post_init=post_init, on_exit=on_exit)
