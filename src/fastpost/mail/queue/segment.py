"""Segment files: the append-only logs that hold queued messages.

Postfix counterpart: none (Postfix writes one file per message under incoming/); the
durability point is the same as cleanup's fsync in src/global/mail_stream.c.

A segment is written by exactly one committer (one cleanup worker), which appends
batches of messages to it and makes each batch durable with one fdatasync before any
sender in the batch is told its queue ID. Layout (little-endian):

    file header (32 bytes)   "FPQSEG01", segment id u64, created u64 (seconds),
                             flags u32 (LARGE = a file of its own for one big message),
                             crc32 of the preceding 28 bytes
    frame (one message)      header (24 bytes): "FPQM", kind u8, state u8,
                             queue-ID length u8, flags u8, payload length u64,
                             crc32 of the payload, crc32 of the header's first 20
                             bytes plus the queue ID; then the queue ID; then the payload
                             (the message as a Postfix queue file)
    batch end                a frame of kind BATCH with no queue ID whose payload is
                             the batch's start offset (u64), frame count (u32) and
                             the crc32 of its frames' header CRCs in order (u32; a
                             batch end without it, 12 bytes, is still read)

Kinds: MESSAGE (a new message), COPY (a message copied forward by compaction; its
index entry moves to the copy in the same index transaction that records the copy, so
a copy found beyond the index's watermark is garbage), BATCH.

Writing: a batch is one pwritev at the logical end (split at IOV_MAX) and one
fdatasync. If either fails the failed bytes are removed (truncated back to the batch
start, or, when that fails, overwritten with zeros and synced), the caller gets the
error and nobody in the batch is acknowledged. ENOSPC and EDQUOT become
InsufficientStorage.

Pre-zeroed space (fastpost_queue_segment_prezero; docs/queue.md "Pre-zeroed
segments"): a committer's segment keeps a physical end (zeros written and synced
ahead) beyond its logical end (the end of its last complete batch, ``size``), so a
batch overwrites allocated, initialised blocks and its fdatasync changes no metadata
(no journal commit on ext4). prepare() extends the zeros between batches, in steps
that grow with the segment up to the parameter; a batch larger than the room left
simply writes past the physical end (plain appending). Nothing past the logical end is
ever read as data: the index's watermark is a logical end, scan() treats a zero tail
as the end, and close() truncates the file to its logical end. Only on file systems
where overwriting avoids a journal commit (prezero_helps(): ext2/3/4, XFS, from
/proc/self/mountinfo; not tmpfs,
which has no journal, nor copy-on-write btrfs).

Naming and lifetime (``<dir>/<id:016x>.seg``): a segment is created as ``.tmp``, locked
(flock, held for as long as its committer lives), given its header, synced, renamed to
``.seg`` and the directory synced, so a ``.seg`` file without an index entry is always
a real segment whose first batches were not indexed yet. Reclaiming renames it to
``.dead`` (directory synced) before its index entry is removed, and unlinks it after.
A ``.tmp`` file nobody holds a lock on is garbage.

Reading verifies both CRCs; scan() walks frames for recovery and tells apart a torn
tail (discarded: never acknowledged) from damage inside acknowledged data.

Diagnostics: InsufficientStorage (full file system or quota); OSError for other I/O
errors; CorruptFrame (with the offset) when a frame fails its checks on read.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass

from fastpost.mail.queue import crashpoint

SEG_MAGIC = b"FPQSEG01"
SEG_HEADER = struct.Struct("<8sQQII")
SEG_HEADER_LEN = SEG_HEADER.size  # 32
SEG_FLAG_LARGE = 1

FRAME_MAGIC = b"FPQM"
FRAME_HEADER = struct.Struct("<4sBBBBQII")
FRAME_HEADER_LEN = FRAME_HEADER.size  # 24
BATCH_PAYLOAD = struct.Struct("<QII")
BATCH_PAYLOAD_V1 = struct.Struct("<QI")  # without the chain CRC (still read)

KIND_MESSAGE = 1
KIND_COPY = 2
KIND_BATCH = 3

IOV_MAX = 1024
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class InsufficientStorage(OSError):
    """The queue file system is full (ENOSPC) or over quota (EDQUOT).

    Cleanup answers ``452 4.3.1 Insufficient system storage``; nothing in the failed
    batch was acknowledged, and the next commit tries again.
    """


class CorruptFrame(ValueError):
    """A frame that fails its magic, length or CRC checks."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def storage_error(exc: OSError, what: str) -> OSError:
    """Return InsufficientStorage for ENOSPC/EDQUOT, else the error itself."""
    if exc.errno in _FULL_ERRNOS:
        err = InsufficientStorage(exc.errno, f"{what}: {os.strerror(exc.errno)}")
        err.__cause__ = exc
        return err
    return exc


def segment_name(segid: int, suffix: str = ".seg") -> str:
    """Return the file name of a segment."""
    return f"{segid:016x}{suffix}"


def parse_segment_name(name: str) -> tuple[int, str] | None:
    """Return (segment id, suffix) for a segment file name, or None."""
    stem, dot, suffix = name.partition(".")
    if len(stem) != 16 or not dot:
        return None
    try:
        return int(stem, 16), "." + suffix
    except ValueError:
        return None


def seg_header(segid: int, flags: int, created: int | None = None) -> bytes:
    """Return the 32-byte file header of a segment."""
    created = int(time.time()) if created is None else created
    head = SEG_HEADER.pack(SEG_MAGIC, segid, created, flags, 0)[:28]
    return head + struct.pack("<I", zlib.crc32(head))


def read_seg_header(data: bytes) -> tuple[int, int, int] | None:
    """Return (segment id, created, flags) from a file header, or None if invalid."""
    if len(data) < SEG_HEADER_LEN:
        return None
    magic, segid, created, flags, crc = SEG_HEADER.unpack_from(data)
    if magic != SEG_MAGIC or zlib.crc32(bytes(data[:28])) != crc:
        return None
    return segid, created, flags


def frame_header(kind: int, state: int, queue_id: bytes, payload_len: int, payload_crc: int,
                 flags: int = 0) -> bytes:
    """Return a frame header followed by the queue ID."""
    head = FRAME_HEADER.pack(FRAME_MAGIC, kind, state, len(queue_id), flags, payload_len, payload_crc, 0)[:20]
    return head + struct.pack("<I", zlib.crc32(queue_id, zlib.crc32(head))) + queue_id


def frame_bytes(kind: int, state: int, queue_id: bytes, payload_parts, flags: int = 0) -> list:
    """Return the buffers of one complete frame (header+ID, then the payload parts)."""
    crc = 0
    length = 0
    for part in payload_parts:
        crc = zlib.crc32(part, crc)
        length += len(part)
    return [frame_header(kind, state, queue_id, length, crc, flags), *payload_parts]


def batch_chain(heads) -> int:
    """Return the chain CRC of a batch: crc32 over its frames' header CRCs, in order.

    ``heads`` are the frames' first bytes (at least the 24-byte header each): the
    batch end names exactly its frames, so frames of an older batch left behind newer
    ones can never be joined to them (scan()).
    """
    crc = 0
    for head in heads:
        crc = zlib.crc32(head[20:24], crc)
    return crc


def batch_frame(start: int, count: int, heads=()) -> bytes:
    """Return the batch end frame for a batch that started at ``start``, whose
    ``count`` frames begin with ``heads`` (see batch_chain())."""
    payload = BATCH_PAYLOAD.pack(start, count, batch_chain(heads))
    return frame_header(KIND_BATCH, 0, b"", len(payload), zlib.crc32(payload)) + payload


@dataclass(slots=True)
class Frame:
    """One frame found by scan() or read_frame()."""

    offset: int  # where its header starts
    length: int  # header + queue ID + payload
    kind: int
    state: int
    flags: int
    queue_id: str
    payload_ok: bool  # the payload CRC matched
    batch_start: int = 0  # BATCH frames: the batch's first offset
    batch_count: int = 0  # BATCH frames: how many frames it closes

    @property
    def payload_offset(self) -> int:
        return self.offset + FRAME_HEADER_LEN + len(self.queue_id)


def parse_frame_header(buf, pos: int, size: int, check_length: bool = True) -> tuple | None:
    """Return (kind, state, qid length, flags, payload length, payload CRC) for the header
    at ``pos`` if magic and header CRC check out (and, with ``check_length``, the payload
    fits in ``size``)."""
    if pos + FRAME_HEADER_LEN > size:
        return None
    magic, kind, state, qlen, flags, plen, pcrc, hcrc = FRAME_HEADER.unpack_from(buf, pos)
    if magic != FRAME_MAGIC or kind not in (KIND_MESSAGE, KIND_COPY, KIND_BATCH):
        return None
    end_q = pos + FRAME_HEADER_LEN + qlen
    if end_q > size:
        return None
    if zlib.crc32(buf[pos + FRAME_HEADER_LEN : end_q], zlib.crc32(buf[pos : pos + 20])) != hcrc:
        return None
    if check_length and end_q + plen > size:
        return None
    return kind, state, qlen, flags, plen, pcrc


def read_frame(fd: int, offset: int, length: int) -> tuple[Frame, bytes]:
    """Read and verify one frame at ``offset``; return (frame, payload bytes).

    CorruptFrame when the data there is not an intact frame of that length.
    """
    data = os.pread(fd, length, offset)
    head = parse_frame_header(data, 0, len(data))
    if head is None:
        raise CorruptFrame(f"bad frame header at offset {offset}", offset)
    kind, state, qlen, flags, plen, pcrc = head
    if FRAME_HEADER_LEN + qlen + plen != length:
        raise CorruptFrame(f"frame at offset {offset} has length {FRAME_HEADER_LEN + qlen + plen}, "
                           f"index says {length}", offset)
    payload = data[FRAME_HEADER_LEN + qlen :]
    if zlib.crc32(payload) != pcrc:
        raise CorruptFrame(f"payload checksum mismatch in frame at offset {offset}", offset)
    qid = data[FRAME_HEADER_LEN : FRAME_HEADER_LEN + qlen].decode("ascii", "replace")
    return Frame(offset, length, kind, state, flags, qid, True), payload


@dataclass(slots=True)
class ScanResult:
    """What scan() found in a segment from a starting offset."""

    batches: list  # lists of Frames, one list per complete batch, in order
    good_end: int  # offset just past the last complete batch
    size: int  # the file size
    garbage: list  # (offset, length) of unreadable regions inside acknowledged data
    torn: int  # bytes after good_end up to the last non-zero byte: a torn tail
    zero_tail: int = 0  # zero bytes after that (pre-zeroed space): not damage


def scan(path: str, start: int) -> ScanResult:
    """Walk the frames of a segment file from ``start`` (a batch boundary).

    A batch counts only once its BATCH frame is found intact and names a start at or
    after the end of the batch before it (a BATCH frame pointing back is a stale one,
    left by a failed batch beyond newer data) with no more frames than its count.
    Frames of a batch whose end never comes are the torn tail (reported in ``torn``,
    from ``good_end``); zeros at the very end are pre-zeroed space (``zero_tail``), not a
    torn tail. An unreadable stretch followed by intact frames is skipped and reported
    in ``garbage`` (damage inside data that was acknowledged, or holes in an unsynced
    tail); frames whose header is intact but whose payload CRC fails are returned with
    ``payload_ok`` false so that recovery can move them to the corrupt queue.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= start:
            return ScanResult([], start, size, [], 0)
        with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as buf:
            return _scan(buf, start, size)


def _scan(buf, start: int, size: int) -> ScanResult:
    batches: list = []
    garbage: list = []
    current: list = []
    good_end = start
    pos = start
    while pos < size:
        head = parse_frame_header(buf, pos, size)
        if head is None:
            nxt = _resync(buf, pos + 1, size)
            if nxt < 0:
                break  # nothing intact follows: a torn tail or zeros
            garbage.append((pos, nxt - pos))
            pos = nxt
            continue
        kind, state, qlen, flags, plen, pcrc = head
        pstart = pos + FRAME_HEADER_LEN + qlen
        end = pstart + plen
        payload_ok = zlib.crc32(buf[pstart:end]) == pcrc
        if kind == KIND_BATCH:
            if payload_ok and plen in (BATCH_PAYLOAD.size, BATCH_PAYLOAD_V1.size):
                if _closes(buf, pstart, plen, pos, good_end, current):
                    batches.append(current)
                    good_end = end
                current = []  # a stale end closes nothing, and its frames are not data
            pos = end
            continue
        qid = bytes(buf[pos + FRAME_HEADER_LEN : pstart]).decode("ascii", "replace")
        current.append(Frame(pos, end - pos, kind, state, flags, qid, payload_ok))
        pos = end
    garbage = [g for g in garbage if g[0] < good_end]
    last = _last_nonzero(buf, good_end, size)
    return ScanResult(batches, good_end, size, garbage, last - good_end, size - last)


def _closes(buf, pstart: int, plen: int, pos: int, good_end: int, current: list) -> bool:
    """Does the batch end at ``pos`` (payload at ``pstart``) close the frames read?

    Its start must lie between the previous batch's end and itself (an end pointing
    back is a stale one, beyond newer data). Its frames (those from its start on) must
    be exactly its count with the chain CRC it names; fewer is damage inside the batch
    (a frame whose header became unreadable, reported as garbage), which is kept as
    before. Frames before its start belong to a batch whose end was damaged.
    """
    if plen == BATCH_PAYLOAD.size:
        bstart, count, chain = BATCH_PAYLOAD.unpack_from(buf, pstart)
    else:
        (bstart, count), chain = BATCH_PAYLOAD_V1.unpack_from(buf, pstart), None
    if not good_end <= bstart <= pos:
        return False
    mine = [f for f in current if f.offset >= bstart]
    if len(mine) > count:
        return False
    if len(mine) == count and chain is not None:
        return batch_chain(buf[f.offset : f.offset + FRAME_HEADER_LEN] for f in mine) == chain
    return True


def _last_nonzero(buf, start: int, size: int) -> int:
    """Return the offset just past the last non-zero byte in [start, size), or start."""
    step = 1 << 20
    hi = size
    while hi > start:
        lo = max(start, hi - step)
        chunk = buf[lo:hi].rstrip(b"\0")
        if chunk:
            return lo + len(chunk)
        hi = lo
    return start


def _resync(buf, pos: int, size: int) -> int:
    """Return the offset of the next intact frame header at or after ``pos``, or -1."""
    while True:
        pos = buf.find(FRAME_MAGIC, pos, size)
        if pos < 0:
            return -1
        if parse_frame_header(buf, pos, size) is not None:
            return pos
        pos += 1


def lock_nb(fd: int) -> bool:
    """Take an exclusive flock without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def fsync_dir(path: str) -> None:
    """Make a directory's entries (creates, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: file systems where writing over zeros that were written and synced before needs no
#: journal commit (so pre-zeroing pays): ext2/3/4, XFS
_PREZERO_FS = {"ext2", "ext3", "ext4", "xfs"}
#: the first pre-zeroing step of a segment; each step is as large as the segment's
#: logical size so far, up to fastpost_queue_segment_prezero
PREZERO_MIN_STEP = 64 << 10
_ZEROS = bytes(1 << 20)


def _mounts() -> dict[str, str] | None:
    """Return {"major:minor": file system type} from /proc/self/mountinfo, or None."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and " - " in line:
            out[fields[2]] = line.split(" - ", 1)[1].split()[0]
    return out


#: the mount table when this module was imported: daemons import everything before
#: they chroot into the queue directory, where /proc is usually absent
_MOUNTS_AT_IMPORT = _mounts()


def fs_type(path: str) -> str | None:
    """Return the type of the file system holding ``path`` ("ext4", "tmpfs", ...) from
    /proc/self/mountinfo (matched by device number), or None if unknown."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    mounts = _mounts() or _MOUNTS_AT_IMPORT or {}
    return mounts.get(f"{os.major(dev)}:{os.minor(dev)}")


def prezero_helps(path: str) -> bool:
    """True if the file system holding ``path`` is one where pre-zeroing pays."""
    return fs_type(path) in _PREZERO_FS


class SegmentWriter:
    """The append side of one segment, owned by one committer (not thread-safe).

    ``size`` is the logical end (just past the last complete batch), ``end`` the
    physical end (the file size: ``size`` plus the zeros written ahead). ``prezero``
    (bytes, 0 = never) caps the steps prepare() extends the zeros by, and ``limit``
    is where they stop (the segment size the committer rolls at).
    """

    def __init__(self, directory: str, segid: int, flags: int = 0, prezero: int = 0,
                 limit: int = 0):
        self.directory = directory
        self.segid = segid
        self.flags = flags
        self.path = os.path.join(directory, segment_name(segid))
        tmp = os.path.join(directory, segment_name(segid, ".tmp"))
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise storage_error(exc, f"create {tmp}") from None
        try:
            if not lock_nb(fd):
                raise OSError(errno.EBUSY, f"{tmp} is locked by another process")
            header = seg_header(segid, flags)
            _write_all(fd, [header], tmp, 0)
            os.fdatasync(fd)
            self.fd = fd
            self.size = len(header)
            self.end = self.size
            self.prezero = 0 if flags & SEG_FLAG_LARGE else max(0, prezero)
            self.limit = limit
            self.extensions = 0  # statistics: successful prepare() steps
            if not flags & SEG_FLAG_LARGE:
                self.publish()
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(tmp)
            raise storage_error(exc, f"create {tmp}") from None
        self.tmp = tmp

    def publish(self) -> None:
        """Give the segment its final name and make the name durable."""
        tmp = os.path.join(self.directory, segment_name(self.segid, ".tmp"))
        try:
            os.rename(tmp, self.path)
            fsync_dir(self.directory)
        except OSError as exc:
            raise storage_error(exc, f"rename {tmp}") from None

    def append(self, buffers: list, sync: bool = True, crash: str = "") -> int:
        """Write ``buffers`` at the logical end and fdatasync; return their offset.

        On any error the failed bytes are removed (rollback()) and the error is raised
        (InsufficientStorage for a full disk). ``crash`` names the crash points
        (``<crash>.mid_write``, ``<crash>.before_sync``) the tests may arm.
        """
        start = self.size
        try:
            if crash and crashpoint.hit(crash + ".mid_write"):
                data = b"".join(bytes(b) for b in buffers)
                _write_all(self.fd, [data[: len(data) // 2]], self.path, start)
                crashpoint.kill()
            written = _write_all(self.fd, buffers, self.path, start)
            if crash:
                crashpoint.reached(crash + ".before_sync")
            if sync:
                os.fdatasync(self.fd)
        except OSError as exc:
            self.rollback(start)
            raise storage_error(exc, f"write {self.path}") from None
        self.size = start + written
        if self.size > self.end:
            self.end = self.size  # wrote past the zeros: plain appending
        return start

    def rollback(self, offset: int) -> None:
        """Remove everything after ``offset`` after a failed append.

        A batch written completely whose fdatasync failed must never be found by
        recovery (its senders were refused), so the bytes go: the file is truncated to
        ``offset`` (giving up the zeros ahead) and the truncation synced. If that fails,
        the stretch the batch may have written is overwritten with zeros and synced. If
        that fails too (a dying disk) a warning names the region; the committer
        abandons the segment, whose index seal at ``offset`` then keeps recovery from
        looking past it (store.py); only a crash before that seal is indexed could let
        recovery find the batch.
        """
        self.size = offset
        try:
            os.ftruncate(self.fd, offset)
            self.end = offset
            os.fdatasync(self.fd)
            return
        except OSError as exc:
            first = exc
        try:
            stop = max(self.end, os.fstat(self.fd).st_size)
            _write_zeros(self.fd, offset, stop - offset, self.path)
            os.fdatasync(self.fd)
            self.end = stop
        except OSError as exc:
            from fastpost.util import log

            log.warn("queue segment %016x: cannot remove a failed batch at offset %d (%s; %s); "
                     "the segment is abandoned", self.segid, offset, first, exc)

    def prepare(self) -> int:
        """Write and sync zeros ahead when the room left is short; return bytes added.

        Runs between batches (the committer's I/O thread, after the previous batch was
        answered). Each step is as large as the segment so far (at least
        PREZERO_MIN_STEP, at most ``prezero``), taken when less than half a step is
        left, and never past ``limit``. A failure (a full disk) truncates the zeros
        just written and turns pre-zeroing off for this segment: batches then append
        as before, so a full disk refuses mail only when the batch itself does not fit.
        """
        if self.prezero <= 0 or self.fd < 0:
            return 0
        step = min(self.prezero, max(PREZERO_MIN_STEP, self.size))
        if self.end - self.size >= step // 2:
            return 0
        target = self.end + step
        if self.limit:
            target = min(target, self.limit)
        if target <= self.end:
            return 0
        old = self.end
        try:
            _write_zeros(self.fd, old, target - old, self.path)
            os.fdatasync(self.fd)
        except OSError as exc:
            self.prezero = 0
            try:
                os.ftruncate(self.fd, old)
            except OSError:
                pass  # zeros past the logical end are never read as data
            from fastpost.util import log

            log.warn("queue segment %016x: cannot write zeros ahead (%s); appending plainly",
                     self.segid, exc.strerror or exc)
            return 0
        self.end = target
        self.extensions += 1
        return target - old

    def trim(self) -> None:
        """Cut the zeros past the logical end (best effort: recovery cuts them too)."""
        if self.fd >= 0 and self.end > self.size:
            try:
                os.ftruncate(self.fd, self.size)
                self.end = self.size
            except OSError:
                pass

    def close(self) -> None:
        """Trim the zeros ahead and close the file (releasing the lock)."""
        self.trim()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_zeros(fd: int, offset: int, length: int, path: str) -> None:
    """Write ``length`` zero bytes at ``offset``."""
    while length > 0:
        n = os.pwrite(fd, memoryview(_ZEROS)[: min(length, len(_ZEROS))], offset)
        if n == 0:
            raise OSError(errno.EIO, f"write to {path} made no progress")
        offset += n
        length -= n


def _write_all(fd: int, buffers: list, path: str, offset: int) -> int:
    """pwritev everything in ``buffers`` at ``offset`` (IOV_MAX at a time, retrying
    short writes)."""
    total = 0
    bufs = [memoryview(b).cast("B") for b in buffers if len(b)]
    i = 0
    while i < len(bufs):
        group = bufs[i : i + IOV_MAX]
        n = os.pwritev(fd, group, offset + total)
        if n == 0:
            raise OSError(errno.EIO, f"write to {path} made no progress")
        total += n
        # advance past what was written (a short write leaves part of a buffer)
        while n:
            head = bufs[i]
            if n >= len(head):
                n -= len(head)
                i += 1
            else:
                bufs[i] = head[n:]
                n = 0
    return total


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
