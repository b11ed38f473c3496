"""Committer: group commit of messages into one process's segment files.

Postfix counterpart: the end of src/cleanup/cleanup_api.c (cleanup_flush) and
src/global/mail_stream.c (mail_stream_finish_file: fflush, fsync, then status to the
client). Postfix syncs one file per message; a committer syncs one batch per fdatasync.

Each cleanup worker process owns one Committer. ``await committer.commit(builder)``
encodes the message as one frame and queues it; if no flush is in flight, one is
requested on the next event-loop turn, taking every message queued by then; while it
runs, the next batch forms behind it. A flush, in the committer's I/O thread: completes
and syncs the files of large messages, writes the batch (frames + batch end) to the
current segment with one writev and makes it durable with one fdatasync. Only then are
the callers' futures resolved (or commit_cb's callbacks called) with their queue IDs
(the durability rule: ``250 ... queued as ID`` after the sync). The I/O thread then takes the batch that formed
meanwhile by itself (no round trip through the loop), and hands the batch's index work
straight to the index thread.

Per message the committer keeps one CommitRec (commitrec.py, compiled): the builder's
envelope fields, the frame (qframe.message_frame) and the caller; the index thread puts
its entries with commitrec.insert_records (no MessageInfo/RcptInfo objects).

Hand-offs: the loop gives work to the threads through queue.SimpleQueue; the threads
give results back through one list and ``call_soon_threadsafe``, one wake-up of the
loop for everything posted until the loop gets to it (no executor futures). An index
round's result wakes the loop only when no flush is requested or running (the flush's
own post delivers it otherwise).

Indexing follows in a second thread, in batch order: one LMDB transaction inserts the
messages of every batch waiting at that moment (one transaction at a time, so under
load several commit batches share one index fdatasync) and moves the segment's
watermark past them. A round waits INDEX_GATHER (3 ms) after its first batch so that
more join it, except while the file system has less than INDEX_GATHER_MIN_FREE free
(asked at most every INDEX_SPACE_KEEP while the answer is yes, at every round while
it is no).
(Experiment, FASTPOST_INDEX_INLINE=1: the rounds run in the I/O thread instead, after a
batch's callers were answered — a waiting batch first, INDEX_MAX_DEFER at most — or
when it has nothing else to do; close()'s final seal still goes through the index
thread.) It is off the acknowledgement path: a crash between the sync and the index transaction loses nothing, because
recovery replays every frame beyond the watermark. ``on_indexed(queue_ids)`` is called
on the event loop when a batch is visible in the index (cleanup triggers qmgr there).
If the index cannot be written (full disk, full map) the batches wait and are retried
every second (warning once per failing stretch); past MAX_INDEX_BACKLOG waiting
batches, commits fail with InsufficientStorage.

A segment is rolled when it passes fastpost_queue_segment_size and abandoned after any
write error (the failed batch is truncated away first); the old one is sealed in the
index once its last batch is indexed, its zeros ahead trimmed and its lock released.
Between batches the I/O thread writes zeros ahead of the segment's logical end
(SegmentWriter.prepare(), fastpost_queue_segment_prezero), so that batch syncs need no
journal commit.

Parameters: fastpost_queue_segment_size, fastpost_queue_large_message_size,
fastpost_queue_segment_prezero,
line_length_limit, enable_long_queue_ids (through the store's settings); the
FASTPOST_COMMIT_TRACE environment variable (measuring only: step times of every batch
and index round, benchmarks/committer_gil.py); FASTPOST_SCHED (measuring only: the
roles ``commit`` and ``index`` set the I/O and index threads' nice value or policy,
util/threadprio.py).
Diagnostics: InsufficientStorage (full disk or quota; nothing of the batch kept);
OSError for other I/O errors; both reach every caller of the failed batch.
"""

from __future__ import annotations

import asyncio
import collections
import os
import queue
import threading
import time
from dataclasses import dataclass

import lmdb

from fastpost._accel import select
from fastpost.mail.queue import crashpoint
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.builder import MessageBuilder
from fastpost.mail.queue.commitrec import CommitRec, commit_record, settle
from fastpost.mail.queue.qframe import short_id_at
from fastpost.mail.queue.queue_id import make_id
from fastpost.mail.queue.segment import (
    InsufficientStorage, SegmentWriter, batch_frame, storage_error,
)
from fastpost.util import log, threadprio

#: Measuring only (benchmarks/committer_gil.py): a file name prefix; each process
#: appends one line per commit batch and per index round with perf_counter() times
#: of its steps to ``<prefix>.<pid>``. Empty: nothing is measured (one test per batch).
_TRACE = os.environ.get("FASTPOST_COMMIT_TRACE", "")
_clock = time.perf_counter
#: Experiment (docs/accept.md, "Session 7" and "Session 8: index rounds in the I/O
#: thread"): FASTPOST_INDEX_INLINE=1 runs the index rounds in the I/O thread, between
#: commit batches (no index sync beside a commit sync, one thread fewer taking the
#: GIL). Off by default: on a journalled ext4 it had the higher msgs/s in only 6 of
#: 20 pairs (session 8); its full-disk failure was LMDB's EIO for a short write, now
#: mapped to InsufficientStorage (store._index_error).
_INLINE = os.environ.get("FASTPOST_INDEX_INLINE") == "1"
# fdatasync_timed: the sync's return time taken before the GIL is asked for again
_syncio = select("fastpost.mail.queue._syncio_c", "fastpost.mail.queue._syncio_py")

#: Batches acknowledged but not yet indexed before commits are refused.
MAX_INDEX_BACKLOG = 1000
#: Queue numbers reserved per index transaction.
ID_BLOCK = 4096
#: Seconds between retries of a failed index transaction.
INDEX_RETRY = 1.0
#: Seconds an index round waits, after its first batch, for more batches to join it
#: (one LMDB transaction and one index sync for all of them instead of one per batch).
INDEX_GATHER = 0.003
#: No gathering while the queue file system has less free space than this: near a full
#: disk the index must not wait while segments take the last blocks (docs/queue.md).
INDEX_GATHER_MIN_FREE = 64 << 20
#: Seconds an answer "enough free space to gather" is kept (one statvfs per this
#: interval instead of one per index round); a short answer is never kept.
INDEX_SPACE_KEEP = 0.1
#: Seconds an index round run by the I/O thread may be put off while commit batches
#: keep coming (each batch's callers are answered first).
INDEX_MAX_DEFER = 0.010


@dataclass(slots=True)
class _IndexJob:
    infos: list  # CommitRec with final locations (commitrec.insert_records puts them)
    watermarks: dict  # segid -> (new watermark, flags to add)
    close_after: list  # SegmentWriters to close once sealed
    t_put: float = 0.0  # _TRACE only: when the I/O thread handed it over


class _Call:
    """A function to run in the I/O thread (run_io), its result for the loop."""

    __slots__ = ("fn", "args", "future")

    def __init__(self, fn, args, future):
        self.fn = fn
        self.args = args
        self.future = future


_KICK = object()  # I/O thread: take the queued messages and flush them
_STOP = object()  # either thread: finish


class _Seal:
    """close(): index the last watermark of the current segment, then answer."""

    __slots__ = ("job", "done", "result")

    def __init__(self, job: _IndexJob):
        self.job = job
        self.done = threading.Event()
        self.result = None


class Committer:
    """Group commit for one process (see the module docstring)."""

    def __init__(self, store, name: str, on_indexed=None):
        self.store = store
        self.name = name
        self.on_indexed = on_indexed
        self.settings = store.settings
        self._long_ids = bool(store.settings.long_queue_ids)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Messages waiting for the next flush. The loop appends, the I/O thread takes
        # the whole list when it starts a flush; both under _qlock. _flushing: a flush
        # is requested or running (one at a time); set by the loop, cleared by the I/O
        # thread when it finds the queue empty after a flush.
        self._qlock = threading.Lock()
        self._queue: list[CommitRec] = []
        self._flushing = False
        self._kick_scheduled = False
        # Work for the threads: SimpleQueue put/get are the only hand-offs.
        self._io_jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._ix_jobs: queue.SimpleQueue = queue.SimpleQueue()
        # Results for the loop: appended by the threads under _dlock; one
        # call_soon_threadsafe wakes the loop for everything appended until it runs.
        self._dlock = threading.Lock()
        self._done: list = []
        self._wake_pending = False
        self._seg: SegmentWriter | None = None  # I/O thread only
        self._seg_broken = False  # I/O thread only
        self._rolled: list = []  # I/O thread only
        self._backlog: collections.deque = collections.deque()  # index thread only
        self._jobs_submitted = 0  # index jobs handed over (I/O thread writes)
        self._jobs_indexed = 0  # index jobs applied (index thread writes)
        self._index_failing = False
        self._space_ok_until = float("-inf")  # _space_to_gather's yes holds until then
        self._id_blocks: collections.deque = collections.deque()
        self._id_next = 0
        self._id_end = 0
        self._refilling = False
        self._reserve_ids(synchronous=True)
        self._closed = False
        self._io_thread = threading.Thread(target=self._io_main, name=f"fp-commit-{name}", daemon=True)
        self._ix_thread = threading.Thread(target=self._ix_main, name=f"fp-index-{name}", daemon=True)
        self._io_thread.start()
        self._ix_thread.start()
        #: statistics: batches, messages, bytes written
        self.batches = 0
        self.messages = 0
        #: index transactions (each covers every batch waiting when it started)
        self.index_rounds = 0
        self._trace: list = []  # _TRACE lines not yet written (the loop writes them)
        self._trace_times = None  # I/O thread, _TRACE only: this batch's step times
        self._trace_enq: list = []  # _TRACE only: when each queued message's commit was called
        self._ix_first = 0.0  # _INLINE: when the oldest waiting index job arrived

    @property
    def _backlog_len(self) -> int:
        """Batches acknowledged (or failed) by the I/O thread and not yet indexed."""
        return self._jobs_submitted - self._jobs_indexed

    # -- queue IDs ------------------------------------------------------------------------

    def _reserve_ids(self, synchronous: bool = False) -> None:
        """Take a block of queue numbers from the index (a durable transaction)."""
        try:
            first = self.store.reserve_numbers(ID_BLOCK)
            self._id_blocks.append((first, first + ID_BLOCK))
        finally:
            self._refilling = False  # a failed refill is retried; a dry block reserves in line

    def new_queue_id(self) -> str:
        """Return a fresh queue ID (the time now, a number nobody else has).

        Called on the event loop only: the current block (_id_next, _id_end) is the
        loop's; the I/O thread only appends refilled blocks to _id_blocks (a deque:
        append and popleft need no lock), so the common case takes no lock."""
        number = self._id_next
        if number >= self._id_end:
            number = self._next_block()
        self._id_next = number + 1
        if (not self._refilling and self._id_end - number <= ID_BLOCK // 4
                and not self._id_blocks):
            self._refilling = True
            self._io_jobs.put(_Call(self._reserve_ids, (), None))
        if self._long_ids:
            now = time.time()
            sec = int(now)
            return make_id(True, sec, int((now - sec) * 1_000_000), number)
        return short_id_at(time.time(), number)  # (compiled: queue_id.short_id without its checks)

    def _next_block(self) -> int:
        """The current block is used up: take the next one (reserved in line if none
        came back from the I/O thread yet); return its first number."""
        while not self._id_blocks:
            self._reserve_ids(synchronous=True)  # ran dry before the refill came back
        self._id_next, self._id_end = self._id_blocks.popleft()
        return self._id_next

    def builder(self, reuse_id: str | None = None) -> MessageBuilder:
        """Start a message: a builder that already has its queue ID. ``reuse_id``: an
        ID this committer handed out to a message that was abandoned (nothing of it
        written; cleanup's returned-reject path), taken again unless the store has it."""
        if self._closed:
            raise RuntimeError("committer is closed")
        if reuse_id is not None and not self.store.exists(reuse_id):
            return MessageBuilder(self, reuse_id, self.settings.line_length_limit,
                                  self.settings.large_message_size)
        # No look-up of the new ID: no message in the index can have it. Its number
        # comes from a block of the store-wide counter, which never goes back (each
        # reservation is durable before its numbers are used; recovery raises it above
        # every replayed message), so no other generated ID has it; and an import keeps
        # a Postfix ID only if its number is outside every block handed out before and
        # raises the counter above it (importer._choose_ids). docs/queue.md, "Queue IDs".
        return MessageBuilder(self, self.new_queue_id(), self.settings.line_length_limit,
                              self.settings.large_message_size)

    async def run_io(self, fn, *args):
        """Run blocking file work in the committer's I/O thread (in order with flushes)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut = loop.create_future()
        self._io_jobs.put(_Call(fn, args, fut))
        return await fut

    # -- commit ---------------------------------------------------------------------------

    async def commit(self, builder: MessageBuilder, state: int = ix.INCOMING) -> str:
        """Make the message durable; return its queue ID once it is on disk.

        InsufficientStorage (full disk) or OSError: nothing of the message was kept.
        """
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        pending = self.commit_cb(builder, state, None, loop, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            # The caller went away. A message not yet handed to a flush is dropped; one
            # being written is finished and queued anyway (as Postfix's cleanup does
            # when the client disconnects after the final dot).
            with self._qlock:
                dropped = pending in self._queue
                if dropped:
                    self._queue.remove(pending)
            if dropped:
                builder.state = "open"
                builder.abort()
            raise

    def commit_cb(self, builder: MessageBuilder, state: int, callback, loop, fut=None) -> CommitRec:
        """commit() for callers without a coroutine: ``callback(queue_id, None)`` on the
        loop once the message is on disk, ``callback(None, exc)`` when it was not kept.

        The same durability rule as commit() (the callback runs after the batch's
        fdatasync); no future and no task per message. Errors found before anything is
        queued (full index backlog, a closed committer) are raised here. commit()
        queues through here with its future (``fut``) instead of a callback.
        """
        if self._closed:
            raise RuntimeError("committer is closed")
        if builder.committer is not self:
            raise ValueError("builder belongs to another committer")
        if builder.state != "open":
            raise RuntimeError(f"message {builder.queue_id} is {builder.state}")
        if state not in ix.STATE_NAMES:
            raise ValueError(f"bad queue state {state}")
        if self._jobs_submitted - self._jobs_indexed > MAX_INDEX_BACKLOG:  # _backlog_len
            builder.abort()
            raise InsufficientStorage(28, "queue index is not writable: too many messages waiting to be indexed")
        self._loop = loop
        # one record per message, from the builder to the index entries (commitrec):
        # no MessageInfo/RcptInfo objects on this path; the builder finished, a small
        # message's whole frame as one buffer (one iovec per message in the writev)
        pending = commit_record(builder, state, fut, callback)
        with self._qlock:
            self._queue.append(pending)
            if _TRACE:
                self._trace_enq.append(_clock())
            kick = not self._flushing and not self._kick_scheduled
            if kick:
                self._kick_scheduled = True
        if kick:
            # on the next loop turn: every message committed during this turn shares it
            loop.call_soon(self._kick)
        return pending

    def _kick(self) -> None:
        with self._qlock:
            self._kick_scheduled = False
            if self._flushing or not self._queue:
                return  # the I/O thread takes these after its current flush
            self._flushing = True
        self._io_jobs.put(_KICK)

    def _post(self, item, lazy: bool = False) -> None:
        """Hand a result to the loop (from a thread); wake it once for many.

        ``lazy`` (the index thread's rounds): no wake-up of its own while a flush is
        requested or running, whose "flushed" post (or _wake_if_waiting, when the
        I/O thread finds nothing more to flush) delivers this item too."""
        with self._dlock:
            self._done.append(item)
            if self._wake_pending or (lazy and self._flushing):
                return
            self._wake_pending = True
        self._wake()

    def _wake_if_waiting(self) -> None:
        """Wake the loop for items a lazy _post left without a wake-up."""
        with self._dlock:
            if not self._done or self._wake_pending:
                return
            self._wake_pending = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # that loop is closed: the next one takes these
            with self._dlock:
                self._wake_pending = False

    def _deliver(self) -> None:
        with self._dlock:
            items, self._done = self._done, []
            self._wake_pending = False
        for item in items:
            kind = item[0]
            if len(item) >= 4 and kind != "call":  # _TRACE: the step times, then now
                extra = " | " + " ".join(f"{t:.6f}" for t in item[4]) if len(item) == 5 else ""
                self._trace.append(f"{kind[0].upper()} " + " ".join(f"{t:.6f}" for t in item[3])
                                   + f" {_clock():.6f}{extra}\n")
            if kind == "flushed":
                self._flushed(item[1], item[2])
            elif kind == "indexed":
                self._indexed(item[1], item[2])
            else:  # "call"
                _, fut, ok, value = item
                if not fut.done():
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
        if len(self._trace) >= 500:
            self._write_trace()

    def _write_trace(self) -> None:
        lines, self._trace = self._trace, []
        if lines:
            with open(f"{_TRACE}.{os.getpid()}", "a") as fh:
                fh.write("".join(lines))

    def _flushed(self, batch, results) -> None:
        """On the loop: resolve the callers of a written batch."""
        if isinstance(results, BaseException):  # a bug in the flush: fail the batch loudly
            log.warn("queue commit failed: %s", results)
            for p in batch:
                p.builder.state = "open"
                p.builder.abort()
                p.resolve(results)
            return
        ok = settle(batch, results)  # each caller answered, in batch order (commitrec)
        self.batches += 1
        self.messages += ok

    # -- the I/O thread ---------------------------------------------------------------------

    def _io_main(self) -> None:
        threadprio.apply("commit")
        get = self._io_jobs.get
        while True:
            if _INLINE and self._backlog:
                try:
                    item = get(timeout=max(0.0, self._ix_first + INDEX_GATHER - time.monotonic()))
                except queue.Empty:
                    self._index_inline()
                    continue
            else:
                item = get()
            if item is _STOP:
                return
            if item is _KICK:
                self._flush_all()
                continue
            try:  # a _Call
                value, ok = item.fn(*item.args), True
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                value, ok = exc, False
            if item.future is not None:
                self._post(("call", item.future, ok, value))
            # a queue-number refill (no future) that failed is retried when needed

    def _flush_all(self) -> None:
        """Flush the queued messages, then whatever was queued meanwhile, until none."""
        while True:
            with self._qlock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._flushing = False
                elif _TRACE:
                    enq, self._trace_enq = self._trace_enq, []
                    t_taken = _clock()
            if not batch:
                # an index round posted without a wake-up while the flushes ran
                # (_post(lazy=True)) must not wait for the next commit
                self._wake_if_waiting()
                return
            try:
                results, job = self._flush(batch)
            except BaseException as exc:  # noqa: BLE001 - reported on the loop
                results, job = exc, None
            if job is not None and (job.infos or job.watermarks or job.close_after):
                self._jobs_submitted += 1
                if _TRACE:
                    job.t_put = _clock()
                if _INLINE:
                    if not self._backlog:
                        self._ix_first = time.monotonic()
                    self._backlog.append(job)
                else:
                    self._ix_jobs.put(job)
            if _TRACE and self._trace_times is not None:
                # messages, writev start, fdatasync called, fdatasync returned (before
                # the GIL), back in Python (after it), posted, [the loop appends: _deliver
                # runs], then the batch taken by this thread and each message's commit()
                times, self._trace_times = self._trace_times, None
                self._post(("flushed", batch, results, (len(batch), *times, _clock()), (t_taken, *enq)))
            else:
                self._post(("flushed", batch, results))
            if self._seg is not None and not self._seg_broken:
                self._seg.prepare()  # zeros ahead, after the batch was answered (segment.py)
            if _INLINE and self._backlog and self._index_due():
                self._index_inline()

    def _index_due(self) -> bool:
        """_INLINE, after a batch: index now? Not while the next batch waits (its callers
        come first) unless the oldest waiting job is INDEX_MAX_DEFER old; at once while
        free space is short."""
        age = time.monotonic() - self._ix_first
        if age < INDEX_GATHER:
            return not self._space_to_gather()
        return not self._queue or age >= INDEX_MAX_DEFER or not self._space_to_gather()

    def _index_inline(self) -> None:
        """_INLINE: one index round in the I/O thread (between two commit batches)."""
        if _TRACE:  # the round starts at once: no wake-up and no gather of its own
            t_ix = _clock()
            first_put = self._backlog[0].t_put
        try:
            done_ids, applied, exc = self._index()
        except BaseException as exc2:  # noqa: BLE001 - a bug: keep the backlog for retry
            done_ids, applied, exc = [], 0, exc2
        self._jobs_indexed += applied
        if exc is not None:
            self._ix_first = time.monotonic() + INDEX_RETRY - INDEX_GATHER
        elif self._backlog:
            self._ix_first = time.monotonic()
        if exc is not None or done_ids:
            if _TRACE:
                self._post(("indexed", done_ids, exc, (applied, len(done_ids), first_put, t_ix, t_ix, _clock())))
            else:
                self._post(("indexed", done_ids, exc))
        if exc is None and done_ids:
            self._prepare_index()

    def _prepare_index(self) -> None:
        """Index.prepare() through the store; an error is the next round's to report."""
        try:
            self.store.prepare_index(self._space_to_gather)
        except (lmdb.Error, OSError):
            pass

    def _segment(self) -> SegmentWriter:
        """Return the segment to append to, rolling it when full or broken."""
        seg = self._seg
        if seg is not None and not self._seg_broken and seg.size < self.settings.segment_size:
            return seg
        new = self.store.new_segment(prezero=True)
        self._seg = new
        self._seg_broken = False
        if seg is not None:
            self._rolled.append(seg)
        return new

    def _flush(self, batch: list) -> tuple[list, _IndexJob]:
        self._rolled = []
        results: list = [None] * len(batch)
        job = _IndexJob([], {}, [])
        small = []
        for i, p in enumerate(batch):
            if p.frame is None:
                try:
                    large = p.builder.large
                    qfb = p.builder.records
                    segid, off, length = large.finish(p.state, qfb.size_record(), qfb.take_chunks())
                except OSError as exc:
                    results[i] = exc
                    continue
                p.segid, p.offset, p.length = segid, off, length
                job.infos.append(p)
                end = off + length + len(batch_frame(0, 0))
                job.watermarks[segid] = (end, ix.SEGF_SEALED | ix.SEGF_LARGE)
                job.close_after.append(large)
                results[i] = True
            else:
                small.append(i)
        if small:
            try:
                seg = self._segment()
            except OSError as exc:
                for i in small:
                    results[i] = exc
                small = []
        if small:
            pos = seg.size
            buffers: list = []
            placed = []
            for i in small:
                p = batch[i]
                placed.append((p, pos))
                buffers.append(p.frame)
                pos += len(p.frame)
            buffers.append(batch_frame(seg.size, len(small), [batch[i].frame for i in small]))
            crashpoint.reached("commit.before_write")
            try:
                if _TRACE:
                    self._append_timed(seg, buffers)
                else:
                    seg.append(buffers, crash="commit")
            except OSError as exc:
                self._seg_broken = True
                for i in small:
                    results[i] = exc
            else:
                for p, off in placed:
                    p.segid, p.offset, p.length = seg.segid, off, len(p.frame)
                    job.infos.append(p)
                for i in small:
                    results[i] = True
                job.watermarks[seg.segid] = (seg.size, 0)
        for old in self._rolled:
            job.watermarks[old.segid] = (old.size, ix.SEGF_SEALED | job.watermarks.get(old.segid, (0, 0))[1])
            job.close_after.append(old)
        return results, job

    def _append_timed(self, seg: SegmentWriter, buffers: list) -> None:
        """seg.append(buffers) with the times of its steps kept (_TRACE only)."""
        t0 = _clock()
        start = seg.append(buffers, sync=False, crash="commit")
        try:
            t1, t_kernel = _syncio.fdatasync_timed(seg.fd)  # t_kernel: before the GIL
        except OSError as exc:
            seg.rollback(start)
            raise storage_error(exc, f"write {seg.path}") from None
        self._trace_times = (t0, t1, t_kernel, _clock())

    # -- the index thread -------------------------------------------------------------------

    def _ix_main(self) -> None:
        """Index batches in order, every batch waiting at once (one transaction).

        Batches that arrive while a transaction runs wait and are then indexed together
        (one fdatasync of the index for all of them): under load the index costs one
        transaction per index round, not one per commit batch. A failed round is
        retried every INDEX_RETRY seconds, batches keep their order.
        """
        threadprio.apply("index")
        get = self._ix_jobs.get
        stop = False
        timeout = None
        while not stop:
            try:
                item = get(timeout=timeout)
            except queue.Empty:
                item = None  # retry time
            t_got = _clock() if _TRACE else 0.0
            items = [] if item is None else [item]
            if item is not None and item is not _STOP and not isinstance(item, _Seal):
                self._gather()
            while True:  # everything else waiting joins this round
                try:
                    items.append(self._ix_jobs.get_nowait())
                except queue.Empty:
                    break
            seal = None
            for it in items:
                if it is _STOP:
                    stop = True
                elif isinstance(it, _Seal):
                    seal = it
                    self._backlog.append(it.job)
                else:
                    self._backlog.append(it)
            if not self._backlog:
                timeout = None
                if seal is not None:
                    seal.result = ([], 0, None)
                    seal.done.set()
                continue
            t_ix = _clock() if _TRACE else 0.0
            first_put = self._backlog[0].t_put
            try:
                done_ids, applied, exc = self._index()
            except BaseException as exc2:  # noqa: BLE001 - a bug: keep the backlog for retry
                done_ids, applied, exc = [], 0, exc2
            self._jobs_indexed += applied
            if seal is not None:
                seal.result = (done_ids, applied, exc)
                seal.done.set()
                continue  # close() reports what happened
            timeout = INDEX_RETRY if exc is not None else None
            if exc is not None or done_ids:
                if _TRACE:
                    # batches, messages, first batch handed over, thread woken, index
                    # transaction started, ended and posted
                    self._post(("indexed", done_ids, exc,
                                (applied, len(done_ids), first_put, t_got, t_ix, _clock())), lazy=True)
                else:
                    self._post(("indexed", done_ids, exc), lazy=True)
            if exc is None and done_ids:
                # zeros ahead of the index's last page (index.py): after the round was
                # reported, off the acknowledgement path (its messages were answered)
                self._prepare_index()

    def _gather(self) -> None:
        """Wait INDEX_GATHER for more batches, unless free space is short (or unknown)."""
        if self._space_to_gather():
            time.sleep(INDEX_GATHER)

    def _space_to_gather(self) -> bool:
        """True if the queue file system has INDEX_GATHER_MIN_FREE free (known). A yes
        is kept INDEX_SPACE_KEEP seconds (at most ~5 MB written meanwhile at this
        host's fastest rates: the threshold is 64 MiB); a no is asked again each time."""
        now = time.monotonic()
        if now < self._space_ok_until:
            return True
        try:
            st = os.statvfs(self.store.segment_dir)
        except OSError:
            return False
        if st.f_bavail * st.f_frsize >= INDEX_GATHER_MIN_FREE:
            self._space_ok_until = now + INDEX_SPACE_KEEP
            return True
        return False

    def _index(self):
        count = len(self._backlog)
        jobs = [self._backlog[i] for i in range(count)]
        infos: list = []
        watermarks: dict = {}
        for j in jobs:
            infos.extend(j.infos)
            for segid, (mark, flags) in j.watermarks.items():
                old = watermarks.get(segid)
                watermarks[segid] = (mark, flags) if old is None else (max(old[0], mark), old[1] | flags)
        if infos:
            crashpoint.reached("commit.before_index")
        try:
            self.store.index_batch(infos, watermarks)
        except (lmdb.Error, OSError) as exc:
            if count == 1:
                return [], 0, self._ix_error(exc)
            # A merged round needs more free pages than one batch (a nearly full disk
            # or map): index batch by batch, as far as it goes.
            return self._index_one_by_one()
        for j in jobs:
            self._backlog.popleft()
            for w in j.close_after:
                w.close()
        self.index_rounds += 1
        return [i.queue_id for i in infos], count, None

    def _index_one_by_one(self):
        done_ids: list[str] = []
        applied = 0
        while self._backlog:
            job = self._backlog[0]
            try:
                self.store.index_batch(job.infos, job.watermarks)
            except (lmdb.Error, OSError) as exc:
                return done_ids, applied, self._ix_error(exc)
            self._backlog.popleft()
            applied += 1
            self.index_rounds += 1
            for w in job.close_after:
                w.close()
            done_ids.extend(i.queue_id for i in job.infos)
        return done_ids, applied, None

    def _ix_error(self, exc: BaseException) -> BaseException:
        """The error an index round reports: LMDB's mapped as the store maps it (an EIO
        on a full file system is InsufficientStorage, store._index_error)."""
        return self.store.index_error(exc) if isinstance(exc, lmdb.Error) else exc

    def _indexed(self, done_ids, exc) -> None:
        """On the loop: report an index round."""
        if exc is not None:
            if not self._index_failing:
                log.warn("cannot update the queue index (%s); %d batch(es) wait and will be retried",
                         exc, self._backlog_len)
            self._index_failing = True
        else:
            self._index_failing = False
        if done_ids and self.on_indexed is not None:
            self.on_indexed(done_ids)

    # -- shutdown ---------------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._flushing or self._kick_scheduled or self._queue or self._backlog_len
                    or self._wake_pending)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything committed so far is written and indexed.

        Return False if ``timeout`` seconds passed first (the index stayed unwritable).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._busy():
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    async def close(self) -> None:
        """Finish in-flight work, seal the current segment and stop the threads."""
        if self._closed:
            return
        if not await self.drain(timeout=30):
            log.warn("closing with %d batch(es) not indexed; recovery will index them", self._backlog_len)
        self._closed = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        # the I/O thread is idle now (drained): its segment can be handed over
        seg = self._seg
        self._seg = None
        if seg is not None:
            seal = _Seal(_IndexJob([], {seg.segid: (seg.size, ix.SEGF_SEALED)}, [seg]))
            self._jobs_submitted += 1
            self._ix_jobs.put(seal)
            await loop.run_in_executor(None, seal.done.wait)
            done_ids, applied, exc = seal.result
            if exc is not None:
                log.warn("cannot seal segment %016x (%s); recovery will", seg.segid, exc)
                seg.close()
        self._io_jobs.put(_STOP)
        self._ix_jobs.put(_STOP)
        self._io_thread.join()
        self._ix_thread.join()
        self._deliver()  # what the threads posted last (the loop may not run again)
        if _TRACE:
            self._write_trace()

    @property
    def segment_id(self) -> int | None:
        """The segment currently appended to (for tests and diagnostics)."""
        return self._seg.segid if self._seg is not None else None
