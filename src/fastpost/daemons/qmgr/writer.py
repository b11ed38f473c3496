"""qmgr's queue-store thread: every read of message files and every index change.

Postfix counterpart: the file operations of src/qmgr/qmgr_active.c, qmgr_message.c and
deliver_completed.c (renames between queue directories, marking recipients done).

One thread owns the QueueStore of the qmgr process, so the event loop never waits for
a disk read, an fdatasync or the index write lock (which cleanup processes share), and
the store's file descriptors are used by one thread only. Two kinds of work:

  * ``await call(fn, *args)``: run fn(store, *args) in the thread (activation reads
    message files and changes states; recovery; scans);
  * ``edit(op)``: queue ``op(ed)`` for the next write transaction. Everything queued
    while a transaction commits goes into the next one (group commit: under load many
    deliveries' outcomes share one LMDB commit and its fdatasync).
    ``await flush()`` returns once everything queued so far is committed.

A failed transaction (disk or index full) is logged and retried every second with the
same operations plus whatever came since; an operation that raises is logged and
dropped (a bug), the rest of its transaction goes on.

Diagnostics: ``warning: queue index update failed: ...; retrying``, ``error: queue
index update: ...`` for a failing operation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from fastpost.server.lifecycle import describe_exception
from fastpost.util import log


class StoreThread:
    """The qmgr's single store thread (see the module docstring)."""

    def __init__(self, store, loop: asyncio.AbstractEventLoop):
        self.store = store
        self.loop = loop
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qmgr-store")
        self.pending: list = []  # ops for the next transaction
        self.waiters: list[asyncio.Future] = []  # flush() callers for the pending ops
        self.running = False
        self.commits = 0  # transactions committed (benchmarks)
        self.ops = 0  # operations committed

    async def call(self, fn, *args):
        """Run fn(store, *args) in the store thread and return its result."""
        return await self.loop.run_in_executor(self.pool, fn, self.store, *args)

    def edit(self, op) -> None:
        """Queue op(ed) for the next write transaction."""
        self.pending.append(op)
        if not self.running:
            self.running = True
            self.loop.call_soon(self._start)

    async def flush(self) -> None:
        """Wait until every operation queued so far is committed."""
        if not self.pending and not self.running:
            return
        fut = self.loop.create_future()
        self.waiters.append(fut)
        if not self.running:
            self.running = True
            self.loop.call_soon(self._start)
        await fut

    def _start(self) -> None:
        ops, self.pending = self.pending, []
        waiters, self.waiters = self.waiters, []
        if not ops:
            self.running = False
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            return
        fut = self.loop.run_in_executor(self.pool, self._commit, ops)
        fut.add_done_callback(lambda f: self._done(f, ops, waiters))

    def _commit(self, ops: list) -> int:
        with self.store.edit() as ed:
            for op in ops:
                try:
                    op(ed)
                except Exception as exc:  # noqa: BLE001 - one bad op must not lose the rest
                    if _is_index_error(exc):
                        raise
                    log.error("queue index update: %s", describe_exception(exc))
        return len(ops)

    def _done(self, fut, ops: list, waiters: list) -> None:
        exc = fut.exception()
        if exc is not None:
            log.warn("queue index update failed: %s; retrying", describe_exception(exc))
            self.pending = ops + self.pending
            self.waiters = waiters + self.waiters
            self.loop.call_later(1.0, self._start)
            return
        self.commits += 1
        self.ops += fut.result()
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self.pending or self.waiters:
            self._start()
        else:
            self.running = False

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _is_index_error(exc: BaseException) -> bool:
    import lmdb

    from fastpost.mail.queue import InsufficientStorage, QueueError

    return isinstance(exc, (lmdb.Error, InsufficientStorage, QueueError))


__all__ = ["StoreThread"]
