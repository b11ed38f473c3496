"""The committer's per-message record (fastpost.mail.queue._commitrec_py, compiled as
_commitrec_c) against the MessageInfo path it replaces.

insert_records must write exactly the index entries Index.insert_many writes for the
equal MessageInfo (msg, rcp chunks, due and dom keys), with the compiled build and the
interpreted one; the frame kernel (_qframe_c, twin _qframe_py) must give
segment.frame_header(...) + the joined payload. Each example runs in a write transaction that is aborted (nothing is kept).
"""

from __future__ import annotations

import time
import types
import zlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastpost.mail.queue import _commitrec_c, _commitrec_py, _qframe_c, _qframe_py
from fastpost.mail.queue import index as ix
from fastpost.mail.queue.index import Index
from fastpost.mail.queue.message import QueueFileBuilder
from fastpost.mail.queue.segment import KIND_MESSAGE, frame_header

IMPLS = [_commitrec_c, _commitrec_py]
DBS = ("msg", "rcp", "due", "dom")

local = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=8) | st.sampled_from(
    ["", "a", "caf\udce9", "x@y"])
domain = st.sampled_from(["example.org", "EXAMPLE.org", "Ex\u00e4mple.net", "", "b.example"])
address = st.one_of(st.builds(lambda l, d: f"{l}@{d}", local, domain), local)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    idx = Index(str(tmp_path_factory.mktemp("commitrec")), map_size=64 << 20)
    yield idx
    idx.close()


def make_builder(qid, sender, rcpts, done, arrival):
    q = QueueFileBuilder(2048)
    q.time(arrival)
    q.set_sender(sender)
    for i, addr in enumerate(rcpts):
        q.add_recipient(addr, addr)
        q.recipients[-1].done = bool(done[i % len(done)]) if done else False
    q.write(b"Subject: x\r\n\r\nbody\r\n")
    q.finish()
    return types.SimpleNamespace(records=q, queue_id=qid)


def entries(index, txn):
    return {name: list(txn.cursor(db=getattr(index, name))) for name in DBS}


def by_infos(index, txn, recs):
    infos = []
    for r in recs:
        q = r.builder.records
        infos.append(ix.MessageInfo(
            r.queue_id, r.state, r.flags, r.segid, r.offset, r.length, q.arrival or time.time(), 0.0,
            q.xtra_offset - q.data_offset, q.sender or "",
            [ix.RcptInfo(x.offset, x.address, ix.RCPT_DONE if x.done else ix.RCPT_PENDING)
             for x in q.recipients]))
    dups, live = index.insert_many(txn, infos)
    return [d.queue_id for d in dups], live


def check(index, impl, specs, reverse=False):
    """Insert ``specs`` both ways; the entries, dups and live totals must be equal."""
    recs = []
    for n, (sender, rcpts, done, state, large, where) in enumerate(specs):
        b = make_builder(f"4AB{n:X}C", sender, rcpts, done, 1_790_000_000.25 + n)
        rec = impl.CommitRec(b, state, None, None)
        rec.flags = ix.FLAG_LARGE if large else 0
        rec.segid, rec.offset, rec.length = where
        if reverse:
            rec.recipients = list(reversed(rec.recipients))
        recs.append(rec)
    with index.env.begin(write=True) as txn:
        want = by_infos(index, txn, recs)
        want_entries = entries(index, txn)
        txn.abort()
    with index.env.begin(write=True) as txn:
        dups, live, states = impl.insert_records(txn, recs, index)
        got_entries = entries(index, txn)
        txn.abort()
    assert got_entries == want_entries
    assert ([d.queue_id for d in dups], live) == want
    counts = {}
    for r in recs:
        if r.queue_id not in [d.queue_id for d in dups]:
            counts[r.state] = counts.get(r.state, 0) + 1
    assert states == counts


spec = st.tuples(address, st.lists(address, min_size=1, max_size=6), st.lists(st.booleans(), max_size=3),
                 st.sampled_from([ix.INCOMING, ix.HOLD, ix.DEFERRED]), st.booleans(),
                 st.tuples(st.integers(1, 5), st.integers(0, 1 << 40), st.integers(30, 1 << 20)))


@pytest.mark.parametrize("impl", IMPLS, ids=["compiled", "python"])
@settings(max_examples=60, deadline=None)
@given(specs=st.lists(spec, min_size=1, max_size=4))
def test_insert_records_equals_insert_many(index, impl, specs):
    check(index, impl, specs)


@pytest.mark.parametrize("impl", IMPLS, ids=["compiled", "python"])
def test_many_recipients_out_of_order_and_duplicates(index, impl):
    rcpts = [f"r{i}@d{i % 7}.example" for i in range(1100)]
    check(index, impl, [("s@example.org", rcpts, [0, 1, 0], ix.INCOMING, False, (1, 40, 900))], reverse=True)
    # an ID already indexed: reported, nothing written for it
    b = make_builder("4AB0C", "s@x", ["a@b"], [], 1.0)
    with index.env.begin(write=True) as txn:
        rec = impl.CommitRec(b, ix.INCOMING, None, None)
        assert impl.insert_records(txn, [rec], index)[0] == []
        again = impl.CommitRec(b, ix.INCOMING, None, None)
        dups, live, states = impl.insert_records(txn, [again], index)
        assert dups == [again] and live == {} and states == {}
        txn.abort()


@pytest.mark.parametrize("impl", [_qframe_c, _qframe_py], ids=["compiled", "python"])
@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), min_size=1, max_size=6), size=st.binary(min_size=1, max_size=40),
       state=st.integers(0, 255), qid=st.binary(max_size=255))
def test_message_frame(impl, chunks, size, state, qid):
    payload = b"".join([size] + chunks[1:])
    want = frame_header(KIND_MESSAGE, state, qid, len(payload), zlib.crc32(payload)) + payload
    assert impl.message_frame(state, qid, chunks, size) == want
    # a chunk that is bytes-like but not bytes gives the same frame
    assert impl.message_frame(state, qid, [bytearray(c) for c in chunks], size) == want


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), crc=st.integers(0, 0xFFFFFFFF), skip=st.integers(0, 15))
def test_crc32_of_folded_is_zlibs(data, crc, skip):
    """The compiled frame's CRC (crc32_fold.h: 64-byte folds with carry-less multiplies
    past 64 bytes) is zlib's, for any length, starting value and alignment."""
    view = memoryview(data)[skip:]
    assert _qframe_c.crc32_of(view, crc) == _qframe_py.crc32_of(view, crc) == zlib.crc32(view, crc)


def test_crc32_of_every_length_around_the_folds():
    data = bytes((i * 131 + 7) & 0xFF for i in range(700))
    for n in range(len(data)):
        assert _qframe_c.crc32_of(data[:n], 0) == zlib.crc32(data[:n])
        assert _qframe_c.crc32_of(data[:n], 0xFFFFFFFF) == zlib.crc32(data[:n], 0xFFFFFFFF)


def test_crc32_fold_constants():
    """crc32_fold.h's constants are x^(D+32) and x^(D-32) mod zlib's polynomial, bit
    reflected and shifted left by one, for folds over D = 512 and 128 bits."""
    import pathlib
    import re

    def constant(e):
        r = 1
        for _ in range(e):
            r <<= 1
            if r >> 32:
                r ^= 0x104C11DB7
        return int(format(r, "032b")[::-1], 2) << 1

    header = pathlib.Path(__file__).parents[4] / "ext/fastpost/mail/queue/crc32_fold.h"
    got = dict(re.findall(r"#define (FP_K\w+) (0x[0-9a-f]+)ULL", header.read_text()))
    assert {k: int(v, 16) for k, v in got.items()} == {
        "FP_K512_LO": constant(512 + 32), "FP_K512_HI": constant(512 - 32),
        "FP_K128_LO": constant(128 + 32), "FP_K128_HI": constant(128 - 32)}


@pytest.mark.parametrize("impl", [_qframe_c, _qframe_py], ids=["compiled", "python"])
def test_message_frame_refuses_what_the_header_cannot_hold(impl):
    for state, qid in ((256, b"A"), (-1, b"A"), (1, b"A" * 256)):
        with pytest.raises(ValueError):
            impl.message_frame(state, qid, [b"x"], b"C")


def test_commitrec_resolve_answers_once():
    got = []
    b = make_builder("4AB1C", "s@x", ["a@b"], [], 1.0)
    for impl in IMPLS:
        rec = impl.CommitRec(b, ix.INCOMING, None, lambda qid, exc: got.append((qid, exc)))
        rec.resolve(None)
        rec.resolve(None)
        err = OSError(28, "full")
        rec = impl.CommitRec(b, ix.INCOMING, None, lambda qid, exc: got.append((qid, exc)))
        rec.resolve(err)
        assert got[-2:] == [("4AB1C", None), (None, err)]
        got.clear()


def test_compiled_build_is_typed():
    # the .pxd took effect: CommitRec is an extension type with C fields
    rec = _commitrec_c.CommitRec(make_builder("4AB2C", "s@x", ["a@b"], [], 1.0), ix.HOLD, None, None)
    assert not hasattr(rec, "__dict__")
    with pytest.raises(TypeError):
        rec.state = "x"


@pytest.mark.parametrize("impl", IMPLS, ids=["compiled", "python"])
def test_settle_answers_in_order_and_aborts_the_failed(impl):
    got = []

    class Builder:
        def __init__(self, qid):
            self.queue_id = qid
            self.records = make_builder(qid, "s@x", ["a@b"], [], 1.0).records
            self.state = "committing"
            self.aborted = False

        def abort(self):
            self.aborted = True

    err = OSError(28, "full")
    builders = [Builder(q) for q in ("4AB1C", "4AB2C", "4AB3C")]
    recs = [impl.CommitRec(b, ix.INCOMING, None, lambda qid, exc: got.append((qid, exc))) for b in builders]
    assert impl.settle(recs, [True, err, True]) == 2
    assert got == [("4AB1C", None), (None, err), ("4AB3C", None)]
    assert [b.state for b in builders] == ["committed", "open", "committed"]
    assert [b.aborted for b in builders] == [False, True, False]


def _builder_for_commit(sender, rcpts, finished, encoding, large):
    """A MessageBuilder-like object as Committer.commit_cb gets it."""
    q = QueueFileBuilder(2048)
    q.time(1_790_000_000.5)
    q.set_sender(sender)
    for addr in rcpts:
        q.add_recipient(addr, addr)
    if finished:  # the fast pass's road: plain_content added the end already
        assert q.plain_content(b"Subject: x\r\n\r\nbody\r\n" * 3, encoding, 1 << 20)
    else:
        q.write(b"Subject: x\r\n\r\nbody\r\n" * 3)
    q.qmgr_flags = 4 if encoding else 0
    return types.SimpleNamespace(records=q, queue_id="4ABC1", large=object() if large else None,
                                 state="open")


@pytest.mark.parametrize("impl", IMPLS, ids=["compiled", "interpreted"])
@given(sender=address, rcpts=st.lists(address, min_size=1, max_size=4), finished=st.booleans(),
       encoding=st.sampled_from([None, "8bit", "7bit"]), large=st.booleans(),
       state=st.sampled_from([ix.INCOMING, ix.HOLD]))
@settings(max_examples=60, deadline=None)
def test_commit_record_is_finish_take_chunks_and_frame(impl, sender, rcpts, finished, encoding,
                                                      large, state):
    """commit_record(): the builder finished and committing, its record, and the frame
    of the steps it stands for (finish, take_chunks, size_record, message_frame)."""
    mine = _builder_for_commit(sender, rcpts, finished, encoding, large)
    ref = _builder_for_commit(sender, rcpts, finished, encoding, large)
    rec = impl.commit_record(mine, state, None, None)
    assert mine.state == "committing"
    assert (rec.queue_id, rec.key, rec.state, rec.sender) == ("4ABC1", b"4ABC1", state, sender)
    q = ref.records
    q.finish()
    if large:
        assert (rec.flags, rec.frame) == (ix.FLAG_LARGE, None)
        assert mine.records.chunks == q.chunks  # a large message's chunks stay for its file
    else:
        assert rec.flags == 0
        assert rec.frame == _qframe_py.message_frame(state, b"4ABC1", q.take_chunks(), q.size_record())
        assert mine.records.chunks == []
    assert rec.size == q.xtra_offset - q.data_offset


@given(st.lists(st.integers(0, 10**16), min_size=5, max_size=5))
@example([0, 0, 0, 0, 0])
@example([9, 10, 99, 100, 1])
@example([10**15 - 1, 10**14, 10**15 - 1, 123456789, 1])
@example([10**15, 0, 0, 0, 0])
@settings(max_examples=200, deadline=None)
def test_size_record_kernel_is_the_builders(values):
    """qframe.size_record (compiled: digits written in C; values wider than a field take the
    reference's road) gives QueueFileBuilder.size_record's bytes."""
    length, data_offset, count, flags, utf8 = values
    q = QueueFileBuilder(2048)
    q.data_offset, q.xtra_offset = data_offset, data_offset + length
    q.recipients = [None] * min(count, 3)
    q.qmgr_flags, q.smtputf8 = flags, utf8
    want = q.size_record()
    got_c = _qframe_c.size_record(length, data_offset, len(q.recipients), flags, utf8)
    assert got_c == _qframe_py.size_record(length, data_offset, len(q.recipients), flags, utf8) == want
