"""The commit-batch writer: the compiled kernel against its pure-Python reference.

Real files, a real serving thread, the completion seen through the eventfd as the
committer sees it (select on fileno()).
"""

import errno
import os
import select
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail.queue import _syncio_c as C
from fastpost.mail.queue import _syncio_py as P

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]


class Served:
    """A BatchWriter with its serve() thread; run(fd, buffers, offset) waits for the result."""

    def __init__(self, impl):
        self.bw = impl.BatchWriter()
        self.thread = threading.Thread(target=self.bw.serve, daemon=True)
        self.thread.start()

    def run(self, fd, buffers, offset, sync=True):
        self.bw.submit(fd, buffers, offset, sync)
        while True:
            select.select([self.bw.fileno()], [], [], 10)
            res = self.bw.collect()
            if res is not None:
                return res

    def close(self):
        self.bw.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def served():
    both = {"c": Served(C), "py": Served(P)}
    yield both
    for s in both.values():
        s.close()


def _file(tmp_path, name, prefix=b""):
    path = tmp_path / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, prefix)
    return path, fd


batches_st = st.lists(st.lists(st.binary(max_size=300), max_size=40), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(batches=batches_st, prefix=st.binary(max_size=50))
def test_same_bytes_and_results(served, tmp_path_factory, batches, prefix):
    tmp = tmp_path_factory.mktemp("sync")
    out = {}
    for name, s in served.items():
        path, fd = _file(tmp, name, prefix)
        results = []
        pos = len(prefix)
        try:
            for buffers in batches:
                res = s.run(fd, list(buffers), pos, sync=len(buffers) % 8 == 1)  # some syncs, not many
                results.append(res)
                pos += res[0]
            # the file position follows the writes: a plain write lands at the end
            os.write(fd, b"|end")
        finally:
            os.close(fd)
        out[name] = (results, path.read_bytes())
    assert out["c"] == out["py"]
    results, data = out["c"]
    assert data == prefix + b"".join(b"".join(bs) for bs in batches) + b"|end"
    assert all(err == 0 for _, err in results)


@pytest.mark.parametrize("impl", IMPLS)
def test_more_buffers_than_iov_max(served, tmp_path, impl):
    s = served[impl.__name__.rsplit("_", 1)[-1]]
    bufs = [b"%05d;" % i for i in range(P.IOV_MAX * 2 + 7)]
    path, fd = _file(tmp_path, "many")
    try:
        assert s.run(fd, bufs, 0) == (sum(map(len, bufs)), 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(bufs)


@pytest.mark.parametrize("impl", IMPLS)
def test_errors_are_returned(served, tmp_path, impl):
    s = served[impl.__name__.rsplit("_", 1)[-1]]
    # a full disk: /dev/full refuses every write with ENOSPC
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        assert s.run(fd, [b"x" * 100], 0)[1] in (errno.ENOSPC, errno.ESPIPE)
    finally:
        os.close(fd)
    # a descriptor open for reading only
    path, fd = _file(tmp_path, "ro")
    os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert s.run(fd, [b"abc"], 0) == (0, errno.EBADF)
    finally:
        os.close(fd)
    # and the writer goes on after an error
    path, fd = _file(tmp_path, "after")
    try:
        assert s.run(fd, [b"abc", b"", b"de"], 0) == (5, 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abcde"


@pytest.mark.parametrize("impl", IMPLS)
def test_misuse(impl, tmp_path):
    bw = impl.BatchWriter()
    with pytest.raises(TypeError):
        bw.submit(0, [b"a", "text"], 0)
    assert not bw.busy
    assert bw.collect() is None  # nothing submitted
    path, fd = _file(tmp_path, "busy")
    try:
        bw.submit(fd, [b"a"], 0)  # no thread serves it yet
        assert bw.busy
        with pytest.raises(RuntimeError):
            bw.submit(fd, [b"b"], 1)
        assert bw.collect() is None
        t = threading.Thread(target=bw.serve)
        t.start()
        select.select([bw.fileno()], [], [], 10)
        assert bw.collect() == (1, 0)
        assert bw.times[0] <= bw.times[1] <= bw.times[2]
        bw.stop()
        t.join(10)
        assert not t.is_alive()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a"


@pytest.mark.parametrize("impl", IMPLS)
def test_fdatasync_timed(impl, tmp_path):
    path, fd = _file(tmp_path, "timed", b"data")
    try:
        t0, t1 = impl.fdatasync_timed(fd)
        assert t0 <= t1 <= time.perf_counter()
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        impl.fdatasync_timed(fd)  # closed
    assert info.value.errno == errno.EBADF
