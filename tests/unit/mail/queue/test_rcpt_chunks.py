"""Recipient statuses in rcp chunks (fastpost.mail.queue.index): a message with many
recipients is stored, read, marked and changed a chunk at a time; version 1 entries
(every recipient inline) are still read and are converted when changed."""

from __future__ import annotations

import struct
import tracemalloc

from fastpost.mail.queue import index as ix

from .conftest import fill


def _chunk_keys(store, qid: str) -> list[bytes]:
    prefix = ix.rcp_prefix(qid)
    with store.index.read() as txn:
        cur = txn.cursor(db=store.index.rcp)
        out = []
        if cur.set_range(prefix):
            for key, _ in cur:
                if not key.startswith(prefix):
                    break
                out.append(bytes(key))
        return out


N = ix.RCPT_CHUNK * 3 + 17


def test_many_recipients_live_in_chunks_and_mark_touches_only_theirs(store):
    (qid,) = fill(store, 1, rcpts=[f"r{i}@d{i % 3}.example" for i in range(N)])
    assert len(_chunk_keys(store, qid)) == 4
    light = store.get(qid, recipients=False)
    assert (light.recipients, light.nrcpt, light.live) == ([], N, N)
    full = store.get(qid)
    assert [r.address for r in full.recipients] == [f"r{i}@d{i % 3}.example" for i in range(N)]
    offsets = [r.offset for r in full.recipients]
    # one recipient in the first chunk, two across a chunk boundary, the very last one
    picks = [offsets[3], offsets[ix.RCPT_CHUNK - 1], offsets[ix.RCPT_CHUNK], offsets[-1]]
    with store.index.read() as txn:
        before = {k: bytes(txn.get(k, db=store.index.rcp)) for k in _chunk_keys(store, qid)}
    with store.edit() as ed:
        assert ed.mark_recipients(qid, picks + [1], ix.RCPT_DONE)  # 1: no such recipient
    with store.index.read() as txn:
        after = {k: bytes(txn.get(k, db=store.index.rcp)) for k in _chunk_keys(store, qid)}
    changed = [k for k in before if before[k] != after[k]]
    assert len(changed) == 3  # chunks 0, 1 and 3; chunk 2 untouched
    assert store.get(qid, recipients=False).live == N - 4
    done = {r.offset for r in store.get(qid).recipients if r.status == ix.RCPT_DONE}
    assert done == set(picks)
    with store.edit() as ed:  # back to pending, deferred: the live count follows
        ed.mark_recipients(qid, picks[:2], ix.RCPT_DEFERRED)
    assert store.get(qid, recipients=False).live == N - 2
    # slices from any offset, in order
    assert [r.offset for r in store.recipients(qid, offsets[ix.RCPT_CHUNK - 2], 4)] == \
        offsets[ix.RCPT_CHUNK - 2 : ix.RCPT_CHUNK + 2]
    live = store.recipients(qid, 0, None, live_only=True)
    assert len(live) == N - 2 and offsets[ix.RCPT_CHUNK] not in {r.offset for r in live}
    # a state change rewrites the msg entry only
    with store.index.read() as txn:
        marked = {k: bytes(txn.get(k, db=store.index.rcp)) for k in _chunk_keys(store, qid)}
    with store.edit() as ed:
        ed.set_state(qid, ix.HOLD)
    with store.index.read() as txn:
        again = {k: bytes(txn.get(k, db=store.index.rcp)) for k in _chunk_keys(store, qid)}
    assert again == marked and store.get(qid, recipients=False).state == ix.HOLD
    assert list(store.by_domain("d1.example")) == [qid]
    with store.edit() as ed:
        assert ed.delete(qid)
    assert _chunk_keys(store, qid) == [] and list(store.by_domain("d1.example")) == []


def test_reading_and_marking_is_bounded_by_the_chunk(store):
    (qid,) = fill(store, 1, rcpts=[f"recipient{i}@example.net" for i in range(20000)])
    offsets = [r.offset for r in store.recipients(qid, 0, None)]
    tracemalloc.start()
    try:
        light = store.get(qid, recipients=False)
        with store.edit() as ed:
            ed.mark_recipients(qid, offsets[5000:5100], ix.RCPT_DONE)
            ed.set_state(qid, ix.DEFERRED, next_retry=1.0)
        part = store.recipients(qid, offsets[9000], 100, live_only=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert light.nrcpt == 20000 and len(part) == 100
    # all 20,000 decoded would be several MB of objects (the former layout)
    assert peak < 1 << 20, peak


def _v1_entry(info: ix.MessageInfo) -> bytes:
    """The former (version 1) msg entry: every recipient inline."""
    sender = info.sender.encode()
    return b"".join([ix._MSG.pack(1, info.state, info.flags, 0, len(info.recipients), info.segid,
                                  info.offset, info.length, info.arrival, info.next_retry,
                                  info.size),
                     struct.pack("<I", len(sender)), sender, ix.pack_recipients(info.recipients)])


def test_version_1_entries_are_read_and_converted(store):
    (qid,) = fill(store, 1, rcpts=[f"v{i}@old.example" for i in range(700)])
    info = store.get(qid)
    with store.index.write() as txn:  # as a queue written before the change holds it
        store.index._drop_recipients(txn, qid)
        txn.put(qid.encode(), _v1_entry(info), db=store.index.msg)
    assert _chunk_keys(store, qid) == []
    old = store.get(qid, recipients=False)  # inline: comes with its recipients
    assert old.rcpts_loaded and old.nrcpt == 700 and old.live == 700
    assert [r.offset for r in store.recipients(qid, info.recipients[650].offset)] == \
        [r.offset for r in info.recipients[650:]]
    with store.edit() as ed:
        ed.mark_recipients(qid, [info.recipients[0].offset], ix.RCPT_DONE)
    assert len(_chunk_keys(store, qid)) == 2  # rewritten as version 2
    new = store.get(qid, recipients=False)
    assert (new.rcpts_loaded, new.nrcpt, new.live) == (False, 700, 699)
    assert [r.address for r in store.get(qid).recipients] == [r.address for r in info.recipients]
