"""cleanup: canonicalize and enqueue messages (group-committed into the queue store).

Postfix counterpart: src/cleanup/ (cleanup(8)).

master.cf (public, as in Postfix, so that pickup and the other producers reach it):

    cleanup   unix  n  -  n  -  0  cleanup

Each worker is a multi server (one uvloop loop, many client connections, many
messages per connection; fastpost.mail.cleanup_proto) and one committer of the queue
store: every message it takes shares its group commit. What happens to a message is
in state.py; the pieces:

    settings.py   every parameter, read once; the lookup tables, opened before chroot
    service.py    CleanupService (store, committer, qmgr wake-ups) and the protocol
    state.py      one message: envelope, headers, body, extracted records, commit
    addrmap.py    trivial-rewrite, canonical, masquerading, virtual aliases, BCC maps
    hdraddr.py    addresses in headers: parse, rewrite, fold as Postfix does
    checks.py     header/body check actions
    returned.py   a refused local submission's held stand-in marked bounced (RETURNED)

pre_init (root, before chroot) reads main.cf and opens every table; post_init (as
mail_owner, in queue_directory, maybe chrooted) opens the queue store with a relative
path, makes this process a committer and connects the trivial-rewrite client;
on_exit drains the committer (every acknowledged message is on disk before that
anyway) and closes the store. When the master retires the process (reload) its
connections close as soon as their messages are answered, so clients move to a
worker with the new configuration at once.

Parameters: see settings.py, plus rewrite_service_name, ipc_timeout, ipc_idle,
ipc_ttl, enable_long_queue_ids, delay_logging_resolution_limit (returned.py) and the
queue store's (fastpost.mail.queue).
Diagnostics: fatal (with file and line) for a bad setting or an unusable queue store.
"""

from __future__ import annotations

from fastpost.util import log, threadprio

_state: dict = {}


#: seconds (sys.setswitchinterval) a committer thread waits at most for the GIL
SWITCH_INTERVAL = 0.0005


def _pre_init(ctx) -> None:
    from fastpost.daemons.cleanup import service  # noqa: F401 - import before chroot
    from fastpost.daemons.cleanup.settings import CleanupSettings
    from fastpost.mail import rewrite_clnt  # noqa: F401
    from fastpost.mail.config import ConfigError
    from fastpost.mail.queue import store  # noqa: F401

    try:
        settings = CleanupSettings.from_config(ctx.cfg)
    except (ConfigError, ValueError) as exc:
        log.fatal("%s", exc)
    for text in settings.warnings:
        log.warn("%s", text)
    _state["settings"] = settings


def _post_init(ctx) -> None:
    from fastpost import _accel
    from fastpost.daemons.cleanup.service import CleanupService
    from fastpost.mail.queue import QueueError, QueueSettings, QueueStore
    from fastpost.mail.rewrite_clnt import RewriteClient

    cfg = ctx.cfg
    try:
        qsettings = QueueSettings.from_config(cfg, queue_directory=".")
        store = QueueStore.open(settings=qsettings)
        committer = store.committer(f"cleanup-{__import__('os').getpid()}")
    except (QueueError, OSError) as exc:
        log.fatal("cannot open the queue: %s", exc)
    rewriter = RewriteClient(cfg, queue_directory=".")
    svc = CleanupService(_state["settings"], store, committer, rewriter, loop=ctx.loop,
                         long_ids=cfg.get_bool("enable_long_queue_ids"))
    svc.delay_limit = cfg.get_int("delay_logging_resolution_limit")
    _state["service"] = svc
    ctx.on_retire.append(svc.retire)
    # The committer's threads return from fdatasync wanting the GIL while the loop
    # thread is busy with other messages; at CPython's default switch interval (5 ms)
    # every acknowledgement could wait that long (docs/accept.md, "Performance").
    __import__("sys").setswitchinterval(SWITCH_INTERVAL)
    # Measuring only (util/threadprio.py): the loop thread's priority; the committer's
    # threads are running already and keep theirs.
    threadprio.apply("cleanup")
    log.debug("%s", _accel.describe())


async def _on_exit(ctx) -> None:
    svc = _state.get("service")
    if svc is not None:
        await svc.close()


def main(argv: list[str]) -> None:
    """Run cleanup on the multi skeleton (the master calls this in a forked worker)."""
    from fastpost.server.multi import multi_server_main

    multi_server_main(argv, lambda ctx: _state["service"].protocol(), name="cleanup",
                      pre_init=_pre_init, post_init=_post_init, on_exit=_on_exit)
