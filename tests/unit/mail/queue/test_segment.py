"""Segment files: framing, appends, and what scan() makes of damage."""

import os

import pytest

from fastpost.mail.queue import segment as S


def write_batches(tmp_path, batches, segid=1):
    w = S.SegmentWriter(str(tmp_path), segid)
    offsets = []
    for batch in batches:
        bufs = []
        pos = w.size
        for qid, payload in batch:
            frame = S.frame_bytes(S.KIND_MESSAGE, 1, qid.encode(), [payload])
            offsets.append((qid, pos, sum(map(len, frame))))
            pos += sum(map(len, frame))
            bufs += frame
        bufs.append(S.batch_frame(w.size, len(batch)))
        w.append(bufs)
    return w, offsets


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
    assert res.torn == size - cut - offsets[1][1]


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
