# cython: language_level=3, annotation_typing=False
"""One message on its way through a commit: the frame the I/O thread writes and the
index entries the index thread puts, without MessageInfo/RcptInfo objects; one source
run as Python and compiled.

Postfix counterpart: none directly (the end of src/cleanup/cleanup_api.c hands a
finished queue file to the queue directories; fastpost appends a frame to a segment
and indexes it, see fastpost.mail.queue.committer and fastpost.mail.queue.index).

    CommitRec(builder, state, future, callback)
        what Committer.commit_cb keeps per message: the builder's queue ID, state,
        arrival, content size, sender and recipient list (the QueueFileBuilder's own
        Recipient objects, not copies), the frame of a small message (None for a large
        one: fastpost.mail.queue.qframe.message_frame), the caller's future or
        callback; the I/O thread fills in segid, offset
        and length. ``resolve(exc)`` answers the caller.
    commit_record(builder, state, future, callback) -> CommitRec
        what Committer.commit_cb does to a builder that passed its checks, in one
        call: the builder finished (QueueFileBuilder.finish) and marked committing,
        its CommitRec, and for a small message the frame (its chunks taken, the
        completed C record: QueueFileBuilder.take_chunks and size_record), for a
        large one FLAG_LARGE.
    settle(batch, results) -> int
        on the loop after a flush: each record's caller answered in batch order (its
        builder marked committed, or aborted and the error given); how many were kept.
    insert_records(txn, recs, index) -> (dups, live, states)
        the index entries of new messages, exactly what Index.insert_many writes for
        the equal MessageInfo objects (msg entry version 2, rcp chunks, due key, one
        dom key per recipient domain); dups: the records whose queue ID existed
        (nothing written for them), live: {segid: (messages, bytes)}, states:
        {state: messages} (the caller adds the counters and segment totals).

Compiled by setup.py as fastpost.mail.queue._commitrec_c, typed by
ext/fastpost/mail/queue/_commitrec_c.pxd (Cython pure-Python mode,
docs/conventions.md); the selector is fastpost.mail.queue.commitrec.
tests/unit/mail/queue/test_commitrec.py holds both builds to Index.insert_many's
entries.

Parameters: none (the committer's, through the builder).
Failures: lmdb errors from the puts go to the caller (the committer's index round
retries them); a record whose queue ID is not ASCII raises UnicodeEncodeError in
CommitRec() (queue IDs are generated ASCII).
"""

import time

from fastpost.mail.queue.index import (
    DEFERRED, FLAG_LARGE, RCPT_CHUNK, RCPT_DONE, RCPT_PENDING, _ENTRY_VERSION, _MSG, _RCPT,
    _U32, _U64,
)
from fastpost.mail.queue.message import QueueFileBuilder
from fastpost.mail.queue.qframe import message_frame, size_record

__all__ = ["CommitRec", "commit_record", "insert_records", "settle"]

_DEFERRED = DEFERRED
_DONE = RCPT_DONE
_PENDING = RCPT_PENDING
_CHUNK = RCPT_CHUNK
_VERSION = _ENTRY_VERSION
_msg_pack = _MSG.pack
_rcpt_pack = _RCPT.pack
_u32_pack = _U32.pack
_u64_pack = _U64.pack
_time = time.time
_FLAG_LARGE = FLAG_LARGE
_SECTION_DONE = QueueFileBuilder.DONE
_message_frame = message_frame
_size_record = size_record


class CommitRec:
    """One message of a commit (see the module docstring)."""

    def __init__(self, builder, state, future, callback):
        qfb = builder.records
        self.builder = builder
        self.queue_id = builder.queue_id
        self.key = self.queue_id.encode("ascii")
        self.state = state
        self.flags = 0
        self.segid = 0
        self.offset = 0
        self.length = 0
        self.arrival = qfb.arrival or _time()
        self.size = qfb.xtra_offset - qfb.data_offset
        self.sender = qfb.sender or ""
        self.recipients = qfb.recipients
        self.frame = None
        self.future = future
        self.callback = callback

    def resolve(self, exc):
        """Answer the caller: the queue ID, or the error (once: later calls do nothing)."""
        if self.callback is not None:
            cb = self.callback
            self.callback = None
            if exc is not None:
                cb(None, exc)
            else:
                cb(self.queue_id, None)
        elif self.future is not None and not self.future.done():
            if exc is not None:
                self.future.set_exception(exc)
            else:
                self.future.set_result(self.queue_id)


def commit_record(builder, state, future, callback):
    """The builder finished and marked committing; its CommitRec (module docstring).

    The same as QueueFileBuilder.finish(), then take_chunks() and size_record() for
    message_frame(), without the interpreted calls when the builder is already done
    (the fast pass's plain_content); the builder's checks are the caller's
    (Committer.commit_cb)."""
    qfb = builder.records
    if qfb.section != _SECTION_DONE:
        qfb.finish()
    builder.state = "committing"
    rec = CommitRec(builder, state, future, callback)
    if builder.large is None:
        # The whole frame as one buffer: the I/O thread's writev gets one iovec per
        # message, not one per record.
        chunks = qfb.chunks
        qfb.chunks = []
        size_record = _size_record(qfb.xtra_offset - qfb.data_offset, qfb.data_offset,
                                   len(qfb.recipients), qfb.qmgr_flags, qfb.smtputf8)
        rec.frame = _message_frame(state, rec.key, chunks, size_record)
    else:
        rec.flags = _FLAG_LARGE
    return rec


def settle(batch, results):
    """On the loop, after a batch was written: answer each record's caller in order
    (``results[i]``: True, kept; an exception: nothing of it was kept, its builder is
    aborted, which removes a large message's own file). Returns how many were kept."""
    ok = 0
    for i in range(len(batch)):
        rec = batch[i]
        res = results[i]
        b = rec.builder
        if isinstance(res, BaseException):
            b.state = "open"
            b.abort()
            rec.resolve(res)
        else:
            ok += 1
            b.state = "committed"
            rec.resolve(None)
    return ok


def _enc(text):
    return text.encode("utf-8", "surrogateescape")


def _rcp_chunk(rcpts, start, end):
    """The rcp value of recipients[start:end]."""
    parts = []
    for i in range(start, end):
        r = rcpts[i]
        addr = _enc(r.address)
        if len(addr) > 0xFFFF:
            addr = addr[:0xFFFF]
        parts.append(_rcpt_pack(r.offset, _DONE if r.done else _PENDING, len(addr)))
        parts.append(addr)
    return b"".join(parts)


def insert_records(txn, recs, index):
    """Put the index entries of ``recs`` (see the module docstring)."""
    put = txn.put
    msg_db = index.msg
    rcp_db = index.rcp
    due_db = index.due
    dom_db = index.dom
    dups = []
    states = {}
    live = {}
    for rec in recs:
        rcpts = rec.recipients
        n = len(rcpts)
        nlive = 0
        ordered = True
        last = -1
        for i in range(n):
            r = rcpts[i]
            if not r.done:
                nlive += 1
            if r.offset <= last:
                ordered = False
            last = r.offset
        sender = _enc(rec.sender)
        key = rec.key
        value = b"".join((_msg_pack(_VERSION, rec.state, rec.flags, 0, n, rec.segid, rec.offset,
                                    rec.length, rec.arrival, 0.0, rec.size),
                          _u32_pack(len(sender)), sender, _u32_pack(nlive)))
        if not put(key, value, overwrite=False, db=msg_db):
            dups.append(rec)
            continue
        if not ordered:
            rcpts = sorted(rcpts, key=_offset_of)
        prefix = key + b"\0"
        for i in range(0, n, _CHUNK):
            end = i + _CHUNK if i + _CHUNK < n else n
            put(prefix + _u64_pack(rcpts[i].offset), _rcp_chunk(rcpts, i, end), db=rcp_db)
        when = 0.0 if rec.state == _DEFERRED else rec.arrival
        micros = int(when * 1_000_000)
        if micros < 0:
            micros = 0
        put(bytes((rec.state,)) + _u64_pack(micros) + key, b"", db=due_db)
        domains = set()
        for i in range(n):
            address = rcpts[i].address
            at = address.rfind("@")
            domains.add(address[at + 1:].lower() if at >= 0 else "")
        for domain in domains:
            put(_enc(domain) + b"\0" + key, b"", db=dom_db)
        states[rec.state] = states.get(rec.state, 0) + 1
        segid = rec.segid
        got = live.get(segid)
        if got is None:
            live[segid] = (1, rec.length)
        else:
            live[segid] = (got[0] + 1, got[1] + rec.length)
    return dups, live, states


def _offset_of(r):
    return r.offset
