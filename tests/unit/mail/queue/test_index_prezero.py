"""Zeros ahead of the index's last page (index.py, Index.prepare(); session 9)."""

import errno
import os

import lmdb

from fastpost.mail.queue import index as ix
from fastpost.mail.queue.store import QueueStore

from .conftest import fill, settings


def _used(index) -> int:
    return (index.env.info()["last_pgno"] + 1) * index.env.stat()["psize"]


def _mdb(tmp_path) -> str:
    return os.path.join(str(tmp_path), "index", "data.mdb")


def test_zeros_ahead_are_never_data(tmp_path):
    """Messages indexed over zeros written ahead read back after reopening, and LMDB's
    own consistency walk (every page of every database) passes."""
    with QueueStore.open(settings=settings(tmp_path)) as st:
        added = st.index.prepare()
        assert added >= ix.INDEX_PREZERO_MIN
        size = os.path.getsize(_mdb(tmp_path))
        assert size - _used(st.index) >= ix.INDEX_PREZERO_MIN // 2
        assert st.index.prepare() == 0  # room left: nothing to do, same file
        assert os.path.getsize(_mdb(tmp_path)) == size
        ids = fill(st, 300)
        # the index grew into the zeros: LMDB overwrote them, the file did not grow
        assert _used(st.index) <= os.path.getsize(_mdb(tmp_path))
    with QueueStore.open(settings=settings(tmp_path)) as st:
        assert all(st.get(q) is not None for q in ids)
        assert st.counts()["incoming"] == 300
        more = fill(st, 50)
    env = lmdb.open(os.path.join(str(tmp_path), "index"), max_dbs=8, readonly=True, lock=False)
    with env.begin() as txn:
        names = [k for k, _ in txn.cursor()]
        total = 0
        for name in names:
            for _k, _v in txn.cursor(db=env.open_db(name, txn=txn, create=False)):
                total += 1
    env.close()
    assert total > 350
    with QueueStore.open(settings=settings(tmp_path)) as st:
        assert all(st.get(q) is not None for q in ids + more)


def test_committer_keeps_zeros_ahead_on_ext4(tmp_path):
    """The committer's index thread extends the zeros after its rounds (where the file
    system gains from it: ext4/XFS), so the index file stays ahead of its pages."""
    from fastpost.mail.queue.segment import prezero_helps

    with QueueStore.open(settings=settings(tmp_path)) as st:
        fill(st, 20)
        ahead = os.path.getsize(_mdb(tmp_path)) - _used(st.index)
        if prezero_helps(str(tmp_path)):
            assert st.index.extensions >= 1
            assert ahead >= ix.INDEX_PREZERO_MIN // 2
        else:
            assert st.index.extensions == 0


def test_prezero_off_by_parameter(tmp_path):
    with QueueStore.open(settings=settings(tmp_path, segment_prezero=0)) as st:
        fill(st, 20)
        assert st.prepare_index() == 0
        assert st.index.extensions == 0


def test_space_veto_and_failure_leave_the_file(tmp_path, monkeypatch):
    with QueueStore.open(settings=settings(tmp_path, segment_prezero=0)) as st:
        before = os.path.getsize(_mdb(tmp_path))
        assert st.index.prepare(space_ok=lambda: False) == 0
        assert os.path.getsize(_mdb(tmp_path)) == before

        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ix.os, "fdatasync", full)
        assert st.index.prepare() == 0  # not raised: the index grows as LMDB grows it
        assert os.path.getsize(_mdb(tmp_path)) == before
        monkeypatch.undo()
        assert st.index.prepare() == 0  # off for this process after a failure
        assert os.path.getsize(_mdb(tmp_path)) == before
        ids = fill(st, 5)
    with QueueStore.open(settings=settings(tmp_path)) as st:
        assert all(st.get(q) is not None for q in ids)


def test_zeros_stop_at_the_map_size(tmp_path):
    """A small map (fastpost_queue_index_map_size) is never exceeded by the zeros."""
    with QueueStore.open(settings=settings(tmp_path, index_map_size=1 << 20)) as st:
        st.index.prepare()
        assert os.path.getsize(_mdb(tmp_path)) <= st.index.env.info()["map_size"]
