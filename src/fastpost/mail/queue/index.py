"""The queue index: an LMDB environment that says where each message is and in what state.

Postfix counterpart: the queue directories themselves (src/global/mail_queue.c: the
directory a file is in is its state, its mode bits are flags, its mtime is the next
retry time) and the defer/bounce/trace log directories (src/bounce/bounce_append_service.c).

Everything that listing, counting, selecting and scheduling need is here, so none of
them reads a message body. Sub-databases (keys are bytes; integers big-endian so that
keys sort numerically):

    msg    queue ID -> MessageInfo (state, flags, location, arrival, next retry, size,
           sender, the number of recipients and of live ones)
    rcp    queue ID + NUL + first R-record offset (u64) -> a chunk of up to RCPT_CHUNK
           recipients (offset, status, address), in offset order: a message with
           100,000 recipients is read, sliced and marked a chunk at a time, and a state
           change rewrites only the msg entry (version 1 entries, which held every
           recipient inline, are still read, and rewritten as version 2 when changed)
    due    state byte + next-event time (u64 microseconds) + queue ID -> ""
           (messages of one state in the order qmgr wants them: incoming by arrival,
           deferred by next retry time)
    dom    recipient domain + NUL + queue ID -> "" (selection by domain)
    log    queue ID + NUL + kind (b/d/t) + u32 sequence -> one "name=value" block
           (bounce, defer and trace logs, as Postfix's bounce daemon writes them)
    seg    segment id (u64) -> SegmentInfo (flags, live messages, live bytes, the
           watermark up to which its frames are indexed, creation time)
    meta   counters: next queue number, next segment id, per-state message counts

The watermark is the heart of crash safety: a committer's index transaction inserts a
batch's messages and moves its segment's watermark past the batch in one atomic step,
so recovery replays exactly the frames beyond the watermark (see store.py).

The environment is opened with sync on and metasync off: every write transaction is
atomic and consistent and is made durable by one fdatasync; after a system crash the
last transactions may be undone (never half-applied), which replay from the segments
repairs for new messages.

Zeros ahead (session 9): LMDB (without MDB_WRITEMAP) writes a transaction's new pages
with pwrite at the end of data.mdb, so while the index grows (every accepted message
adds ~330 bytes) many commits' fdatasync allocate blocks and change the file size:
each waits for a journal commit on ext4. ``prepare()`` keeps zeros written and synced
past LMDB's last page (INDEX_PREZERO_MIN..INDEX_PREZERO_MAX ahead, as the queue's
segments do, segment.py), so those commits overwrite allocated blocks instead; LMDB
never reads past its last page (its meta page says where that is), so the zeros are
never data. They are written while holding LMDB's writer lock (an empty write
transaction), so no writer of any process appends pages meanwhile; a crash in the
middle leaves zeros (or a shorter file) past the last page, which LMDB ignores.

Parameters: fastpost_queue_index_map_size (the LMDB map size).
Diagnostics: lmdb errors, turned into InsufficientStorage for a full disk or a full
map by the callers in store.py and committer.py; CorruptIndexEntry for an entry that
does not decode.
"""

from __future__ import annotations

import copy
import errno
import os
import struct
from dataclasses import dataclass, field

import lmdb
import lmdb._envid  # noqa: F401 - py-lmdb imports it when an environment opens: load it
#                     now, in the master, so that a chrooted daemon can open the index

# -- queue states (the codes are stored: never renumber) --------------------------------
INCOMING = 1
ACTIVE = 2
DEFERRED = 3
HOLD = 4
CORRUPT = 5

STATE_NAMES = {INCOMING: "incoming", ACTIVE: "active", DEFERRED: "deferred", HOLD: "hold", CORRUPT: "corrupt"}
STATE_CODES = {name: code for code, name in STATE_NAMES.items()}
#: The order in which Postfix's showq lists queues.
LIST_ORDER = (ACTIVE, INCOMING, DEFERRED, HOLD, CORRUPT)

# -- message flags ------------------------------------------------------------------------
FLAG_FORCE_EXPIRE = 1  # postsuper -e/-f: return to sender at the next delivery attempt
FLAG_LARGE = 2  # the message lives in a segment of its own
FLAG_DELAY_WARNED = 4  # qmgr sent the delay warning (Postfix: the W record set to 0)
FLAG_REQUEUE = 8  # super -r while active: qmgr requeues it when it leaves active (requeue.py)

# -- recipient status ---------------------------------------------------------------------
RCPT_PENDING = 0
RCPT_DONE = 1  # delivered, bounced or otherwise finished: Postfix's D record
RCPT_DEFERRED = 2  # the last attempt failed temporarily (reason in the defer log)

# -- log kinds ----------------------------------------------------------------------------
LOG_BOUNCE = b"b"
LOG_DEFER = b"d"
LOG_TRACE = b"t"
LOG_KINDS = {"bounce": LOG_BOUNCE, "defer": LOG_DEFER, "trace": LOG_TRACE}

# -- segment flags ------------------------------------------------------------------------
SEGF_SEALED = 1  # no more appends: may be reclaimed once no live message is left
SEGF_LARGE = 2  # holds one large message

_MSG = struct.Struct("<BBBBIQQQddQ")  # version, state, flags, pad, nrcpt, segid, offset, length, arrival, next, size
_RCPT = struct.Struct("<IBH")  # offset, status, address length
_U32 = struct.Struct("<I")
#: Recipients per rcp chunk: what one mark or slice step decodes at most.
RCPT_CHUNK = 512
_SEG = struct.Struct("<BxxxIQQd")  # flags, live count, live bytes, watermark, created
_U64 = struct.Struct(">Q")
_ENTRY_VERSION = 2  # 1: recipients inline in the msg entry (still read)
MAX_MAP_SIZE = 1 << 40
#: zeros kept ahead of LMDB's last page by Index.prepare(): steps of an eighth of the
#: file, within these bounds
INDEX_PREZERO_MIN = 1 << 20
INDEX_PREZERO_MAX = 8 << 20
_ZEROS = bytes(1 << 20)


class CorruptIndexEntry(ValueError):
    """An index value that does not decode (a bug or a damaged index)."""


@dataclass(slots=True)
class RcptInfo:
    """One recipient as the index knows it."""

    offset: int  # offset of its R record in the queue file (its identity)
    address: str
    status: int = RCPT_PENDING

    @property
    def domain(self) -> str:
        at = self.address.rfind("@")
        return self.address[at + 1 :].lower() if at >= 0 else ""


@dataclass(slots=True)
class MessageInfo:
    """Everything the index holds about one message."""

    queue_id: str
    state: int
    flags: int
    segid: int  # segment holding the frame
    offset: int  # frame offset in the segment
    length: int  # frame length
    arrival: float  # seconds since the epoch (the T record)
    next_retry: float  # deferred: when to try again; others: 0
    size: int  # content length, as mailq shows it
    sender: str
    recipients: list[RcptInfo] = field(default_factory=list)
    #: False: read without its recipients (Index.get(..., recipients=False)); then
    #: ``recipients`` is empty and nrcpt/live say how many there are
    rcpts_loaded: bool = True
    nrcpt: int = 0
    live: int = 0

    def __post_init__(self):
        if self.rcpts_loaded:
            self.nrcpt = len(self.recipients)
            self.live = sum(1 for r in self.recipients if r.status != RCPT_DONE)

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unknown")

    @property
    def live_recipients(self) -> list[RcptInfo]:
        return [r for r in self.recipients if r.status != RCPT_DONE]

    @property
    def domains(self) -> set[str]:
        return {r.domain for r in self.recipients}

    def due_time(self) -> float:
        """The time the due index sorts this message by."""
        return self.next_retry if self.state == DEFERRED else self.arrival


@dataclass(slots=True)
class SegmentInfo:
    """What the index holds about one segment."""

    segid: int
    flags: int = 0
    live: int = 0  # live messages located in it
    live_bytes: int = 0  # their frame bytes
    watermark: int = 0  # frames before this offset are indexed
    created: float = 0.0

    @property
    def sealed(self) -> bool:
        return bool(self.flags & SEGF_SEALED)


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _dec(data) -> str:
    return bytes(data).decode("utf-8", "surrogateescape")


def pack_message(info: MessageInfo) -> bytes:
    """Encode a MessageInfo's msg entry (version 2: the recipients go to rcp chunks)."""
    sender = _enc(info.sender)
    if info.rcpts_loaded:
        nrcpt = len(info.recipients)
        live = sum(1 for r in info.recipients if r.status != RCPT_DONE)
    else:
        nrcpt, live = info.nrcpt, info.live
    return b"".join((_MSG.pack(_ENTRY_VERSION, info.state, info.flags, 0, nrcpt, info.segid,
                               info.offset, info.length, info.arrival, info.next_retry, info.size),
                     _U32.pack(len(sender)), sender, _U32.pack(live)))


def copy_info(info: MessageInfo) -> MessageInfo:
    """An independent copy to change and hand to Index.update (recipients copied too
    when it holds them, e.g. from a version 1 entry, which the update then converts)."""
    new = copy.copy(info)
    if info.rcpts_loaded:
        new.recipients = [RcptInfo(r.offset, r.address, r.status) for r in info.recipients]
    return new


def pack_recipients(rcpts) -> bytes:
    """Encode recipients as a chunk (or a version 1 entry's tail)."""
    parts = []
    for r in rcpts:
        addr = _enc(r.address)
        if len(addr) > 0xFFFF:
            addr = addr[:0xFFFF]
        parts.append(_RCPT.pack(r.offset, r.status, len(addr)))
        parts.append(addr)
    return b"".join(parts)


def unpack_recipients(data, pos: int = 0, count: int | None = None) -> list[RcptInfo]:
    """Decode a chunk (all of it, or ``count`` recipients from ``pos``)."""
    rcpts = []
    end = len(data)
    try:
        while (pos < end) if count is None else (len(rcpts) < count):
            roff, status, alen = _RCPT.unpack_from(data, pos)
            pos += _RCPT.size
            rcpts.append(RcptInfo(roff, _dec(data[pos : pos + alen]), status))
            pos += alen
    except struct.error as exc:
        raise CorruptIndexEntry(f"recipient list does not decode ({exc})") from None
    return rcpts


def unpack_message(queue_id: str, data) -> MessageInfo:
    """Decode a msg entry. Version 2: without recipients (rcpts_loaded False);
    version 1: with the recipients it holds inline."""
    try:
        version, state, flags, _pad, nrcpt, segid, offset, length, arrival, nxt, size = _MSG.unpack_from(data, 0)
        if version not in (1, 2):
            raise CorruptIndexEntry(f"{queue_id}: index entry version {version}")
        pos = _MSG.size
        (slen,) = _U32.unpack_from(data, pos)
        pos += 4
        sender = _dec(data[pos : pos + slen])
        pos += slen
        if version == 1:
            rcpts = unpack_recipients(data, pos, nrcpt)
            return MessageInfo(queue_id, state, flags, segid, offset, length, arrival, nxt, size,
                               sender, rcpts)
        (live,) = _U32.unpack_from(data, pos)
    except struct.error as exc:
        raise CorruptIndexEntry(f"{queue_id}: index entry does not decode ({exc})") from None
    return MessageInfo(queue_id, state, flags, segid, offset, length, arrival, nxt, size, sender,
                       [], False, nrcpt, live)


def pack_segment(seg: SegmentInfo) -> bytes:
    return _SEG.pack(seg.flags, seg.live, seg.live_bytes, seg.watermark, seg.created)


def unpack_segment(segid: int, data) -> SegmentInfo:
    flags, live, live_bytes, watermark, created = _SEG.unpack_from(data, 0)
    return SegmentInfo(segid, flags, live, live_bytes, watermark, created)


def due_key(state: int, when: float, queue_id: str) -> bytes:
    micros = max(0, int(when * 1_000_000))
    return bytes((state,)) + _U64.pack(micros) + queue_id.encode("ascii")


def dom_key(domain: str, queue_id: str) -> bytes:
    return _enc(domain) + b"\0" + queue_id.encode("ascii")


def rcp_prefix(queue_id: str) -> bytes:
    return queue_id.encode("ascii") + b"\0"


def log_prefix(queue_id: str, kind: bytes | None = None) -> bytes:
    return queue_id.encode("ascii") + b"\0" + (kind or b"")


class Index:
    """The LMDB environment and its sub-databases, with typed operations.

    Methods that change anything take a write transaction from ``write()``; they never
    commit on their own, so callers group changes atomically.
    """

    def __init__(self, path: str, map_size: int = 64 << 30, readonly: bool = False):
        self.path = path
        self.env = lmdb.open(path, map_size=min(map_size, MAX_MAP_SIZE), max_dbs=8, subdir=True,
                             sync=True, metasync=False, readahead=False, max_readers=1024,
                             readonly=readonly, lock=True, create=not readonly)
        self.msg = self.env.open_db(b"msg", create=not readonly)
        self.due = self.env.open_db(b"due", create=not readonly)
        self.dom = self.env.open_db(b"dom", create=not readonly)
        self.log = self.env.open_db(b"log", create=not readonly)
        self.seg = self.env.open_db(b"seg", create=not readonly)
        self.meta = self.env.open_db(b"meta", create=not readonly)
        self.rcp = self.env.open_db(b"rcp", create=not readonly)
        # prepare()'s descriptor of data.mdb, opened now: a daemon may chroot before its
        # first prepare() (where the path would no longer resolve). LMDB's warning about
        # a second descriptor (closing one drops the process's fcntl locks on that file)
        # concerns lock.mdb, where its locks are; none are taken on data.mdb.
        self._zero_fd: int | None = None
        if not readonly:
            try:
                self._zero_fd = os.open(os.path.join(path, "data.mdb"), os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                self._zero_fd = -1
        self._zero_end = 0  # prepare(): the file's end when it last looked
        self._psize = 4096
        self._zero_cap = MAX_MAP_SIZE  # prepare(): the map's size when it last looked
        self.extensions = 0  # statistics: prepare() steps taken

    def close(self) -> None:
        if self._zero_fd is not None and self._zero_fd >= 0:
            os.close(self._zero_fd)
            self._zero_fd = None
        self.env.close()

    def write(self):
        return self.env.begin(write=True)

    def read(self):
        return self.env.begin(write=False)

    def sync(self) -> None:
        """Force everything committed so far to disk (fdatasync data and meta pages)."""
        self.env.sync(True)

    def prepare(self, space_ok=None) -> int:
        """Write and sync zeros past LMDB's last page when less than half a step is
        left; return the bytes added (0: nothing to do, or it failed).

        A step is an eighth of the file, at least INDEX_PREZERO_MIN, at most
        INDEX_PREZERO_MAX. ``space_ok()``, asked only when a step is due, may veto it
        (the committer's rule near a full disk). A failure (a full disk) cuts the zeros
        just written, is not raised and turns this off for the process (as a segment's
        failed step does for the segment): the index then grows as LMDB grows it. The
        common case costs no system call (the file's end is remembered). Call it off
        any acknowledgement path (the committer's index thread does, after a round).
        """
        fd = self._zero_fd
        if fd is None or fd < 0:
            return 0
        if not self._zero_end:
            try:
                self._zero_end = os.fstat(fd).st_size
            except OSError:
                return 0
            self._psize = self.env.stat()["psize"]
        psize = self._psize
        used = (self.env.info()["last_pgno"] + 1) * psize
        step = min(INDEX_PREZERO_MAX, max(INDEX_PREZERO_MIN, self._zero_end // 8))
        if self._zero_end - used >= step // 2 or self._zero_end >= self._zero_cap:
            return 0
        if space_ok is not None and not space_ok():
            return 0
        txn = self.env.begin(write=True)  # LMDB's writer lock: nobody appends pages now
        try:
            info = self.env.info()
            start = max(os.fstat(fd).st_size, (info["last_pgno"] + 1) * psize)
            self._zero_end = start
            # never past the map: LMDB could not use those pages
            self._zero_cap = info["map_size"]
            target = min(-(-(start + step) // psize) * psize, self._zero_cap)
            if target <= start:
                return 0
            try:
                pos = start
                while pos < target:
                    n = os.pwrite(fd, memoryview(_ZEROS)[: min(len(_ZEROS), target - pos)], pos)
                    if n <= 0:
                        raise OSError(errno.EIO, "write made no progress")
                    pos += n
                os.fdatasync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, start)  # only zeros go: LMDB's pages end before start
                except OSError:
                    pass
                self._zero_cap = 0  # not again in this process: LMDB grows the file itself
                return 0
            self._zero_end = target
            self.extensions += 1
            return target - start
        finally:
            txn.abort()

    # -- counters -------------------------------------------------------------------------

    def counter(self, txn, name: bytes) -> int:
        raw = txn.get(name, db=self.meta)
        return _U64.unpack(raw)[0] if raw else 0

    def add_counter(self, txn, name: bytes, delta: int) -> int:
        value = max(0, self.counter(txn, name) + delta)
        txn.put(name, _U64.pack(value), db=self.meta)
        return value

    def reserve(self, txn, name: bytes, count: int, minimum: int = 0) -> int:
        """Take ``count`` values of a counter; return the first."""
        first = max(self.counter(txn, name), minimum)
        txn.put(name, _U64.pack(first + count), db=self.meta)
        return first

    def raise_counter(self, txn, name: bytes, above: int) -> None:
        """Make the next value of a counter greater than ``above``."""
        if self.counter(txn, name) <= above:
            txn.put(name, _U64.pack(above + 1), db=self.meta)

    def state_counts(self, txn) -> dict[int, int]:
        return {code: self.counter(txn, b"n:" + bytes((code,))) for code in STATE_NAMES}

    # -- messages -------------------------------------------------------------------------

    def get(self, txn, queue_id: str, recipients: bool = True) -> MessageInfo | None:
        """A message's entry; with ``recipients=False`` only its msg entry (nrcpt and
        live count, no recipient list: what scheduling and state changes need)."""
        raw = txn.get(queue_id.encode("ascii"), db=self.msg)
        if raw is None:
            return None
        info = unpack_message(queue_id, raw)
        if recipients and not info.rcpts_loaded:
            info.recipients = list(self.recipients_from(txn, queue_id))
            info.rcpts_loaded = True
        return info

    # -- recipients (rcp chunks) ------------------------------------------------------------

    def _chunks_from(self, txn, queue_id: str, offset: int = 0):
        """Yield (key, value) of a message's chunks, starting with the one that holds
        ``offset`` (or the first)."""
        prefix = rcp_prefix(queue_id)
        cur = txn.cursor(db=self.rcp)
        found = cur.set_range(prefix + _U64.pack(offset))
        if offset and (not found or bytes(cur.key()) != prefix + _U64.pack(offset)):
            # the chunk before the position may hold the offset
            if found:
                found = cur.prev()
            else:
                found = cur.last()
            if not found or not cur.key().startswith(prefix):
                found = cur.set_range(prefix)
        while found and cur.key().startswith(prefix):
            yield bytes(cur.key()), cur.value()
            found = cur.next()

    def recipients_from(self, txn, queue_id: str, offset: int = 0):
        """Yield a message's recipients (RcptInfo) in offset order, from ``offset`` on,
        one chunk decoded at a time (a version 1 entry: from its inline list)."""
        raw = txn.get(queue_id.encode("ascii"), db=self.msg)
        if raw is not None and raw[0] == 1:
            for r in unpack_message(queue_id, raw).recipients:
                if r.offset >= offset:
                    yield r
            return
        for _key, value in self._chunks_from(txn, queue_id, offset):
            for r in unpack_recipients(value):
                if r.offset >= offset:
                    yield r

    def _put_recipients(self, txn, queue_id: str, rcpts: list) -> None:
        if any(rcpts[i].offset >= rcpts[i + 1].offset for i in range(len(rcpts) - 1)):
            rcpts = sorted(rcpts, key=lambda r: r.offset)
        prefix = rcp_prefix(queue_id)
        for i in range(0, len(rcpts), RCPT_CHUNK):
            part = rcpts[i : i + RCPT_CHUNK]
            txn.put(prefix + _U64.pack(part[0].offset), pack_recipients(part), db=self.rcp)

    def _drop_recipients(self, txn, queue_id: str, domains: set | None = None) -> None:
        """Delete a message's chunks (collecting its recipient domains into ``domains``)."""
        prefix = rcp_prefix(queue_id)
        cur = txn.cursor(db=self.rcp)
        if not cur.set_range(prefix):
            return
        while cur.key().startswith(prefix):
            if domains is not None:
                domains.update(r.domain for r in unpack_recipients(cur.value()))
            if not cur.delete():
                break

    def mark(self, txn, queue_id: str, offsets, status: int) -> bool:
        """Set the status of recipients (by R record offset), rewriting only the chunks
        that hold them and the msg entry's live count; False if the message is gone."""
        info = self.get(txn, queue_id, recipients=False)
        if info is None:
            return False
        wanted = sorted(set(offsets))
        if info.rcpts_loaded:  # a version 1 entry: rewrite it as version 2
            targets = set(wanted)
            for r in info.recipients:
                if r.offset in targets:
                    r.status = status
            self.update(txn, info, info)
            return True
        prefix = rcp_prefix(queue_id)
        delta = 0
        i = 0
        while i < len(wanted):
            chunks = self._chunks_from(txn, queue_id, wanted[i])
            first = next(chunks, None)
            if first is None:
                break
            key, value = first
            following = next(chunks, None)
            bound = _U64.unpack(following[0][len(prefix):])[0] if following else None
            chunks.close()
            rcpts = unpack_recipients(value)
            by_offset = {r.offset: r for r in rcpts}
            changed = False
            while i < len(wanted) and (bound is None or wanted[i] < bound):
                r = by_offset.get(wanted[i])
                i += 1
                if r is not None and r.status != status:
                    delta += (r.status == RCPT_DONE) - (status == RCPT_DONE)
                    r.status = status
                    changed = True
            if changed:
                txn.put(key, pack_recipients(rcpts), db=self.rcp)
        if delta:
            info.live = max(0, info.live + delta)
            txn.put(queue_id.encode("ascii"), pack_message(info), db=self.msg)
        return True

    def exists(self, txn, queue_id: str) -> bool:
        return txn.get(queue_id.encode("ascii"), db=self.msg) is not None

    def insert(self, txn, info: MessageInfo) -> bool:
        """Add a new message; False (and nothing changed) if the queue ID exists."""
        key = info.queue_id.encode("ascii")
        if not txn.put(key, pack_message(info), overwrite=False, db=self.msg):
            return False
        self._put_recipients(txn, info.queue_id, info.recipients)
        txn.put(due_key(info.state, info.due_time(), info.queue_id), b"", db=self.due)
        for domain in info.domains:
            txn.put(dom_key(domain, info.queue_id), b"", db=self.dom)
        self.add_counter(txn, b"n:" + bytes((info.state,)), 1)
        self._seg_live(txn, info.segid, 1, info.length)
        return True

    def insert_many(self, txn, infos) -> tuple[list, dict]:
        """insert() for many new messages, counters touched once per state.

        Return (the infos whose queue ID existed: nothing changed for them,
        {segid: (messages, bytes)} to add to each segment's live totals: the caller
        writes them with the segment's other changes, one put per segment).
        """
        put = txn.put
        msg, due, dom = self.msg, self.due, self.dom
        dups: list = []
        states: dict = {}
        live: dict = {}
        for info in infos:
            if not put(info.queue_id.encode("ascii"), pack_message(info), overwrite=False, db=msg):
                dups.append(info)
                continue
            self._put_recipients(txn, info.queue_id, info.recipients)
            put(due_key(info.state, info.due_time(), info.queue_id), b"", db=due)
            for domain in info.domains:
                put(dom_key(domain, info.queue_id), b"", db=dom)
            states[info.state] = states.get(info.state, 0) + 1
            n, nbytes = live.get(info.segid, (0, 0))
            live[info.segid] = (n + 1, nbytes + info.length)
        for state, n in states.items():
            self.add_counter(txn, b"n:" + bytes((state,)), n)
        return dups, live

    def update(self, txn, old: MessageInfo, new: MessageInfo) -> None:
        """Replace a message's entry (state, flags, location...); its recipients too
        when ``new`` holds them (rcpts_loaded), else they stay as they are."""
        if old.queue_id != new.queue_id:
            raise ValueError("update cannot rename a message")
        if new.rcpts_loaded:
            self._drop_recipients(txn, new.queue_id)
            self._put_recipients(txn, new.queue_id, new.recipients)
        txn.put(new.queue_id.encode("ascii"), pack_message(new), db=self.msg)
        if (old.state, old.due_time()) != (new.state, new.due_time()):
            txn.delete(due_key(old.state, old.due_time(), old.queue_id), db=self.due)
            txn.put(due_key(new.state, new.due_time(), new.queue_id), b"", db=self.due)
        if old.state != new.state:
            self.add_counter(txn, b"n:" + bytes((old.state,)), -1)
            self.add_counter(txn, b"n:" + bytes((new.state,)), 1)
        if (old.segid, old.length) != (new.segid, new.length):
            self._seg_live(txn, old.segid, -1, old.length)
            self._seg_live(txn, new.segid, 1, new.length)

    def remove(self, txn, info: MessageInfo) -> None:
        """Delete a message's entry, its secondary keys and its logs."""
        domains = info.domains if info.rcpts_loaded else set()
        self._drop_recipients(txn, info.queue_id, None if info.rcpts_loaded else domains)
        txn.delete(info.queue_id.encode("ascii"), db=self.msg)
        txn.delete(due_key(info.state, info.due_time(), info.queue_id), db=self.due)
        for domain in domains:
            txn.delete(dom_key(domain, info.queue_id), db=self.dom)
        self.clear_logs(txn, info.queue_id)
        self.add_counter(txn, b"n:" + bytes((info.state,)), -1)
        self._seg_live(txn, info.segid, -1, info.length)

    # -- logs -----------------------------------------------------------------------------

    def append_log(self, txn, queue_id: str, kind: bytes, block: bytes) -> None:
        prefix = log_prefix(queue_id, kind)
        cur = txn.cursor(db=self.log)
        seq = 0
        if cur.set_range(prefix + b"\xff\xff\xff\xff"):
            if cur.prev() and cur.key().startswith(prefix):
                seq = struct.unpack(">I", cur.key()[len(prefix) :])[0] + 1
        elif cur.last() and cur.key().startswith(prefix):
            seq = struct.unpack(">I", cur.key()[len(prefix) :])[0] + 1
        txn.put(prefix + struct.pack(">I", seq), block, db=self.log)

    def logs(self, txn, queue_id: str, kind: bytes) -> list[bytes]:
        prefix = log_prefix(queue_id, kind)
        out = []
        cur = txn.cursor(db=self.log)
        if cur.set_range(prefix):
            for key, value in cur:
                if not key.startswith(prefix):
                    break
                out.append(bytes(value))
        return out

    def clear_logs(self, txn, queue_id: str, kind: bytes | None = None) -> None:
        prefix = log_prefix(queue_id, kind)
        cur = txn.cursor(db=self.log)
        if cur.set_range(prefix):
            while cur.key().startswith(prefix):
                if not cur.delete():
                    break

    # -- segments -------------------------------------------------------------------------

    def segment(self, txn, segid: int) -> SegmentInfo | None:
        raw = txn.get(_U64.pack(segid), db=self.seg)
        return unpack_segment(segid, raw) if raw is not None else None

    def put_segment(self, txn, seg: SegmentInfo) -> None:
        txn.put(_U64.pack(seg.segid), pack_segment(seg), db=self.seg)

    def drop_segment(self, txn, segid: int) -> None:
        txn.delete(_U64.pack(segid), db=self.seg)

    def segments(self, txn):
        for key, value in txn.cursor(db=self.seg):
            segid = _U64.unpack(key)[0]
            yield unpack_segment(segid, value)

    def _seg_live(self, txn, segid: int, delta: int, nbytes: int) -> None:
        seg = self.segment(txn, segid) or SegmentInfo(segid)
        seg.live = max(0, seg.live + delta)
        seg.live_bytes = max(0, seg.live_bytes + delta * nbytes)
        self.put_segment(txn, seg)
