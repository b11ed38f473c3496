"""A full queue file system: 452-style errors, nothing half-written, recovery when space returns.

The test mounts a small tmpfs as the queue directory (root only; CI runs as root).
"""

import asyncio
import os
import subprocess
import time

import pytest

from fastpost.mail.queue import InsufficientStorage, enough_space
from fastpost.mail.queue.message import content_text
from fastpost.mail.queue.store import QueueSettings, QueueStore


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def resize(mnt, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


async def try_commit(c, i: int, body: bytes):
    b = c.builder()
    b.time(time.time())
    b.set_sender(f"s{i}@example.org")
    b.add_recipient(f"r{i}@example.net")
    try:
        await b.write(b"Subject: %d\r\n\r\n" % i + body)
        return await c.commit(b)
    except InsufficientStorage:
        b.abort()
        return None


def test_full_disk_then_space_returns(small_fs):
    qdir = small_fs / "queue"
    st = QueueStore.open(settings=QueueSettings(str(qdir), segment_size=256 * 1024, large_message_size=64 * 1024))
    body = b"0123456789abcdef" * 1200 + b"\r\n"  # ~19 KiB
    big = b"z" * 100 + b"\r\n"
    big = big * 1000  # ~100 KiB: its own file

    async def phase(n, start, conc=4):
        c = st.committer(f"p{start}")
        results = []
        for k in range(0, n, conc):
            batch = [try_commit(c, start + i, big if (start + i) % 9 == 0 else body)
                     for i in range(k, min(n, k + conc))]
            results += await asyncio.gather(*batch)
        await c.close()
        return results

    first = asyncio.run(phase(120, 0))
    ok = [q for q in first if q]
    failed = [i for i, q in enumerate(first) if q is None]
    assert ok and failed, "the file system should have filled up"
    assert not enough_space(str(qdir), queue_minfree=0, message_size_limit=10240000).ok

    # everything acknowledged is intact and indexed; nothing else is
    def check(ids):
        assert {m.queue_id for m in st.messages()} == set(ids)
        for q in ids:
            text = content_text(st.read(q))
            n = int(text.split(b"\n")[0].split()[1])
            assert text.endswith(big.replace(b"\r\n", b"\n") if n % 9 == 0 else body.replace(b"\r\n", b"\n"))

    check(ok)
    names = os.listdir(st.segment_dir)
    assert not [n for n in names if n.endswith(".tmp")]

    # space returns: commits resume, with no restart
    resize(small_fs, "8m")
    second = asyncio.run(phase(20, 1000))
    assert all(second)
    check(ok + second)
    st.close()

    # and a fresh open finds no torn data and the same queue
    st = QueueStore.open(settings=QueueSettings(str(qdir)))
    assert st.recovery.torn_bytes == 0 and st.recovery.messages_indexed == 0
    check(ok + second)
    st.close()


def _fill(mnt, leave_pages: int) -> None:
    """Fill the file system, then give back ``leave_pages`` pages."""
    path = mnt / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"f" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except OSError:
        pass
    os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave_pages * 4096))
    os.close(fd)


def test_index_short_write_on_a_full_disk_is_insufficient_storage(small_fs):
    """LMDB reports a write the full file system cut short as EIO (not ENOSPC): with the
    file system full that is InsufficientStorage (452 4.3.1); with space to spare the
    same EIO stays an error. The committer's I/O thread met it in allocate_segid."""
    import errno

    import lmdb

    from fastpost.mail.queue import QueueError
    from fastpost.mail.queue import index as ix
    from fastpost.mail.queue.store import _index_error

    st = QueueStore.open(settings=QueueSettings(str(small_fs / "queue")))
    _fill(small_fs, leave_pages=1)  # one page free: a multi-page write is cut short
    infos = [ix.MessageInfo(f"ABC{i:08X}", ix.INCOMING, 0, 1, i * 1000, 1000, time.time(), 0.0, 900,
                            f"s{i}@example.org", [ix.RcptInfo(0, f"r{i}@example.net", ix.RCPT_PENDING)])
             for i in range(400)]
    with pytest.raises(lmdb.Error) as ei:
        with st.index.write() as txn:
            for info in infos:
                st.index.insert(txn, info)
    cause = ei.value
    assert cause.code == errno.EIO, "LMDB should report the short write as EIO"
    err = st.index_error(cause)
    assert isinstance(err, InsufficientStorage) and "cut short" in str(err)
    with pytest.raises(InsufficientStorage):  # the store's own transactions map it
        with st.edit() as ed:
            for info in infos:
                st.index.insert(ed.txn, info)
    # allocate_segid (the committer's path to a new segment) fails the same way or with
    # ENOSPC (no page left at all): either way InsufficientStorage, never QueueError
    os.unlink(small_fs / "filler")
    _fill(small_fs, leave_pages=0)
    for _ in range(3):
        with pytest.raises(InsufficientStorage):
            with st.edit() as ed:
                for info in infos:
                    st.index.insert(ed.txn, info)
    # space returns: the same EIO is no full disk any more, and the index works
    os.unlink(small_fs / "filler")
    resize(small_fs, "16m")
    err = _index_error(cause, st.index.path)
    assert isinstance(err, QueueError) and not isinstance(err, InsufficientStorage)
    assert isinstance(_index_error(cause), QueueError)  # no directory: no guess
    with st.edit() as ed:
        for info in infos:
            st.index.insert(ed.txn, info)
    assert st.allocate_segid() > 0
    assert sum(1 for _ in st.messages()) == len(infos)
    st.close()


def test_enough_space(small_fs):
    report = enough_space(str(small_fs), queue_minfree=0, message_size_limit=100_000)
    assert report.ok and report.free > 1_000_000
    assert not enough_space(str(small_fs), queue_minfree=10 << 20).ok
    assert not enough_space(str(small_fs), message_size_limit=10240000).ok  # needs 1.5x
    assert not enough_space(str(small_fs), declared_size=5 << 20).ok
    assert "below" in enough_space(str(small_fs), queue_minfree=10 << 20).reason()


def test_index_full_messages_wait_then_get_indexed(small_fs, tmp_path):
    """Segments have room but the index cannot grow: acknowledged messages wait in the
    committer and are indexed, in order, once the index has space again."""
    qdir = tmp_path / "queue"
    (qdir / "index").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(qdir / "index")], check=True)
    try:
        st = QueueStore.open(settings=QueueSettings(str(qdir)))
        indexed = []

        async def run():
            c = st.committer("ix", on_indexed=indexed.extend)
            acked = []
            for k in range(60):
                acked += await asyncio.gather(*[try_commit(c, k * 20 + i, b"x\r\n") for i in range(20)])
                await asyncio.sleep(0)
            acked = [q for q in acked if q]
            drained = await c.drain(timeout=0.5)
            waiting = c._backlog_len
            resize(qdir / "index", "4m")
            assert await c.drain(timeout=20)
            await c.close()
            return acked, drained, waiting

        acked, drained, waiting = asyncio.run(run())
        assert not drained and waiting > 0, "the index should have filled up"
        assert sorted(indexed) == sorted(acked)
        assert {m.queue_id for m in st.messages()} == set(acked)
        st.close()
    finally:
        subprocess.run(["umount", "-l", str(qdir / "index")], check=False)


def test_full_disk_while_writing_zeros_ahead(small_fs):
    """ENOSPC while pre-zeroing is no refusal: the zeros go, the batch appends plainly."""
    from fastpost.mail.queue import segment as S

    w = S.SegmentWriter(str(small_fs), 1, prezero=1 << 20)
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill it, then leave about 40 KiB: less than the first step
        while True:
            os.write(fd, b"f" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, os.path.getsize(filler) - (40 << 10))
    assert w.prepare() == 0 and w.prezero == 0  # gave up zeros for this segment
    assert os.path.getsize(w.path) == w.size  # what it wrote before ENOSPC is gone
    frame = S.frame_bytes(S.KIND_MESSAGE, 1, b"Q1", [b"m" * 20000])
    start = w.size
    w.append([*frame, S.batch_frame(start, 1, [frame[0]])])
    assert [[f.queue_id for f in b] for b in S.scan(w.path, S.SEG_HEADER_LEN).batches] == [["Q1"]]
    w.close()
