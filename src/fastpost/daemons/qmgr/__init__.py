"""qmgr: the queue manager. Active queue, scheduling, retries, expiry, notices.

Postfix counterpart: src/qmgr/qmgr.c (the daemon; the work is in manager.py, the
scheduler in scheduler.py, the store thread in writer.py).

master.cf: ``qmgr  unix  n  -  n  300  1  qmgr`` — a trigger daemon, resident (it
ignores max_use and max_idle) and solitary (it refuses to run with maxproc other than
1). Triggers (one byte each, any number per connection): ``W``/``I`` scan incoming,
``D`` scan the deferred queue for due messages, ``A`` scan everything ignoring retry
times (and ``defer_transports``), ``F`` forget dead destinations and suspended
transports. cleanup sends ``I`` after each committed batch, ``fastpost flush`` sends
``AFDI``, the master ``W`` every wakeup period.

pre_init (before chroot) reads master.cf for each delivery service's process limit
and makes the fast-flush client (fast_flush_domains' tables open before the chroot);
post_init opens the queue store (relative to the queue directory, so chrooted or
not), moves the active queue back to incoming and starts feeding. on_exit (reload,
stop) lets deliveries in flight finish and be recorded (up to 10 s), lets the store
thread commit what is queued, and leaves a trigger so that the master starts the next
qmgr at once after a reload.

Parameters: see manager.py and scheduler.py.
Diagnostics: fatal when the queue store cannot be opened or master.cf cannot be read;
warnings for everything it works around (see manager.py).
"""

from __future__ import annotations

from fastpost.daemons.qmgr.manager import Qmgr
from fastpost.mail import ipc, mastercf
from fastpost.mail.flush_clnt import AsyncFlushClient
from fastpost.mail.queue import QueueSettings, QueueStore
from fastpost.server import trigger_server_main

PARAMS = (
    "qmgr_message_active_limit", "qmgr_message_recipient_limit",
    "qmgr_message_recipient_minimum", "queue_run_delay",
    "minimal_backoff_time", "maximal_backoff_time", "maximal_queue_lifetime",
    "bounce_queue_lifetime", "delay_warning_time", "defer_transports", "transport_retry_time",
    "soft_bounce", "ipc_idle", "ipc_ttl", "default_process_limit", "fastpost_backoff_jitter",
    "initial_destination_concurrency", "default_destination_concurrency_limit",
    "default_destination_concurrency_positive_feedback",
    "default_destination_concurrency_negative_feedback",
    "default_destination_concurrency_failed_cohort_limit", "default_destination_rate_delay",
    "default_transport_rate_delay", "default_destination_recipient_limit",
    "default_recipient_limit", "rewrite_service_name", "bounce_service_name",
    "defer_service_name", "trace_service_name", "fastpost_rewrite_cache_size",
    "fastpost_rewrite_cache_time", "fast_flush_domains", "flush_service_name",
)


class _State:
    maxproc: dict = {}
    store: QueueStore | None = None
    qmgr: Qmgr | None = None
    flush: AsyncFlushClient | None = None


state = _State()


def pre_init(ctx) -> None:
    entries = mastercf.load(ctx.cfg.config_dir)
    state.maxproc = {e.service: e.maxproc for e in entries if e.type == "unix"}
    # fast_flush_domains' tables are opened now, before any chroot
    state.flush = AsyncFlushClient(ctx.cfg, queue_directory=".")


async def post_init(ctx) -> None:
    settings = QueueSettings.from_config(ctx.cfg, queue_directory=".")
    state.store = QueueStore.open(settings=settings)
    state.qmgr = Qmgr(ctx, state.store, state.maxproc, flush=state.flush)
    await state.qmgr.start()


def service(data: bytes, ctx) -> None:
    state.qmgr.trigger(data)


async def on_exit(ctx) -> None:
    if state.qmgr is not None:
        await state.qmgr.stop()
    if state.store is not None:
        state.store.close()
    # A reload retires this process: a trigger left in the master's socket makes it start
    # the next qmgr as soon as this one is gone (it recovers what was left active).
    try:
        await ipc.async_mail_trigger(".", str(ctx.cfg.get("queue_service_name")), b"I", timeout=1)
    except ipc.IPCError:
        pass  # the mail system is stopping


def main(argv):
    trigger_server_main(argv, service, name="qmgr", params=PARAMS, pre_init=pre_init,
                        post_init=post_init, on_exit=on_exit, resident=True, solitary=True)
