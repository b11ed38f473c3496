"""The queue store: segments + index, recovery, reading, editing, compaction.

Postfix counterpart: the queue directory tree and everything that manipulates it:
src/global/mail_queue.c, mail_open_ok.c, src/qmgr/qmgr_active.c (moving files between
queues), src/postsuper/postsuper.c (repair, delete, hold), src/cleanup (writing).

Layout under $queue_directory:

    segments/<id>.seg   append-only segment files (segment.py)
    index/              the LMDB index (index.py)

Invariants (docs/queue.md explains them at length):
  1. A message is acknowledged only after the batch holding it was fdatasync'ed.
  2. Every frame of a segment before its watermark is reflected in the index; every
     intact MESSAGE frame after it is replayed into the index by recovery exactly once
     (its queue ID is its key), COPY frames after it are ignored.
  3. A sealed segment gets no more frames; it is removed when no live message is
     located in it (renamed to .dead before its index entry goes).
  4. A segment that a live process appends to is flock'ed; recovery only touches
     segments whose lock it can take.
  5. Queue states, flags, recipient status and logs live only in the index; changing
     them is one LMDB transaction.

Opening a store recovers every segment no live process owns: torn batch tails are cut
off (they were never acknowledged), frames beyond the watermark are indexed, damaged
frames go to the corrupt queue with a warning, empty sealed segments are reclaimed,
leftover temporary files removed.

Parameters: queue_directory, enable_long_queue_ids, line_length_limit,
hash_queue_names, hash_queue_depth, fastpost_queue_* (see QueueSettings).
Diagnostics: warnings (fastpost.util.log) for everything recovery repairs;
QueueError for a missing message or a store that cannot be opened;
CorruptMessage when a message fails its checks on read (it is then moved to corrupt);
InsufficientStorage for a full disk.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import time
import zlib
from dataclasses import dataclass, field

import lmdb

from fastpost.mail.queue import crashpoint
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.commitrec import insert_records
from fastpost.mail.queue.message import CorruptQueueFile, ParsedMessage, mark_done, parse, read_records
from fastpost.mail.queue.queue_id import number_of
from fastpost.mail.queue.segment import (
    FRAME_HEADER_LEN, KIND_COPY, KIND_MESSAGE, SEG_FLAG_LARGE, SEG_HEADER_LEN, CorruptFrame,
    InsufficientStorage, SegmentWriter, batch_frame, frame_bytes, fsync_dir, lock_nb,
    parse_frame_header, parse_segment_name, prezero_helps, read_frame, read_seg_header, scan, segment_name,
    storage_error,
)
from fastpost.util import log

#: The first queue number: IDs then have Postfix's usual length (5 + 6 hex digits).
FIRST_NUMBER = 0x100000

STATE_NAMES = ix.STATE_NAMES
STATE_CODES = ix.STATE_CODES


class QueueError(Exception):
    """A queue operation that cannot be done (missing message, unusable store)."""


class CorruptMessage(QueueError):
    """A message whose stored bytes fail their checks; it was moved to corrupt."""


@dataclass
class QueueSettings:
    """The store's parameters, typed (from main.cf through from_config())."""

    queue_directory: str
    long_queue_ids: bool = False
    line_length_limit: int = 2048
    segment_size: int = 64 << 20
    large_message_size: int = 1 << 20
    segment_prezero: int = 4 << 20
    index_map_size: int = 64 << 30
    compact_age: int = 3600
    compact_ratio: int = 50
    hash_queue_names: tuple = ("deferred", "defer")
    hash_queue_depth: int = 1

    @classmethod
    def from_config(cls, cfg, queue_directory: str | None = None) -> "QueueSettings":
        return cls(
            queue_directory=queue_directory or cfg.get("queue_directory"),
            long_queue_ids=cfg.get_bool("enable_long_queue_ids"),
            line_length_limit=cfg.get_int("line_length_limit"),
            segment_size=cfg.get_int("fastpost_queue_segment_size"),
            large_message_size=cfg.get_int("fastpost_queue_large_message_size"),
            segment_prezero=cfg.get_int("fastpost_queue_segment_prezero"),
            index_map_size=cfg.get_int("fastpost_queue_index_map_size"),
            compact_age=cfg.get_time("fastpost_queue_compact_age"),
            compact_ratio=cfg.get_int("fastpost_queue_compact_ratio"),
            hash_queue_names=tuple(cfg.get_list("hash_queue_names")),
            hash_queue_depth=cfg.get_int("hash_queue_depth"),
        )


@dataclass
class RecoveryReport:
    """What recover() did (also logged as warnings)."""

    segments_scanned: int = 0
    messages_indexed: int = 0
    torn_bytes: int = 0
    corrupt: list = field(default_factory=list)  # queue IDs moved to corrupt
    reclaimed: int = 0
    temp_removed: int = 0
    skipped_locked: int = 0


@dataclass
class CompactReport:
    """What compact() did."""

    segments: int = 0  # segments emptied
    messages: int = 0  # messages copied forward
    bytes: int = 0  # frame bytes copied


class QueueStore:
    """A queue directory's store; see the module docstring. Not fork-safe: open after fork."""

    def __init__(self, settings: QueueSettings, index: ix.Index):
        self.settings = settings
        self.index = index
        self.segment_dir = os.path.join(settings.queue_directory, "segments")
        self._fds: dict[int, int] = {}  # read-only segment fds, by segment id
        self._closed = False
        self._prezero_helps: bool | None = None  # prezero_helps(segment_dir), asked once
        self.recovery: RecoveryReport | None = None  # what open() repaired

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, queue_directory: str | None = None, cfg=None, *, settings: QueueSettings | None = None,
             recover: bool = True, readonly: bool = False) -> "QueueStore":
        """Open (creating if needed) the store of a queue directory and recover it."""
        if settings is None:
            if cfg is None:
                if queue_directory is None:
                    raise QueueError("QueueStore.open needs a queue directory, a Config or settings")
                settings = QueueSettings(queue_directory)
            else:
                settings = QueueSettings.from_config(cfg, queue_directory)
        qdir = settings.queue_directory
        try:
            if not readonly:
                os.makedirs(os.path.join(qdir, "segments"), mode=0o700, exist_ok=True)
                os.makedirs(os.path.join(qdir, "index"), mode=0o700, exist_ok=True)
            index = ix.Index(os.path.join(qdir, "index"), settings.index_map_size, readonly=readonly)
        except OSError as exc:
            raise storage_error(exc, f"open queue {qdir}") from None
        except lmdb.Error as exc:
            raise QueueError(f"cannot open the queue index {qdir}/index: {exc}") from None
        store = cls(settings, index)
        if recover and not readonly:
            store.recovery = store.recover()
        if not readonly:
            store._writable = True
            _give_to_owner(qdir)
        return store

    def close(self) -> None:
        """Close segment files and the index."""
        if self._closed:
            return
        if getattr(self, "_writable", False):
            _give_to_owner(self.settings.queue_directory)
        self._closed = True
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self.index.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- allocation (used by committers) ----------------------------------------------------

    def _write_sync(self, fn):
        """Run fn(txn) in a write transaction and force it to disk."""
        try:
            with self.index.write() as txn:
                result = fn(txn)
            self.index.sync()
        except lmdb.Error as exc:
            raise self.index_error(exc) from None
        return result

    def index_error(self, exc: lmdb.Error) -> Exception:
        """The error to raise for an LMDB error of this store's index (_index_error)."""
        return _index_error(exc, self.index.path)

    def reserve_numbers(self, count: int) -> int:
        """Reserve ``count`` queue numbers; return the first (durable before return)."""
        return self._write_sync(lambda txn: self.index.reserve(txn, b"next_number", count, FIRST_NUMBER))

    def numbers_txn(self, fn):
        """Run fn(txn) in one durable write transaction of the index and return its
        result: a choice of queue IDs against the number counter that must not
        interleave with committers' reservations (importer._choose_ids)."""
        return self._write_sync(fn)

    def raise_numbers(self, above: int) -> None:
        """Make sure no future queue number is <= ``above`` (imported IDs keep theirs)."""
        self._write_sync(lambda txn: self.index.raise_counter(txn, b"next_number", above))

    def allocate_segid(self) -> int:
        """Return a new segment id (durable before return)."""
        return self._write_sync(lambda txn: self.index.reserve(txn, b"next_segid", 1, 1))

    def new_segment(self, flags: int = 0, prezero: bool = False) -> SegmentWriter:
        """Create, lock and publish a new segment file.

        ``prezero``: the committer's segments keep zeros written ahead of their logical
        end (segment.py), where the file system gains from it and the parameter is set.
        """
        step = 0
        if prezero and self.settings.segment_prezero > 0:
            if self._prezero_helps is None:
                self._prezero_helps = prezero_helps(self.segment_dir)
            if self._prezero_helps:
                step = self.settings.segment_prezero
        for _ in range(100):
            segid = self.allocate_segid()
            try:
                return SegmentWriter(self.segment_dir, segid, flags, prezero=step,
                                     limit=self.settings.segment_size)
            except FileExistsError:
                continue  # the counter went back (index restored?): skip used ids
        raise QueueError("cannot allocate a segment id: 100 collisions")

    def prepare_index(self, space_ok=None) -> int:
        """Zeros ahead of the index's last page (index.py, Index.prepare()), under the
        same rule as the segments' (the parameter set, a file system where overwriting
        saves a journal commit); return the bytes added."""
        if self.settings.segment_prezero <= 0 or self.index is None:
            return 0
        if self._prezero_helps is None:
            self._prezero_helps = prezero_helps(self.segment_dir)
        return self.index.prepare(space_ok) if self._prezero_helps else 0

    def committer(self, name: str = "cleanup", on_indexed=None):
        """Return a Committer for this process (see committer.py)."""
        from fastpost.mail.queue.committer import Committer

        return Committer(self, name, on_indexed)

    def index_batch(self, infos: list, watermarks: dict) -> None:
        """Insert newly written messages and advance segment watermarks, atomically.

        ``infos``: MessageInfo objects (recovery), or the committer's CommitRec
        records (commitrec.insert_records writes the same entries from them)."""
        reclaim = []
        with self.index.write() as txn:
            if infos and not isinstance(infos[0], ix.MessageInfo):
                dups, live, states = insert_records(txn, infos, self.index)
                for state, n in states.items():
                    self.index.add_counter(txn, b"n:" + bytes((state,)), n)
            else:
                dups, live = self.index.insert_many(txn, infos)
            for info in dups:
                log.warn("%s: queue ID already in the index; duplicate frame ignored", info.queue_id)
            # one get and one put per segment: its new live totals and its watermark
            for segid in live.keys() | watermarks.keys():
                mark = watermarks.get(segid)
                seg = self.index.segment(txn, segid)
                if seg is None:
                    seg = ix.SegmentInfo(segid, created=time.time() if mark is not None else 0.0)
                n, nbytes = live.get(segid, (0, 0))
                if n:
                    seg.live = max(0, seg.live + n)
                    seg.live_bytes = max(0, seg.live_bytes + nbytes)
                if mark is not None:
                    if not seg.created:
                        seg.created = time.time()
                    seg.watermark = max(seg.watermark, mark[0])
                    seg.flags |= mark[1]
                self.index.put_segment(txn, seg)
                if mark is not None and seg.sealed and seg.live == 0:
                    reclaim.append(segid)
        for segid in reclaim:
            self.reclaim_segment(segid)

    # -- recovery ---------------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Bring the index in line with the segment files (see the module docstring)."""
        report = RecoveryReport()
        try:
            names = sorted(os.listdir(self.segment_dir))
        except FileNotFoundError:
            return report
        present = set()
        segids = [p[0] for p in map(parse_segment_name, names) if p is not None]
        if segids:
            with self.index.read() as txn:
                behind = self.index.counter(txn, b"next_segid") <= max(segids)
            if behind:  # an index rebuilt from scratch: never reuse a segment id
                self._write_sync(lambda txn: self.index.raise_counter(txn, b"next_segid", max(segids)))
        for name in names:
            parsed = parse_segment_name(name)
            if parsed is None:
                continue
            segid, suffix = parsed
            path = os.path.join(self.segment_dir, name)
            if suffix == ".tmp":
                if self._remove_if_unlocked(path):
                    report.temp_removed += 1
            elif suffix == ".dead":
                self._finish_reclaim(segid, path)
                report.reclaimed += 1
            elif suffix == ".seg":
                present.add(segid)
                self._recover_segment(segid, path, report)
        # index entries of segments whose file is gone
        with self.index.read() as txn:
            orphans = [s for s in self.index.segments(txn) if s.segid not in present]
        for seg in orphans:
            if os.path.exists(os.path.join(self.segment_dir, segment_name(seg.segid, ".tmp"))):
                continue  # being created or spilled right now
            if seg.live == 0:
                with self.index.write() as txn:
                    self.index.drop_segment(txn, seg.segid)
            else:
                log.warn("queue segment %016x is missing but the index places %d message(s) in it",
                         seg.segid, seg.live)
        return report

    def _remove_if_unlocked(self, path: str) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            if not lock_nb(fd):
                return False
            os.unlink(path)
            return True
        finally:
            os.close(fd)

    def _recover_segment(self, segid: int, path: str, report: RecoveryReport) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            if not lock_nb(fd):
                report.skipped_locked += 1
                return
            size = os.fstat(fd).st_size
            with self.index.read() as txn:
                seg = self.index.segment(txn, segid)
            if seg is not None and seg.sealed and seg.watermark < size and seg.watermark >= SEG_HEADER_LEN:
                # A sealed watermark is the segment's final logical end: what lies past
                # it (zeros ahead, or a failed batch that could not be removed) was
                # never acknowledged and is never read as data.
                os.ftruncate(fd, seg.watermark)
                os.fsync(fd)
                size = seg.watermark
            if seg is not None and seg.sealed and seg.watermark >= size:
                if seg.live == 0:
                    os.close(fd)
                    fd = -1
                    self.reclaim_segment(segid)
                    report.reclaimed += 1
                return
            header = read_seg_header(os.pread(fd, SEG_HEADER_LEN, 0))
            if header is None or header[0] != segid:
                log.warn("queue segment %s: bad file header; left alone", path)
                return
            flags = ix.SEGF_SEALED | (ix.SEGF_LARGE if header[2] & SEG_FLAG_LARGE else 0)
            start = seg.watermark if seg is not None and seg.watermark >= SEG_HEADER_LEN else SEG_HEADER_LEN
            report.segments_scanned += 1
            result = scan(path, start)
            if result.torn:
                log.warn("queue segment %016x: discarding %d bytes of an unfinished batch at offset %d",
                         segid, result.torn, result.good_end)
                report.torn_bytes += result.torn
            if result.size > result.good_end:  # the torn tail, and zeros written ahead
                os.ftruncate(fd, result.good_end)
                os.fsync(fd)
            for off, length in result.garbage:
                log.warn("queue segment %016x: %d unreadable bytes at offset %d skipped", segid, length, off)
            crashpoint.reached("recover.before_index")
            infos = []
            with self.index.read() as txn:
                for batch in result.batches:
                    for frame in batch:
                        if frame.kind != KIND_MESSAGE or self.index.exists(txn, frame.queue_id):
                            continue
                        infos.append(self._replayed_info(fd, segid, frame, report))
            numbers = [n for n in (number_of(i.queue_id) for i in infos) if n is not None]
            if numbers:  # an index rebuilt from scratch must not hand out these numbers again
                self.raise_numbers(max(numbers))
            self.index_batch(infos, {segid: (result.good_end, flags)})
            report.messages_indexed += len(infos)
        finally:
            if fd >= 0:
                os.close(fd)

    def _replayed_info(self, fd: int, segid: int, frame, report: RecoveryReport) -> ix.MessageInfo:
        """Return the index entry for a frame found beyond a watermark."""
        reason = None
        if frame.payload_ok:
            payload = os.pread(fd, frame.length - (frame.payload_offset - frame.offset), frame.payload_offset)
            try:
                parsed = parse(payload)
            except CorruptQueueFile as exc:
                reason = str(exc)
            else:
                return ix.MessageInfo(
                    frame.queue_id, frame.state if frame.state in ix.STATE_NAMES else ix.INCOMING,
                    0, segid, frame.offset, frame.length, parsed.arrival, 0.0, parsed.size,
                    parsed.sender or "",
                    [ix.RcptInfo(r.offset, r.address, ix.RCPT_DONE if r.done else ix.RCPT_PENDING)
                     for r in parsed.recipients],
                )
        else:
            reason = "checksum mismatch"
        log.warn("%s: corrupt queue file (%s): moved to the corrupt queue", frame.queue_id, reason)
        report.corrupt.append(frame.queue_id)
        return ix.MessageInfo(frame.queue_id, ix.CORRUPT, 0, segid, frame.offset, frame.length,
                              time.time(), 0.0, 0, "", [])

    # -- reclaiming -------------------------------------------------------------------------

    def reclaim_segment(self, segid: int) -> bool:
        """Remove a sealed segment that holds no live message; False if it does."""
        with self.index.read() as txn:
            seg = self.index.segment(txn, segid)
        if seg is None or not seg.sealed or seg.live:
            return False
        path = os.path.join(self.segment_dir, segment_name(segid))
        dead = os.path.join(self.segment_dir, segment_name(segid, ".dead"))
        try:
            os.rename(path, dead)
            fsync_dir(self.segment_dir)
        except FileNotFoundError:
            pass  # someone else reclaims it, or it is already gone
        crashpoint.reached("reclaim.after_rename")
        self._finish_reclaim(segid, dead)
        fd = self._fds.pop(segid, None)
        if fd is not None:
            os.close(fd)
        return True

    def _finish_reclaim(self, segid: int, dead: str) -> None:
        with self.index.write() as txn:
            seg = self.index.segment(txn, segid)
            if seg is not None and seg.live:
                log.warn("queue segment %016x was being removed but holds %d live message(s); kept",
                         segid, seg.live)
                os.rename(dead, os.path.join(self.segment_dir, segment_name(segid)))
                return
            self.index.drop_segment(txn, segid)
        try:
            os.unlink(dead)
        except FileNotFoundError:
            pass

    def reclaim(self) -> int:
        """Remove every sealed segment without live messages; return how many."""
        with self.index.read() as txn:
            empty = [s.segid for s in self.index.segments(txn) if s.sealed and s.live == 0]
        return sum(1 for segid in empty if self.reclaim_segment(segid))

    # -- reading ----------------------------------------------------------------------------

    def get(self, queue_id: str, recipients: bool = True) -> ix.MessageInfo | None:
        """Return a message's index entry, or None (``recipients=False``: without the
        recipient list, see Index.get)."""
        with self.index.read() as txn:
            return self.index.get(txn, queue_id, recipients)

    def recipients(self, queue_id: str, offset: int = 0, count: int | None = None,
                   live_only: bool = False) -> list:
        """Up to ``count`` of a message's recipients (RcptInfo) in offset order from
        ``offset`` (``live_only``: not done), read a chunk at a time."""
        out = []
        with self.index.read() as txn:
            for r in self.index.recipients_from(txn, queue_id, offset):
                if live_only and r.status == ix.RCPT_DONE:
                    continue
                if count is not None and len(out) >= count:
                    break
                out.append(r)
        return out

    def iter_recipients(self, queue_id: str, offset: int = 0, live_only: bool = False,
                        batch: int = ix.RCPT_CHUNK):
        """Yield a message's recipients (RcptInfo) in offset order from ``offset``, in
        bounded memory: each ``batch`` is read in a read transaction of its own and the
        walk resumes after the last offset, so no snapshot is pinned while the caller
        works (a recipient marked meanwhile shows its new status; a message deleted
        meanwhile just ends)."""
        while True:
            part = []
            with self.index.read() as txn:
                for r in self.index.recipients_from(txn, queue_id, offset):
                    part.append(r)
                    if len(part) >= batch:
                        break
            for r in part:
                if not (live_only and r.status == ix.RCPT_DONE):
                    yield r
            if len(part) < batch:
                return
            offset = part[-1].offset + 1

    def iter_logs(self, queue_id: str, kind: str = "defer", batch: int = 256):
        """Yield a message's log blocks (bytes) oldest first, ``batch`` per read
        transaction (bounded memory for a log with one block per recipient)."""
        prefix = ix.log_prefix(queue_id, ix.LOG_KINDS[kind])
        key = prefix
        first = True
        while True:
            part = []
            with self.index.read() as txn:
                cur = txn.cursor(db=self.index.log)
                if not cur.set_range(key):
                    return
                if not first and cur.key() == key and not cur.next():
                    return
                for k, value in cur:
                    if not k.startswith(prefix):
                        break
                    part.append(bytes(value))
                    key = bytes(k)
                    if len(part) >= batch:
                        break
            first = False
            yield from part
            if len(part) < batch:
                return

    def has_log(self, queue_id: str, kind: str = "defer") -> bool:
        prefix = ix.log_prefix(queue_id, ix.LOG_KINDS[kind])
        with self.index.read() as txn:
            cur = txn.cursor(db=self.index.log)
            return cur.set_range(prefix) and bytes(cur.key()).startswith(prefix)

    def exists(self, queue_id: str) -> bool:
        # Index.exists in a read transaction of its own, without the two method calls
        # (the committer asks this once per message: Committer.builder)
        idx = self.index
        with idx.env.begin(db=idx.msg) as txn:
            return txn.get(queue_id.encode("ascii")) is not None

    def _segment_fd(self, segid: int) -> int:
        fd = self._fds.get(segid)
        if fd is None:
            path = os.path.join(self.segment_dir, segment_name(segid))
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise CorruptFrame(f"segment file {path} is missing", 0) from None
            if len(self._fds) >= 64:
                old_id, old_fd = next(iter(self._fds.items()))
                del self._fds[old_id]
                os.close(old_fd)
            self._fds[segid] = fd
        return fd

    def read(self, queue_id: str, info: ix.MessageInfo | None = None) -> bytes:
        """Return the message as a Postfix queue file (the bytes the committer stored).

        QueueError if there is no such message; CorruptMessage (after moving it to the
        corrupt queue, with a warning) when its stored bytes fail their checks.
        """
        # where the bytes are is in the msg entry: the recipient list is not read
        info = info or self.get(queue_id, recipients=False)
        if info is None:
            raise QueueError(f"{queue_id}: no such message")
        try:
            frame, payload = read_frame(self._segment_fd(info.segid), info.offset, info.length)
            if frame.queue_id != queue_id:
                raise CorruptFrame(f"frame holds {frame.queue_id}, not {queue_id}", info.offset)
        except CorruptFrame as exc:
            self._to_corrupt(queue_id, str(exc))
            raise CorruptMessage(f"{queue_id}: {exc}") from None
        return payload

    def stream(self, queue_id: str, chunk: int = 1 << 20):
        """Yield the stored queue file in chunks (for large messages: bounded memory).

        The frame's checks run as it is read: a bad header fails before the first chunk,
        a payload checksum mismatch after the last (the caller must then discard what it
        sent); either moves the message to corrupt and raises CorruptMessage.
        """
        info = self.get(queue_id)
        if info is None:
            raise QueueError(f"{queue_id}: no such message")
        fd = self._segment_fd(info.segid)
        qid = queue_id.encode("ascii")
        head = os.pread(fd, FRAME_HEADER_LEN + len(qid), info.offset)
        fields = parse_frame_header(head, 0, len(head), check_length=False)
        if fields is None or head[FRAME_HEADER_LEN:] != qid or \
                FRAME_HEADER_LEN + len(qid) + fields[4] != info.length:
            self._to_corrupt(queue_id, "bad frame header")
            raise CorruptMessage(f"{queue_id}: bad frame header")
        plen, pcrc = fields[4], fields[5]
        pos = info.offset + len(head)
        end = pos + plen
        crc = 0
        while pos < end:
            block = os.pread(fd, min(chunk, end - pos), pos)
            if not block:
                break
            crc = zlib.crc32(block, crc)
            pos += len(block)
            yield block
        if pos != end or crc != pcrc:
            self._to_corrupt(queue_id, "checksum mismatch")
            raise CorruptMessage(f"{queue_id}: checksum mismatch")

    def read_range(self, info: ix.MessageInfo, offset: int, length: int) -> bytes:
        """Bytes ``offset``..``offset + length`` of a message's queue file (fewer at its
        end), read in place without the frame's checksum: for a reader that verified
        the message once (store.read) and now wants a part of it again (qmgr's next
        recipient slice)."""
        head = FRAME_HEADER_LEN + len(info.queue_id)
        size = info.length - head
        if offset < 0 or offset >= size:
            return b""
        return os.pread(self._segment_fd(info.segid), min(length, size - offset),
                        info.offset + head + offset)

    def _to_corrupt(self, queue_id: str, reason: str) -> None:
        log.warn("%s: corrupt queue file (%s): moved to the corrupt queue", queue_id, reason)
        with self.edit() as ed:
            ed.set_state(queue_id, ix.CORRUPT)

    def export(self, queue_id: str) -> bytes:
        """Return the message as a Postfix queue file with its finished recipients as D."""
        info = self.get(queue_id, recipients=False)
        if info is None:
            raise QueueError(f"{queue_id}: no such message")
        data = self.read(queue_id, info)
        done = array.array("Q")  # only offsets, 8 bytes each, never the recipient list
        if info.live < info.nrcpt:
            done.extend(r.offset for r in self.iter_recipients(queue_id) if r.status == ix.RCPT_DONE)
        return mark_done(data, done) if done else data

    def records(self, queue_id: str) -> list[tuple[int, int, bytes]]:
        """Return the message's records (offset, type, payload), pointers followed."""
        return list(read_records(self.read(queue_id)))

    def parsed(self, queue_id: str) -> ParsedMessage:
        """Return the message's envelope, recipients and section offsets (message.parse)."""
        return parse(self.read(queue_id))

    def requeue_active(self) -> int:
        """Move every active message back to incoming (what qmgr does when it starts)."""
        moved = 0
        while True:
            batch = [m.queue_id for m, _ in zip(self.messages([ix.ACTIVE], recipients=False), range(1000))]
            if not batch:
                return moved
            with self.edit() as ed:
                for qid in batch:
                    moved += ed.set_state(qid, ix.INCOMING)

    def logs(self, queue_id: str, kind: str = "defer") -> list[bytes]:
        """Return a message's bounce/defer/trace log entries, oldest first."""
        with self.index.read() as txn:
            return self.index.logs(txn, queue_id, ix.LOG_KINDS[kind])

    def counts(self) -> dict[str, int]:
        """Return the number of messages in each queue state."""
        with self.index.read() as txn:
            return {ix.STATE_NAMES[k]: v for k, v in self.index.state_counts(txn).items()}

    def messages(self, states=None, *, batch: int = 1000, recipients: bool = True):
        """Yield MessageInfo by state (Postfix's showq order) and due time, in bounded memory
        (``recipients=False``: without their recipient lists).

        Each ``batch`` entries are read in their own read transaction, which goes on from
        one state to the next; iteration resumes after the last key, so a long listing
        never pins an old snapshot. A queue of fewer than ``batch`` messages is therefore
        listed from one snapshot: a message that changes state meanwhile is listed once.
        (A longer listing may list such a message twice, or not at all, as a walk of
        Postfix's queue directories may.)
        """
        codes = list(ix.LIST_ORDER if states is None else [
            s if isinstance(s, int) else ix.STATE_CODES[s] for s in states])
        pos = 0  # index into codes of the state being read
        key = bytes((codes[0],)) if codes else b""
        after = False  # key was already yielded: resume after it
        while pos < len(codes):
            chunk = []
            with self.index.read() as txn:
                cur = txn.cursor(db=self.index.due)
                while pos < len(codes) and len(chunk) < batch:
                    prefix = bytes((codes[pos],))
                    found = cur.set_range(key)
                    if found and after and cur.key() == key:
                        found = cur.next()
                    while found:
                        k = cur.key()
                        if not k.startswith(prefix):
                            break
                        info = self.index.get(txn, k[9:].decode("ascii"), recipients)
                        if info is not None:
                            chunk.append(info)
                        key, after = bytes(k), True
                        if len(chunk) >= batch:
                            break
                        found = cur.next()
                    if len(chunk) >= batch and found:
                        break  # this state goes on in the next transaction
                    pos += 1
                    if pos < len(codes):
                        key, after = bytes((codes[pos],)), False
            yield from chunk

    def due(self, state, until: float | None = None, *, batch: int = 1000,
            recipients: bool = True):
        """Yield messages of one state whose due time (arrival or next retry) is <= until."""
        limit = None if until is None else ix.due_key(
            state if isinstance(state, int) else ix.STATE_CODES[state], until, "\x7f")
        for info in self.messages([state], batch=batch, recipients=recipients):
            if limit is not None and ix.due_key(info.state, info.due_time(), info.queue_id) > limit:
                return
            yield info

    def by_domain(self, domain: str, *, batch: int = 1000):
        """Yield queue IDs with a recipient in ``domain`` (lower case, exact), in batches
        of ``batch`` per read transaction (no snapshot is held while the caller edits)."""
        prefix = domain.lower().encode("utf-8", "surrogateescape") + b"\0"
        key = prefix
        first = True
        while True:
            chunk = []
            with self.index.read() as txn:
                cur = txn.cursor(db=self.index.dom)
                if not cur.set_range(key):
                    return
                if not first and cur.key() == key and not cur.next():
                    return
                for k, _ in cur:
                    if not k.startswith(prefix):
                        break
                    chunk.append(k[len(prefix) :].decode("ascii"))
                    key = bytes(k)
                    if len(chunk) >= batch:
                        break
            first = False
            yield from chunk
            if len(chunk) < batch:
                return

    # -- editing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def edit(self):
        """A write transaction over the index: ``with store.edit() as ed: ed.set_state(...)``.

        Commits when the block ends normally, aborts on an exception; segments emptied
        by deletions are reclaimed after the commit.
        """
        ed = Edit(self)
        try:
            with self.index.write() as txn:
                ed.txn = txn
                yield ed
        except lmdb.Error as exc:
            raise self.index_error(exc) from None
        finally:
            ed.txn = None
        for segid in ed.emptied:
            self.reclaim_segment(segid)

    # -- writing outside a committer (import, compaction) --------------------------------------

    def append_frames(self, writer: SegmentWriter, frames: list, crash: str = "") -> list:
        """Append (kind, state, queue_id, payload) frames as one durable batch.

        Return their (offset, length) in the segment.
        """
        buffers = []
        placed = []
        heads = []
        pos = writer.size
        for kind, state, qid, payload in frames:
            bufs = frame_bytes(kind, state, qid.encode("ascii"), [payload])
            length = sum(len(b) for b in bufs)
            placed.append((pos, length))
            buffers.extend(bufs)
            heads.append(bufs[0])
            pos += length
        buffers.append(batch_frame(writer.size, len(frames), heads))
        writer.append(buffers, crash=crash)
        return placed

    def seal(self, writer: SegmentWriter) -> None:
        """Seal a segment written outside a committer and release it."""
        with self.index.write() as txn:
            seg = self.index.segment(txn, writer.segid) or ix.SegmentInfo(writer.segid, created=time.time())
            seg.watermark = max(seg.watermark, writer.size)
            seg.flags |= ix.SEGF_SEALED
            self.index.put_segment(txn, seg)
            empty = seg.live == 0
        writer.close()
        if empty:
            self.reclaim_segment(writer.segid)

    # -- compaction -------------------------------------------------------------------------

    def compaction_candidates(self, now: float | None = None, *, age: int | None = None,
                              ratio: int | None = None) -> list[ix.SegmentInfo]:
        """Sealed segments old enough whose live bytes are a small share of their size."""
        now = time.time() if now is None else now
        age = self.settings.compact_age if age is None else age
        ratio = self.settings.compact_ratio if ratio is None else ratio
        out = []
        with self.index.read() as txn:
            for seg in self.index.segments(txn):
                if not seg.sealed or seg.flags & ix.SEGF_LARGE or seg.live == 0:
                    continue
                if seg.created > now - age:
                    continue
                if seg.live_bytes * 100 > ratio * max(seg.watermark, 1):
                    continue
                out.append(seg)
        return out

    def compact(self, now: float | None = None, *, age: int | None = None, ratio: int | None = None,
                batch_bytes: int = 8 << 20) -> CompactReport:
        """Copy the live messages of sparse old segments forward and reclaim those segments."""
        report = CompactReport()
        candidates = self.compaction_candidates(now, age=age, ratio=ratio)
        if not candidates:
            return report
        writer = self.new_segment()
        try:
            for seg in candidates:
                self._compact_segment(seg.segid, writer, batch_bytes, report)
        finally:
            self.seal(writer)
        return report

    def _compact_segment(self, segid: int, writer: SegmentWriter, batch_bytes: int,
                         report: CompactReport) -> None:
        path = os.path.join(self.segment_dir, segment_name(segid))
        try:
            result = scan(path, SEG_HEADER_LEN)
        except FileNotFoundError:
            return
        fd = self._segment_fd(segid)
        pending: list = []
        size = 0
        for batch in result.batches:
            for frame in batch:
                if frame.kind not in (KIND_MESSAGE, KIND_COPY) or not frame.payload_ok:
                    continue
                info = self.get(frame.queue_id)
                if info is None or (info.segid, info.offset) != (segid, frame.offset):
                    continue
                _, payload = read_frame(fd, frame.offset, frame.length)
                pending.append((info, payload))
                size += frame.length
                if size >= batch_bytes:
                    self._copy_batch(writer, pending, report)
                    pending, size = [], 0
        if pending:
            self._copy_batch(writer, pending, report)
        crashpoint.reached("compact.before_reclaim")
        if self.reclaim_segment(segid):
            report.segments += 1

    def _copy_batch(self, writer: SegmentWriter, pending: list, report: CompactReport) -> None:
        frames = [(KIND_COPY, info.state, info.queue_id, payload) for info, payload in pending]
        placed = self.append_frames(writer, frames, crash="compact")
        crashpoint.reached("compact.before_repoint")
        with self.index.write() as txn:
            for (info, _payload), (off, length) in zip(pending, placed):
                cur = self.index.get(txn, info.queue_id, recipients=False)
                if cur is None or (cur.segid, cur.offset) != (info.segid, info.offset):
                    continue  # deleted or moved meanwhile: the copy is garbage
                new = ix.copy_info(cur)
                new.segid, new.offset, new.length = writer.segid, off, length
                self.index.update(txn, cur, new)
                report.messages += 1
                report.bytes += length
            seg = self.index.segment(txn, writer.segid) or ix.SegmentInfo(writer.segid, created=time.time())
            seg.watermark = max(seg.watermark, writer.size)
            self.index.put_segment(txn, seg)

    # -- presentation -------------------------------------------------------------------------

    def queue_path(self, info: ix.MessageInfo) -> str:
        """The name Postfix would give the file: ``deferred/5/5EE0C214203``."""
        from fastpost.mail.queue.queue_id import hash_dirs

        name = info.state_name
        dirs = hash_dirs(info.queue_id, self.settings.hash_queue_depth) \
            if name in self.settings.hash_queue_names else []
        return "/".join([name, *dirs, info.queue_id])


class Edit:
    """Changes to messages inside one index transaction (from QueueStore.edit())."""

    def __init__(self, store: QueueStore):
        self.store = store
        self.index = store.index
        self.txn = None
        self.emptied: set[int] = set()

    def get(self, queue_id: str, recipients: bool = True) -> ix.MessageInfo | None:
        return self.index.get(self.txn, queue_id, recipients)

    def _change(self, queue_id: str, fn) -> bool:
        old = self.index.get(self.txn, queue_id, recipients=False)
        if old is None:
            return False
        new = ix.copy_info(old)
        fn(new)
        self.index.update(self.txn, old, new)
        return True

    def set_state(self, queue_id: str, state, next_retry: float | None = None) -> bool:
        """Move a message to another queue (and set its next retry time); False if missing."""
        code = state if isinstance(state, int) else ix.STATE_CODES[state]

        def change(m):
            m.state = code
            if next_retry is not None:
                m.next_retry = next_retry
            elif code != ix.DEFERRED:
                m.next_retry = 0.0

        return self._change(queue_id, change)

    def set_flags(self, queue_id: str, add: int = 0, remove: int = 0) -> bool:
        def change(m):
            m.flags = (m.flags | add) & ~remove

        return self._change(queue_id, change)

    def mark_recipients(self, queue_id: str, offsets, status: int) -> bool:
        """Set the status of recipients (by R record offset): done, deferred or pending."""
        return self.index.mark(self.txn, queue_id, offsets, status)

    def delete(self, queue_id: str) -> bool:
        """Remove a message (its segment is reclaimed once it holds nothing live)."""
        info = self.index.get(self.txn, queue_id, recipients=False)
        if info is None:
            return False
        self.index.remove(self.txn, info)
        seg = self.index.segment(self.txn, info.segid)
        if seg is not None and seg.sealed and seg.live == 0:
            self.emptied.add(info.segid)
        return True

    def append_log(self, queue_id: str, kind: str, block: bytes) -> None:
        """Append one entry to a message's bounce, defer or trace log."""
        self.index.append_log(self.txn, queue_id, ix.LOG_KINDS[kind], block)

    def logs(self, queue_id: str, kind: str) -> list[bytes]:
        return self.index.logs(self.txn, queue_id, ix.LOG_KINDS[kind])

    def clear_log(self, queue_id: str, kind: str | None = None) -> None:
        self.index.clear_logs(self.txn, queue_id, ix.LOG_KINDS[kind] if kind else None)


#: LMDB turns a write that the file system cut short into EIO (its page flush and its
#: meta-page write: a pwritev/pwrite that returns fewer bytes than asked, which is what
#: a full file system does to a multi-page write, is reported as EIO, not ENOSPC). An
#: EIO from LMDB while the index's file system has less than this many bytes free is
#: taken as a full disk (docs/queue.md, "A full file system under the index"); a
#: failed write leaves at most a few hundred KiB of LMDB's pages behind, and the margin
#: covers space freed meanwhile by other writers rolling back.
SHORT_WRITE_FREE_MARGIN = 4 << 20


def _index_error(exc: lmdb.Error, index_dir: str | None = None) -> Exception:
    """Map an LMDB error to InsufficientStorage (full disk or map) or QueueError.

    ``index_dir``: the index's directory; with it, an EIO while its file system is
    (nearly) full is InsufficientStorage too (SHORT_WRITE_FREE_MARGIN). Without it, or
    with space to spare, an EIO stays an error (QueueError).
    """
    code = getattr(exc, "code", 0)
    if isinstance(exc, lmdb.MapFullError):
        return InsufficientStorage(errno.ENOSPC, f"queue index map is full ({exc})")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(code, f"queue index: {os.strerror(code)}")
    if code == errno.EIO and index_dir is not None:
        try:
            st = os.statvfs(index_dir)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        if free is not None and free < SHORT_WRITE_FREE_MARGIN:
            err = InsufficientStorage(
                errno.ENOSPC, f"queue index: a write was cut short, {free} bytes free "
                              f"in {index_dir} ({exc})")
            err.__cause__ = exc
            return err
    return QueueError(f"queue index error: {exc}")


def _give_to_owner(qdir: str) -> None:
    """Root (fastpost super, queue, an import) must not leave files mail_owner cannot use.

    The first open of a store creates the LMDB index files, an import creates segments:
    run as root, they would belong to root, and cleanup/qmgr (mail_owner) could no longer
    open the queue. Each file in index/ and segments/ is given to its directory's owner.
    """
    if os.geteuid() != 0:
        return
    for sub in ("index", "segments"):
        d = os.path.join(qdir, sub)
        try:
            dst = os.stat(d)
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                st = os.lstat(path)
                if (st.st_uid, st.st_gid) != (dst.st_uid, dst.st_gid):
                    os.lchown(path, dst.st_uid, dst.st_gid)
            except OSError:
                pass
