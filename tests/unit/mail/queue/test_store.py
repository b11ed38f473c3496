"""The queue store in one process: commit, read, list, edit, reclaim, compact, rebuild."""

import asyncio
import os
import time

import pytest

from fastpost.mail.queue import index as ix
from fastpost.mail.queue.message import parse
from fastpost.mail.queue.queue_id import parse_short
from fastpost.mail.queue.store import QueueError, QueueStore

from .conftest import commit_one, fill, settings


def test_commit_read_and_count(store):
    ids = fill(store, 30)
    assert len(set(ids)) == 30
    assert all(len(i) == 11 for i in ids)  # Postfix-sized short IDs
    assert store.counts()["incoming"] == 30
    info = store.get(ids[3])
    assert info.sender == "sender3@example.org" and info.state == ix.INCOMING
    p = parse(store.read(ids[3]))
    assert [r.address for r in p.recipients] == ["rcpt3@example.net"]
    assert [r.offset for r in p.recipients] == [r.offset for r in info.recipients]
    assert info.size == p.size


def test_ids_are_unique_across_committers_and_reopen(tmp_path):
    seen = set()
    for _ in range(3):
        with QueueStore.open(settings=settings(tmp_path)) as st:
            ids = fill(st, 20)
            seen.update(parse_short(i)[1] for i in ids)
    assert len(seen) == 60


def test_long_ids(tmp_path):
    with QueueStore.open(settings=settings(tmp_path, long_queue_ids=True)) as st:
        ids = fill(st, 3)
        assert all("z" in i for i in ids)
        assert st.get(ids[0]) is not None


def test_listing_order_and_batches(store):
    ids = fill(store, 25)
    with store.edit() as ed:
        ed.set_state(ids[0], ix.HOLD)
        ed.set_state(ids[1], ix.DEFERRED, next_retry=time.time() + 100)
        ed.set_state(ids[2], ix.DEFERRED, next_retry=time.time() + 50)
        ed.set_state(ids[3], ix.ACTIVE)
    listed = [m.queue_id for m in store.messages(batch=4)]  # small batches: resumption
    assert len(listed) == 25 and len(set(listed)) == 25
    assert listed[0] == ids[3]  # active first, as showq
    assert listed[-1] == ids[0]  # hold last
    deferred = [m.queue_id for m in store.messages(["deferred"])]
    assert deferred == [ids[2], ids[1]]  # by next retry time
    assert [m.queue_id for m in store.due("deferred", time.time() + 60)] == [ids[2]]
    assert store.counts() == {"incoming": 21, "active": 1, "deferred": 2, "hold": 1, "corrupt": 0}


def test_a_short_listing_is_one_snapshot(store):
    # a queue shorter than the batch is read in one transaction across its states: a
    # message that moves from active to deferred during the listing is listed once
    ids = fill(store, 5)
    with store.edit() as ed:
        ed.set_state(ids[0], ix.ACTIVE)
    it = store.messages()
    assert next(it).queue_id == ids[0]
    with store.edit() as ed:
        ed.set_state(ids[0], ix.DEFERRED, next_retry=time.time() + 100)
    assert [m.queue_id for m in it] == ids[1:]
    # with batches of 2 the walk crosses states inside a transaction and resumes after
    # the last key in the next one, every message once
    with store.edit() as ed:
        ed.set_state(ids[1], ix.HOLD)
    for batch in (1, 2, 3, 4):
        listed = [m.queue_id for m in store.messages(batch=batch)]
        assert sorted(listed) == sorted(ids) and listed[0] in ids[2:] and listed[-1] == ids[1]
    assert [m.queue_id for m in store.messages(["hold", "deferred"], batch=1)] == [ids[1], ids[0]]
    assert list(store.messages([])) == []


def test_listing_survives_concurrent_deletes(store):
    ids = fill(store, 20)
    it = store.messages(batch=3)
    first = [next(it).queue_id for _ in range(3)]
    with store.edit() as ed:
        for qid in ids:
            if qid not in first:
                ed.delete(qid)
                break
    rest = [m.queue_id for m in it]
    assert len(first) + len(rest) == 19


def test_recipient_status_logs_and_domains(store):
    async def run():
        c = store.committer("t")
        qid = await commit_one(c, rcpts=["a@One.example", "b@two.example", "c@one.example"])
        await c.close()
        return qid

    qid = asyncio.run(run())
    assert sorted(store.by_domain("one.example")) == [qid]
    info = store.get(qid)
    with store.edit() as ed:
        ed.mark_recipients(qid, [info.recipients[0].offset], ix.RCPT_DONE)
        ed.append_log(qid, "defer", b"recipient=b@two.example\nreason=try later\n")
        ed.append_log(qid, "defer", b"recipient=c@one.example\nreason=later again\n")
    info = store.get(qid)
    assert [r.status for r in info.recipients] == [ix.RCPT_DONE, 0, 0]
    assert len(info.live_recipients) == 2
    assert [b.split(b"\n")[0] for b in store.logs(qid)] == [b"recipient=b@two.example", b"recipient=c@one.example"]
    exported = parse(store.export(qid))
    assert [r.done for r in exported.recipients] == [True, False, False]
    with store.edit() as ed:
        ed.delete(qid)
    assert store.logs(qid) == [] and list(store.by_domain("one.example")) == []
    with pytest.raises(QueueError):
        store.read(qid)


def test_segment_reclaimed_when_empty(tmp_path):
    st = QueueStore.open(settings=settings(tmp_path, segment_size=65536))
    ids = []
    for _ in range(4):  # one batch per round: the segment rolls between batches
        ids += fill(st, 100, body=b"x" * 400 + b"\r\n")
    segs = {st.get(i).segid for i in ids}
    assert len(segs) > 1
    files = os.listdir(st.segment_dir)
    with st.edit() as ed:
        for qid in ids:
            ed.delete(qid)
    assert os.listdir(st.segment_dir) == []
    with st.index.read() as txn:
        assert list(st.index.segments(txn)) == []
    assert files
    st.close()


def test_large_message_has_its_own_file(tmp_path):
    st = QueueStore.open(settings=settings(tmp_path, large_message_size=8192))
    body = b"".join(b"line %06d of a large message\r\n" % i for i in range(3000))

    async def run():
        c = st.committer("t")
        b = c.builder()
        b.time(time.time())
        b.set_sender("big@example.org")
        b.add_recipient("r@example.net")
        for i in range(0, len(body), 4096):
            await b.write(body[i : i + 4096])
        assert b.large is not None
        qid = await c.commit(b)
        # an aborted large message leaves nothing behind
        b2 = c.builder()
        b2.time(time.time())
        b2.set_sender("")
        b2.add_recipient("r@x")
        await b2.write(body)
        b2.abort()
        await c.close()
        return qid

    qid = asyncio.run(run())
    info = st.get(qid)
    assert info.flags & ix.FLAG_LARGE
    data = st.read(qid)
    from fastpost.mail.queue.message import content_text

    assert content_text(data) == body.replace(b"\r\n", b"\n")
    assert not [n for n in os.listdir(st.segment_dir) if n.endswith(".tmp")]
    with st.edit() as ed:
        ed.delete(qid)
    assert os.listdir(st.segment_dir) == []
    st.close()


def test_compaction_copies_forward(tmp_path):
    st = QueueStore.open(settings=settings(tmp_path, segment_size=65536))
    ids = []
    for _ in range(3):
        ids += fill(st, 100, body=b"y" * 300 + b"\r\n")
    keep = ids[::50]
    with st.edit() as ed:
        for qid in ids:
            if qid not in keep:
                ed.delete(qid)
    before = {st.get(q).segid for q in keep}
    report = st.compact(age=0, ratio=50)
    assert report.messages == len(keep) and report.segments == len(before)
    after = {st.get(q).segid for q in keep}
    assert not after & before
    names = os.listdir(st.segment_dir)
    assert len(names) == 1
    for q in keep:
        assert parse(st.read(q)).sender.startswith("sender")
    st.close()
    # reopening replays nothing twice
    with QueueStore.open(settings=settings(tmp_path)) as st2:
        assert st2.counts()["incoming"] == len(keep)


def test_index_rebuilt_from_segments(tmp_path):
    st = QueueStore.open(settings=settings(tmp_path))
    ids = fill(st, 40)
    st.close()
    for name in os.listdir(tmp_path / "index"):
        os.unlink(tmp_path / "index" / name)
    st = QueueStore.open(settings=settings(tmp_path))
    assert st.counts()["incoming"] == 40
    assert {m.queue_id for m in st.messages()} == set(ids)
    more = fill(st, 5)
    assert not set(more) & set(ids)
    st.close()


def test_read_detects_damage_and_moves_to_corrupt(tmp_path, capsys):
    st = QueueStore.open(settings=settings(tmp_path))
    ids = fill(st, 3)
    info = st.get(ids[1])
    path = os.path.join(st.segment_dir, "%016x.seg" % info.segid)
    with open(path, "r+b") as fh:
        fh.seek(info.offset + info.length - 3)
        fh.write(b"?")
    from fastpost.mail.queue.store import CorruptMessage

    with pytest.raises(CorruptMessage):
        st.read(ids[1])
    assert st.get(ids[1]).state == ix.CORRUPT
    st.read(ids[0])
    st.close()


def test_hold_at_commit(store):
    async def run():
        c = store.committer("t")
        q = await commit_one(c, state=ix.HOLD)
        await c.close()
        return q

    q = asyncio.run(run())
    assert store.get(q).state == ix.HOLD
    assert store.queue_path(store.get(q)) == f"hold/{q}"
    with store.edit() as ed:
        ed.set_state(q, "deferred", next_retry=1.0)
    assert store.queue_path(store.get(q)) == f"deferred/{q[0]}/{q}"


def test_records_parsed_and_requeue_active(store):
    ids = fill(store, 5)
    recs = store.records(ids[0])
    assert chr(recs[0][1]) == "C" and chr(recs[-1][1]) == "E"
    assert store.parsed(ids[0]).sender == "sender0@example.org"
    with store.edit() as ed:
        for qid in ids[:3]:
            ed.set_state(qid, ix.ACTIVE)
    assert store.requeue_active() == 3
    assert store.counts()["incoming"] == 5


def test_cancelled_commit(tmp_path):
    """A commit cancelled while it waits for the flush in flight leaves no trace."""
    import threading

    st = QueueStore.open(settings=settings(tmp_path, large_message_size=8192))

    async def run():
        c = st.committer("t")
        b = c.builder()
        b.time(time.time())
        b.set_sender("")
        b.add_recipient("r@x")
        await b.write(b"z" * 20000 + b"\n")  # spilled: its own file exists now
        assert b.large is not None
        gate = threading.Event()
        held = asyncio.ensure_future(c.run_io(gate.wait))  # hold the I/O thread
        first = asyncio.ensure_future(commit_one(c, 0))
        for _ in range(5):
            await asyncio.sleep(0)
        assert c._flushing  # a flush is requested: the thread takes the queue once free
        task = asyncio.ensure_future(c.commit(b))
        await asyncio.sleep(0)
        assert len(c._queue) == 2  # both wait for the I/O thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(c._queue) == 1
        gate.set()
        await held
        kept = await first
        await c.close()
        return b.queue_id, kept

    dropped, kept = asyncio.run(run())
    assert st.get(dropped) is None and st.get(kept) is not None
    assert not [n for n in os.listdir(st.segment_dir) if not n.endswith(".seg")]
    st.close()


def test_stream_large_message_in_chunks(tmp_path):
    st = QueueStore.open(settings=settings(tmp_path, large_message_size=8192))
    body = b"".join(b"%08d streamed line\r\n" % i for i in range(20000))
    ids = fill(st, 1, body=body)
    chunks = list(st.stream(ids[0], chunk=65536))
    assert len(chunks) > 3 and max(map(len, chunks)) <= 65536
    assert b"".join(chunks) == st.read(ids[0])
    # damage is reported after the last chunk, and the message goes to corrupt
    info = st.get(ids[0])
    with open(os.path.join(st.segment_dir, "%016x.seg" % info.segid), "r+b") as fh:
        fh.seek(info.offset + info.length - 100)
        fh.write(b"\0")
    from fastpost.mail.queue.store import CorruptMessage

    with pytest.raises(CorruptMessage):
        for _ in st.stream(ids[0]):
            pass
    assert st.get(ids[0]).state == ix.CORRUPT
    st.close()
