"""Committer: group commit of messages into one process's segment files.

Postfix counterpart: the end of src/cleanup/cleanup_api.c (cleanup_flush) and
src/global/mail_stream.c (mail_stream_finish_file: fflush, fsync, then status to the
client). Postfix syncs one file per message; a committer syncs one batch per fdatasync.

Each cleanup worker process owns one Committer. ``await committer.commit(builder)``
queues the message; if no flush is in flight, one starts on the next event-loop turn,
taking every message queued by then; while it runs, the next batch forms behind it.
A flush, in the committer's I/O thread: completes and syncs the files of large
messages, writes the batch (frames + batch end) to the current segment with one writev
and makes it durable with one fdatasync. Only then are the callers' futures resolved
with their queue IDs (the durability rule: ``250 ... queued as ID`` after the sync).

Indexing follows in a second thread, in batch order: one LMDB transaction inserts the
messages of every batch waiting at that moment (one transaction at a time, so under
load several commit batches share one index fdatasync) and moves the segment's
watermark past them. It is off the acknowledgement
path: a crash between the sync and the index transaction loses nothing, because
recovery replays every frame beyond the watermark. ``on_indexed(queue_ids)`` is called
on the event loop when a batch is visible in the index (cleanup triggers qmgr there).
If the index cannot be written (full disk, full map) the batches wait and are retried
every second; past MAX_INDEX_BACKLOG waiting batches, commits fail with
InsufficientStorage.

A segment is rolled when it passes fastpost_queue_segment_size and abandoned after any
write error (the failed batch is truncated away first); the old one is sealed in the
index once its last batch is indexed, and its lock released.

Parameters: fastpost_queue_segment_size, fastpost_queue_large_message_size,
line_length_limit, enable_long_queue_ids (through the store's settings).
Diagnostics: InsufficientStorage (full disk or quota; nothing of the batch kept);
OSError for other I/O errors; both reach every caller of the failed batch.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lmdb

from fastpost.mail.queue import crashpoint
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.builder import MessageBuilder
from fastpost.mail.queue.queue_id import make_id
from fastpost.mail.queue.segment import (
    KIND_MESSAGE, InsufficientStorage, SegmentWriter, batch_frame, frame_bytes,
)
from fastpost.util import log

#: Batches acknowledged but not yet indexed before commits are refused.
MAX_INDEX_BACKLOG = 1000
#: Queue numbers reserved per index transaction.
ID_BLOCK = 4096
#: Seconds between retries of a failed index transaction.
INDEX_RETRY = 1.0
#: Seconds an index round waits after the batch that starts it, so that the batches of
#: the next few milliseconds share its transaction (off the acknowledgement path: only
#: qmgr's view of new mail is delayed by this much). 0: a round starts at once, and
#: batches share one only when they arrived while the previous round ran. 4 ms cut the
#: index thread's CPU by a third under load, but on a nearly full disk the segments then
#: took the last free blocks before the index could, and acknowledged messages stayed
#: unindexed until space returned (tests/queue/test_full_disk.py failed 1 run in 6).
INDEX_DELAY = 0.0


@dataclass(slots=True)
class _Pending:
    builder: MessageBuilder
    info: ix.MessageInfo
    buffers: list | None  # frame buffers (small message) or None (large: own file)
    length: int
    future: asyncio.Future


@dataclass(slots=True)
class _IndexJob:
    infos: list  # MessageInfo with final locations
    watermarks: dict  # segid -> (new watermark, flags to add)
    close_after: list  # SegmentWriters to close once sealed


class Committer:
    """Group commit for one process (see the module docstring)."""

    def __init__(self, store, name: str, on_indexed=None):
        self.store = store
        self.name = name
        self.on_indexed = on_indexed
        self.settings = store.settings
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"fp-commit-{name}")
        self._ix = ThreadPoolExecutor(1, thread_name_prefix=f"fp-index-{name}")
        self._queue: list[_Pending] = []
        self._flushing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seg: SegmentWriter | None = None  # I/O thread only
        self._seg_broken = False  # I/O thread only
        self._backlog: collections.deque = collections.deque()  # loop appends, index thread pops
        self._backlog_len = 0
        self._index_busy = False  # an index round is scheduled, submitted or running
        self._index_handle = None  # the INDEX_DELAY timer of the next round
        self._retry_handle = None
        self._id_lock = threading.Lock()
        self._id_blocks: collections.deque = collections.deque()
        self._id_next = 0
        self._id_end = 0
        self._refilling = False
        self._reserve_ids(synchronous=True)
        self._closed = False
        self._inflight: set = set()
        #: statistics: batches, messages, bytes written
        self.batches = 0
        self.messages = 0
        #: index transactions (each covers every batch waiting when it started)
        self.index_rounds = 0

    # -- queue IDs ------------------------------------------------------------------------

    def _reserve_ids(self, synchronous: bool = False) -> None:
        """Take a block of queue numbers from the index (a durable transaction)."""
        try:
            first = self.store.reserve_numbers(ID_BLOCK)
            with self._id_lock:
                self._id_blocks.append((first, first + ID_BLOCK))
        finally:
            self._refilling = False  # a failed refill is retried; a dry block reserves in line

    def new_queue_id(self) -> str:
        """Return a fresh queue ID (the time now, a number nobody else has)."""
        while True:
            with self._id_lock:
                if self._id_next >= self._id_end and self._id_blocks:
                    self._id_next, self._id_end = self._id_blocks.popleft()
                if self._id_next < self._id_end:
                    number = self._id_next
                    self._id_next += 1
                    refill = (not self._refilling and not self._id_blocks
                              and self._id_end - self._id_next < ID_BLOCK // 4)
                    if refill:
                        self._refilling = True
                    break
            self._reserve_ids(synchronous=True)  # ran dry before the refill came back
        if refill:
            self._io.submit(self._reserve_ids)
        now = time.time()
        sec = int(now)
        return make_id(self.settings.long_queue_ids, sec, int((now - sec) * 1_000_000), number)

    def builder(self) -> MessageBuilder:
        """Start a message: a builder that already has its queue ID."""
        if self._closed:
            raise RuntimeError("committer is closed")
        qid = self.new_queue_id()
        while self.store.exists(qid):  # only an imported Postfix ID can be in the way
            qid = self.new_queue_id()
        return MessageBuilder(self, qid, self.settings.line_length_limit,
                              self.settings.large_message_size)

    async def run_io(self, fn, *args):
        """Run blocking file work in the committer's I/O thread."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- commit ---------------------------------------------------------------------------

    async def commit(self, builder: MessageBuilder, state: int = ix.INCOMING) -> str:
        """Make the message durable; return its queue ID once it is on disk.

        InsufficientStorage (full disk) or OSError: nothing of the message was kept.
        """
        if self._closed:
            raise RuntimeError("committer is closed")
        if builder.committer is not self:
            raise ValueError("builder belongs to another committer")
        if builder.state != "open":
            raise RuntimeError(f"message {builder.queue_id} is {builder.state}")
        if state not in ix.STATE_NAMES:
            raise ValueError(f"bad queue state {state}")
        if self._backlog_len > MAX_INDEX_BACKLOG:
            builder.abort()
            raise InsufficientStorage(28, "queue index is not writable: too many messages waiting to be indexed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        qfb = builder.records
        qfb.finish()
        builder.state = "committing"
        info = ix.MessageInfo(
            builder.queue_id, state, 0, 0, 0, 0, qfb.arrival or time.time(), 0.0,
            qfb.xtra_offset - qfb.data_offset, qfb.sender or "",
            [ix.RcptInfo(r.offset, r.address, ix.RCPT_DONE if r.done else ix.RCPT_PENDING)
             for r in qfb.recipients],
        )
        if builder.large is None:
            chunks = qfb.take_chunks()
            chunks[0] = qfb.size_record()
            qid = builder.queue_id.encode("ascii")
            buffers = frame_bytes(KIND_MESSAGE, state, qid, chunks)
            length = sum(len(b) for b in buffers)
        else:
            buffers, length = None, 0
            info.flags |= ix.FLAG_LARGE
        fut = loop.create_future()
        pending = _Pending(builder, info, buffers, length, fut)
        self._queue.append(pending)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._start_flush)
        try:
            return await fut
        except asyncio.CancelledError:
            # The caller went away. A message not yet handed to a flush is dropped; one
            # being written is finished and queued anyway (as Postfix's cleanup does
            # when the client disconnects after the final dot).
            if pending in self._queue:
                self._queue.remove(pending)
                builder.state = "open"
                builder.abort()
            raise

    def _start_flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            self._flushing = False
            return
        fut = self._loop.run_in_executor(self._io, self._flush, batch)
        self._inflight.add(fut)
        fut.add_done_callback(lambda f, b=batch: self._flushed(f, b))

    def _flushed(self, fut, batch) -> None:
        self._inflight.discard(fut)
        try:
            results, job = fut.result()
        except BaseException as exc:  # a bug in the flush: fail the batch loudly
            log.warn("queue commit failed: %s", exc)
            for p in batch:
                p.builder.state = "open"
                p.builder.abort()
                if not p.future.done():
                    p.future.set_exception(exc)
            results, job = None, None
        if results is not None:
            for p, res in zip(batch, results):
                if isinstance(res, BaseException):
                    p.builder.state = "open"
                    p.builder.abort()  # nothing of it was kept: remove its own file, if any
                    if not p.future.done():
                        p.future.set_exception(res)
                else:
                    p.builder.state = "committed"
                    if not p.future.done():
                        p.future.set_result(p.info.queue_id)
            self.batches += 1
            self.messages += sum(1 for r in results if not isinstance(r, BaseException))
        if job is not None and (job.infos or job.watermarks or job.close_after):
            self._submit_index(job)
        # the next batch formed while this one was written
        if self._queue:
            self._start_flush()
        else:
            self._flushing = False

    # -- the I/O thread ---------------------------------------------------------------------

    def _segment(self) -> SegmentWriter:
        """Return the segment to append to, rolling it when full or broken."""
        seg = self._seg
        if seg is not None and not self._seg_broken and seg.size < self.settings.segment_size:
            return seg
        new = self.store.new_segment()
        self._seg = new
        self._seg_broken = False
        if seg is not None:
            self._rolled.append(seg)
        return new

    def _flush(self, batch: list) -> tuple[list, _IndexJob]:
        self._rolled: list = []
        results: list = [None] * len(batch)
        job = _IndexJob([], {}, [])
        small = []
        for i, p in enumerate(batch):
            if p.buffers is None:
                try:
                    large = p.builder.large
                    qfb = p.builder.records
                    segid, off, length = large.finish(p.info.state, qfb.size_record(), qfb.take_chunks())
                except OSError as exc:
                    results[i] = exc
                    continue
                p.info.segid, p.info.offset, p.info.length = segid, off, length
                job.infos.append(p.info)
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
                buffers.extend(p.buffers)
                pos += p.length
            buffers.append(batch_frame(seg.size, len(small)))
            crashpoint.reached("commit.before_write")
            try:
                seg.append(buffers, crash="commit")
            except OSError as exc:
                self._seg_broken = True
                for i in small:
                    results[i] = exc
            else:
                for p, off in placed:
                    p.info.segid, p.info.offset, p.info.length = seg.segid, off, p.length
                    job.infos.append(p.info)
                for i in small:
                    results[i] = True
                job.watermarks[seg.segid] = (seg.size, 0)
        for old in self._rolled:
            job.watermarks[old.segid] = (old.size, ix.SEGF_SEALED | job.watermarks.get(old.segid, (0, 0))[1])
            job.close_after.append(old)
        return results, job

    # -- the index thread -------------------------------------------------------------------

    def _submit_index(self, job: _IndexJob | None) -> None:
        """Queue a batch for the index; at most one index transaction runs at a time.

        Batches that arrive while one runs wait in the backlog and are then indexed
        together in one transaction (one fdatasync of the index for all of them): under
        load the index costs one transaction per index round, not one per commit batch.
        """
        if job is not None:
            self._backlog.append(job)  # deque: appended here, popped by the index thread
            self._backlog_len += 1
        if self._index_busy:
            return
        self._index_busy = True
        if job is not None and INDEX_DELAY > 0 and not self._closed:
            self._index_handle = self._loop.call_later(INDEX_DELAY, self._start_index)
        else:
            self._start_index()

    def _start_index(self) -> None:
        self._index_handle = None
        fut = self._loop.run_in_executor(self._ix, self._index, None)
        self._inflight.add(fut)
        fut.add_done_callback(self._indexed)

    def _index(self, job: _IndexJob | None):
        if job is not None:
            self._backlog.append(job)
        count = len(self._backlog)
        if not count:
            return [], 0, None
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
                return [], 0, exc
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
                return done_ids, applied, exc
            self._backlog.popleft()
            applied += 1
            self.index_rounds += 1
            for w in job.close_after:
                w.close()
            done_ids.extend(i.queue_id for i in job.infos)
        return done_ids, applied, None

    def _indexed(self, fut) -> None:
        self._inflight.discard(fut)
        self._index_busy = False
        try:
            done_ids, applied, exc = fut.result()
        except BaseException as exc2:  # a bug: log it loudly, keep the backlog for retry
            log.warn("queue index update failed: %s", exc2)
            done_ids, applied, exc = [], 0, exc2
        self._backlog_len -= applied
        if exc is not None:
            log.warn("cannot update the queue index (%s); %d batch(es) wait and will be retried",
                     exc, self._backlog_len)
            if self._retry_handle is None and not self._closed:
                self._retry_handle = self._loop.call_later(INDEX_RETRY, self._retry_index)
        elif self._backlog and not self._closed:
            self._submit_index(None)  # batches that came while this round ran
        if done_ids and self.on_indexed is not None:
            self.on_indexed(done_ids)

    def _retry_index(self) -> None:
        self._retry_handle = None
        self._submit_index(None)

    # -- shutdown ---------------------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything committed so far is written and indexed.

        Return False if ``timeout`` seconds passed first (the index stayed unwritable).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._flushing or self._inflight or self._backlog_len:
            if deadline is not None and time.monotonic() > deadline:
                return False
            if self._index_handle is not None:  # no reason to wait for company now
                self._index_handle.cancel()
                self._start_index()
            if self._inflight:
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
            else:
                await asyncio.sleep(0.02 if self._backlog_len else 0)
        return True

    async def close(self) -> None:
        """Finish in-flight work, seal the current segment and stop the threads."""
        if self._closed:
            return
        if not await self.drain(timeout=30):
            log.warn("closing with %d batch(es) not indexed; recovery will index them", self._backlog_len)
        self._closed = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        loop = asyncio.get_running_loop()
        seg = self._seg
        self._seg = None
        if seg is not None:
            job = _IndexJob([], {seg.segid: (seg.size, ix.SEGF_SEALED)}, [seg])
            self._loop = loop
            self._backlog_len += 1
            done_ids, applied, exc = await loop.run_in_executor(self._ix, self._index, job)
            self._backlog_len -= applied
            if exc is not None:
                log.warn("cannot seal segment %016x (%s); recovery will", seg.segid, exc)
                seg.close()
        self._io.shutdown(wait=True)
        self._ix.shutdown(wait=True)

    @property
    def segment_id(self) -> int | None:
        """The segment currently appended to (for tests and diagnostics)."""
        return self._seg.segid if self._seg is not None else None

