"""Segment files: framing, appends, and what scan() makes of damage."""

import os

import pytest

from fastpost.mail.queue import segment as S


def batch_buffers(batch, start):
    """The buffers of one batch of (queue id, payload) written at ``start``."""
    bufs, heads, offsets = [], [], []
    pos = start
    for qid, payload in batch:
        frame = S.frame_bytes(S.KIND_MESSAGE, 1, qid.encode(), [payload])
        offsets.append((qid, pos, sum(map(len, frame))))
        pos += sum(map(len, frame))
        bufs += frame
        heads.append(frame[0])
    bufs.append(S.batch_frame(start, len(batch), heads))
    return bufs, offsets


def write_batches(tmp_path, batches, segid=1, prezero=0):
    w = S.SegmentWriter(str(tmp_path), segid, prezero=prezero)
    offsets = []
    for batch in batches:
        bufs, offs = batch_buffers(batch, w.size)
        offsets += offs
        w.append(bufs)
        w.prepare()
    return w, offsets


def ids(res):
    return [[f.queue_id for f in b] for b in res.batches]


def test_create_publishes_and_locks(tmp_path):
    w = S.SegmentWriter(str(tmp_path), 7)
    assert os.listdir(tmp_path) == [S.segment_name(7)]
    fd = os.open(w.path, os.O_RDONLY)
    try:
        assert not S.lock_nb(fd)  # the writer holds it
        w.close()
        assert S.lock_nb(fd)
    finally:
        os.close(fd)
    with open(w.path, "rb") as fh:
        assert S.read_seg_header(fh.read(32))[0] == 7


def test_read_back_and_scan(tmp_path):
    w, offsets = write_batches(tmp_path, [[("A1", b"one"), ("B2", b"two" * 100)], [("C3", b"")]])
    for qid, off, length in offsets:
        frame, payload = S.read_frame(w.fd, off, length)
        assert frame.queue_id == qid
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert [[f.queue_id for f in b] for b in res.batches] == [["A1", "B2"], ["C3"]]
    assert res.good_end == res.size and res.torn == 0 and not res.garbage
    # scanning from the second batch finds only it
    assert [[f.queue_id for f in b] for b in S.scan(w.path, offsets[2][1]).batches] == [["C3"]]


@pytest.mark.parametrize("cut", [1, 10, 24, 30, 45])
def test_torn_tail_is_reported(tmp_path, cut):
    w, offsets = write_batches(tmp_path, [[("A1", b"one")], [("B2", b"two" * 10), ("C3", b"x")]])
    size = os.path.getsize(w.path)
    os.truncate(w.path, size - cut)
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert [[f.queue_id for f in b] for b in res.batches] == [["A1"]]
    assert res.good_end == offsets[1][1]
    # zero bytes ending the torn tail cannot be told from zeros written ahead
    assert res.torn > 0 and res.torn + res.zero_tail == size - cut - offsets[1][1]


def test_corrupt_payload_inside_a_batch(tmp_path):
    w, offsets = write_batches(tmp_path, [[("A1", b"one" * 20), ("B2", b"two")]])
    qid, off, length = offsets[0]
    with open(w.path, "r+b") as fh:
        fh.seek(off + length - 5)
        fh.write(b"!")
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    frames = res.batches[0]
    assert [(f.queue_id, f.payload_ok) for f in frames] == [("A1", False), ("B2", True)]
    with pytest.raises(S.CorruptFrame):
        S.read_frame(w.fd, off, length)


def test_unreadable_header_is_skipped(tmp_path):
    w, offsets = write_batches(tmp_path, [[("A1", b"one"), ("B2", b"two")], [("C3", b"three")]])
    qid, off, length = offsets[0]
    with open(w.path, "r+b") as fh:
        fh.seek(off)
        fh.write(b"JUNK")
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert [[f.queue_id for f in b] for b in res.batches] == [["B2"], ["C3"]]
    assert res.garbage == [(off, length)]


def test_failed_append_leaves_nothing(tmp_path):
    w, _ = write_batches(tmp_path, [[("A1", b"one")]])
    size = w.size
    w.fd_real = w.fd
    os.close(w.fd)
    w.fd = os.open(w.path, os.O_RDONLY)  # writes now fail with EBADF
    with pytest.raises(OSError):
        w.append([b"x" * 100])
    assert w.size == size
    assert os.path.getsize(w.path) == size


def test_storage_error_mapping():
    import errno

    assert isinstance(S.storage_error(OSError(errno.ENOSPC, "x"), "w"), S.InsufficientStorage)
    assert isinstance(S.storage_error(OSError(errno.EDQUOT, "x"), "w"), S.InsufficientStorage)
    assert not isinstance(S.storage_error(OSError(errno.EIO, "x"), "w"), S.InsufficientStorage)


def test_names():
    assert S.parse_segment_name(S.segment_name(255, ".tmp")) == (255, ".tmp")
    assert S.parse_segment_name("junk") is None
    assert S.parse_segment_name("zzzzzzzzzzzzzzzz.seg") is None


# -- pre-zeroed space (fastpost_queue_segment_prezero) ---------------------------------------

def test_prezeroed_tail_is_the_end_not_a_torn_batch(tmp_path):
    w, _ = write_batches(tmp_path, [[("A1", b"one")], [("B2", b"two" * 50)]], prezero=256 << 10)
    assert w.end > w.size and os.path.getsize(w.path) == w.end  # zeros written ahead
    assert w.extensions >= 1
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert ids(res) == [["A1"], ["B2"]]
    assert (res.good_end, res.torn, res.zero_tail) == (w.size, 0, w.end - w.size)
    # a batch lands at the logical end, inside the zeros: the file does not grow
    end = w.end
    bufs, _ = batch_buffers([("C3", b"three")], w.size)
    w.append(bufs)
    assert os.path.getsize(w.path) == end
    assert ids(S.scan(w.path, S.SEG_HEADER_LEN))[-1] == ["C3"]
    w.close()  # trims the zeros: the file ends at its last batch
    assert os.path.getsize(w.path) == w.size


def test_prezero_steps_grow_and_stop_at_the_limit(tmp_path):
    w = S.SegmentWriter(str(tmp_path), 3, prezero=1 << 20, limit=600 << 10)
    assert w.prepare() == S.PREZERO_MIN_STEP  # a small first step
    assert w.prepare() == 0  # enough room left
    grown = 0
    while w.end < w.limit:  # fill it: the steps follow the size, up to the limit
        bufs, _ = batch_buffers([("X", b"x" * 30000)], w.size)
        w.append(bufs)
        grown += w.prepare()
    assert w.end == 600 << 10 and w.prepare() == 0
    w.close()


def test_failed_sync_leaves_no_findable_batch(tmp_path, monkeypatch):
    """A batch written completely whose fdatasync fails (EIO injected) must not be found."""
    import errno

    w, _ = write_batches(tmp_path, [[("A1", b"one")]], prezero=256 << 10)
    size, real = w.size, os.fdatasync
    calls = []

    def failing(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "injected")
        return real(fd)

    monkeypatch.setattr(S.os, "fdatasync", failing)
    bufs, _ = batch_buffers([("B2", b"two"), ("C3", b"three")], w.size)
    with pytest.raises(OSError):
        w.append(bufs)
    monkeypatch.undo()
    assert w.size == size and os.path.getsize(w.path) == size  # truncated, zeros given up
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert ids(res) == [["A1"]] and res.torn == 0


def test_failed_sync_and_failed_truncate_zero_the_batch(tmp_path, monkeypatch):
    """When the truncation fails too, the failed batch is overwritten with zeros."""
    import errno

    w, _ = write_batches(tmp_path, [[("A1", b"one")]], prezero=256 << 10)
    size, end, real = w.size, w.end, os.fdatasync
    state = {"sync": 0}

    def failing_sync(fd):
        state["sync"] += 1
        if state["sync"] == 1:
            raise OSError(errno.EIO, "injected")
        return real(fd)

    def failing_truncate(fd, length):
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(S.os, "fdatasync", failing_sync)
    monkeypatch.setattr(S.os, "ftruncate", failing_truncate)
    bufs, _ = batch_buffers([("B2", b"two" * 100)], w.size)
    with pytest.raises(OSError):
        w.append(bufs)
    monkeypatch.undo()
    assert w.size == size and os.path.getsize(w.path) == end
    with open(w.path, "rb") as fh:
        fh.seek(size)
        assert fh.read() == bytes(end - size)
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert ids(res) == [["A1"]] and (res.torn, res.zero_tail) == (0, end - size)


def test_new_batch_over_an_older_failed_one(tmp_path):
    """Frames of a longer failed batch left behind a newer one are never joined to it,
    nor taken for data (a stale batch end pointing back closes nothing)."""
    w, _ = write_batches(tmp_path, [[("A1", b"one")]])
    start = w.size
    old, _ = batch_buffers([("O1", b"a" * 40), ("O2", b"b" * 40), ("O3", b"c" * 40)], start)
    old_bytes = b"".join(bytes(b) for b in old)
    with open(w.path, "r+b") as fh:
        fh.seek(start)
        fh.write(old_bytes)
    # a complete shorter batch over it
    new, _ = batch_buffers([("N1", b"n" * 40)], start)
    new_bytes = b"".join(bytes(b) for b in new)
    with open(w.path, "r+b") as fh:
        fh.seek(start)
        fh.write(new_bytes)
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert ids(res) == [["A1"], ["N1"]]
    assert res.good_end == start + len(new_bytes) and res.torn > 0
    # the new batch torn after its frame, whose length equals the old first frame's:
    # the old frames follow contiguously, but the old end's chain CRC names other frames
    with open(w.path, "r+b") as fh:
        fh.seek(start)
        fh.write(old_bytes)
        fh.seek(start)
        fh.write(new_bytes[: len(new_bytes) - len(new[-1])])
    res = S.scan(w.path, S.SEG_HEADER_LEN)
    assert ids(res) == [["A1"]] and res.good_end == start
