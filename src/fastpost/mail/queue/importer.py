"""Import a Postfix queue directory into the fastpost store.

Postfix counterpart: none (the reverse of what fastpost's export gives Postfix); the
file semantics follow src/global/mail_queue.c, mail_open_ok.c and bounce_log.c.

For each queue file under $queue_directory/{incoming,active,deferred,hold,corrupt}
(hashed subdirectories included) of a Postfix queue:

  * only complete files are taken: the owner-execute bit is set (cleanup sets it when
    the file is finished); others are skipped with a warning;
  * the queue decides the state: active mail goes back to incoming (as Postfix's qmgr
    does at start-up), deferred keeps its next retry time (the file's mtime), hold and
    corrupt stay; the group-execute bit (postsuper -e/-f) becomes the forced-expire flag;
  * the bytes are stored unchanged (records, pointer records, D marks), so an exported
    message is the file that was imported, with later D marks;
  * the message keeps its queue ID when no fastpost message can have that ID: it is
    not in the index, and its number (Postfix: the inode) is below the first queue
    number (FIRST_NUMBER) or at or above the store's counter, which is then raised
    above it in the same transaction, so that generated IDs never collide with it.
    Otherwise it gets a new ID (both logged): an ID already present, or one whose number
    the counter has passed, since a running committer may hold that number in a block
    it reserved earlier and give it out later (committers do not look their IDs up in
    the index: docs/queue.md, "Queue IDs");
  * the defer, bounce and trace logs (``defer/<hash>/<ID>``...) are imported as the
    message's logs; recipients named in the defer log are marked deferred.

Messages are written in batches (one fdatasync per batch) to one segment, then indexed.
A file that does not parse as a queue file goes to the corrupt queue with a warning.
maildrop files (postdrop's format, not queue files) are not imported: they need pickup.

Parameters: hash_queue_names/hash_queue_depth are not needed (the tree is walked).
Diagnostics: warnings for skipped and corrupt files; ImportReport counts; OSError for
an unreadable source directory.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

import lmdb

from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import CorruptQueueFile, parse
from fastpost.mail.queue.queue_id import make_id, number_of, valid_queue_id
from fastpost.mail.queue.segment import KIND_MESSAGE
from fastpost.mail.queue.store import FIRST_NUMBER
from fastpost.util import log

#: Postfix queue -> fastpost state, in the order they are walked.
QUEUES = (("incoming", ix.INCOMING), ("active", ix.INCOMING), ("deferred", ix.DEFERRED),
          ("hold", ix.HOLD), ("corrupt", ix.CORRUPT))
LOG_DIRS = (("defer", ix.LOG_DEFER), ("bounce", ix.LOG_BOUNCE), ("trace", ix.LOG_TRACE))
BATCH_BYTES = 8 << 20
BATCH_COUNT = 1000


@dataclass
class ImportReport:
    imported: int = 0
    renamed: dict = field(default_factory=dict)  # old ID -> new ID
    skipped: list = field(default_factory=list)  # (path, reason)
    corrupt: list = field(default_factory=list)  # queue IDs stored as corrupt


def _walk(top: str):
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(dirpath, name), name


def _read_logs(src: str, queue_id: str) -> list[tuple[bytes, bytes]]:
    """Return (kind, entry) for every entry in the message's defer/bounce/trace logs."""
    out = []
    for dirname, kind in LOG_DIRS:
        base = os.path.join(src, dirname)
        if not os.path.isdir(base):
            continue
        path = _find_log(base, queue_id)
        if path is None:
            continue
        with open(path, "rb") as fh:
            text = fh.read()
        for block in text.split(b"\n\n"):
            block = block.strip(b"\n")
            if block:
                out.append((kind, block + b"\n"))
    return out


def _find_log(base: str, queue_id: str) -> str | None:
    direct = os.path.join(base, queue_id)
    if os.path.isfile(direct):
        return direct
    for dirpath, _dirs, files in os.walk(base):
        if queue_id in files:
            return os.path.join(dirpath, queue_id)
    return None


def log_recipients(logs) -> set[str]:
    """Return the recipients named in defer log entries (``recipient=`` lines)."""
    out = set()
    for kind, block in logs:
        if kind != ix.LOG_DEFER:
            continue
        for line in block.split(b"\n"):
            if line.startswith(b"recipient="):
                out.add(line[10:].decode("utf-8", "surrogateescape"))
    return out


class _IdSource:
    """New IDs for renamed messages, numbers reserved in the caller's write transaction."""

    def __init__(self, store, long: bool):
        self.store = store
        self.long = long
        self.next = self.end = 0

    def new(self, txn) -> str:
        if self.next >= self.end:
            self.next = self.store.index.reserve(txn, b"next_number", 256, FIRST_NUMBER)
            self.end = self.next + 256
        n = self.next
        self.next += 1
        now = time.time()
        return make_id(self.long, int(now), int((now % 1) * 1_000_000), n)


def import_postfix_queue(store, src: str, *, on_message=None) -> ImportReport:
    """Import every complete queue file of the Postfix queue directory ``src``.

    ``on_message(old_id, new_id, where)`` is called for each imported message (the
    command logs it). Returns an ImportReport.
    """
    report = ImportReport()
    ids = _IdSource(store, store.settings.long_queue_ids)
    writer = store.new_segment()
    pending: list = []
    size = 0
    try:
        for qname, state in QUEUES:
            top = os.path.join(src, qname)
            if not os.path.isdir(top):
                continue
            for path, name in _walk(top):
                where = os.path.relpath(path, src)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    if not valid_queue_id(name):
                        report.skipped.append((where, "not a queue file name"))
                        log.warn("%s: skipped: not a queue file name", where)
                        continue
                    if state != ix.CORRUPT and not st.st_mode & stat.S_IXUSR:
                        report.skipped.append((where, "incomplete (not marked ready)"))
                        log.warn("%s: skipped: incomplete queue file", where)
                        continue
                    with open(path, "rb") as fh:
                        data = fh.read()
                except OSError as exc:
                    report.skipped.append((where, exc.strerror))
                    log.warn("%s: skipped: %s", where, exc.strerror)
                    continue
                item = _prepare(store, ids, report, name, where, state, st, data, src)
                if item is None:
                    continue
                pending.append(item)
                size += len(data)
                if size >= BATCH_BYTES or len(pending) >= BATCH_COUNT:
                    _flush(store, ids, writer, pending, report, on_message)
                    pending, size = [], 0
        if pending:
            _flush(store, ids, writer, pending, report, on_message)
    finally:
        store.seal(writer)
    return report


def _prepare(store, ids, report, name, where, state, st, data, src):
    flags = ix.FLAG_FORCE_EXPIRE if st.st_mode & stat.S_IXGRP else 0
    next_retry = st.st_mtime if state == ix.DEFERRED else 0.0
    logs = _read_logs(src, name)
    try:
        parsed = parse(data)
        reason = None
    except CorruptQueueFile as exc:
        parsed, reason = None, str(exc)
    # (the queue ID is chosen in _flush, with the batch's others: _choose_ids)
    return [name, name, where, state, flags, next_retry, logs, data, parsed, reason]


def _choose_ids(store, ids, pending, report) -> None:
    """Give each pending message its queue ID, in one durable index transaction.

    A message keeps its Postfix ID unless a fastpost message may have it: the ID is in
    the index (or earlier in this batch), or its number lies in [FIRST_NUMBER, the
    counter), where committers' blocks come from: a committer does not look its IDs up
    (Committer.builder), so a number it may still give out must not come in with an
    import. The counter is raised above every kept number in the same transaction, so
    later blocks start above them; the renamed messages' numbers are reserved after
    that raise. Write transactions are serialised across processes, so a committer's
    reservation comes wholly before or wholly after this decision.
    """
    def choose(txn):
        handed = store.index.counter(txn, b"next_number")  # committers' numbers are below
        kept: set = set()
        renamed = []
        top = -1
        for item in pending:
            name = item[1]
            number = number_of(name)
            if (name in kept or store.index.exists(txn, name)
                    or (number is not None and FIRST_NUMBER <= number < handed)):
                renamed.append(item)
                continue
            kept.add(name)
            if number is not None and number > top:
                top = number
        if top >= 0:
            store.index.raise_counter(txn, b"next_number", top)
        for item in renamed:
            item[0] = ids.new(txn)
            report.renamed[item[1]] = item[0]
    store.numbers_txn(choose)


def _flush(store, ids, writer, pending, report, on_message) -> None:
    _choose_ids(store, ids, pending, report)
    frames = [(KIND_MESSAGE, p[3] if p[8] is not None else ix.CORRUPT, p[0], p[7]) for p in pending]
    placed = store.append_frames(writer, frames)
    try:
        with store.index.write() as txn:
            for (qid, name, where, state, flags, next_retry, logs, data, parsed, reason), (off, length) \
                    in zip(pending, placed):
                if parsed is None:
                    log.warn("%s: corrupt queue file (%s): moved to the corrupt queue", where, reason)
                    report.corrupt.append(qid)
                    info = ix.MessageInfo(qid, ix.CORRUPT, flags, writer.segid, off, length, time.time(),
                                          0.0, 0, "", [])
                else:
                    deferred = log_recipients(logs)
                    info = ix.MessageInfo(
                        qid, state, flags, writer.segid, off, length, parsed.arrival,
                        next_retry, parsed.size, parsed.sender or "",
                        [ix.RcptInfo(r.offset, r.address,
                                     ix.RCPT_DONE if r.done else
                                     ix.RCPT_DEFERRED if r.address in deferred else ix.RCPT_PENDING)
                         for r in parsed.recipients],
                    )
                if not store.index.insert(txn, info):
                    raise AssertionError(f"{qid}: queue ID taken during import")
                for kind, block in logs:
                    store.index.append_log(txn, qid, kind, block)
                report.imported += 1
            seg = store.index.segment(txn, writer.segid) or ix.SegmentInfo(writer.segid, created=time.time())
            seg.watermark = max(seg.watermark, writer.size)
            store.index.put_segment(txn, seg)
    except lmdb.Error as exc:
        raise store.index_error(exc) from None
    if on_message is not None:
        for p in pending:
            on_message(p[1], p[0], p[2])
