"""fdatasync_timed: the compiled kernel against its pure-Python reference (real files)."""

import errno
import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpost.mail.queue import _syncio_c as C
from fastpost.mail.queue import _syncio_py as P

IMPLS = [pytest.param(C, id="c"), pytest.param(P, id="py")]


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=5000))
def test_same_results(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("sync")
    for impl in (C, P):
        fd = os.open(tmp / impl.__name__, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            before = time.clock_gettime(time.CLOCK_MONOTONIC)
            t0, t1 = impl.fdatasync_timed(fd)
            assert before <= t0 <= t1 <= time.perf_counter()  # one clock
            assert os.pread(fd, len(data) + 1, 0) == data
        finally:
            os.close(fd)


@pytest.mark.parametrize("impl", IMPLS)
def test_errors(impl, tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError) as info:
        impl.fdatasync_timed(fd)  # closed
    assert info.value.errno == errno.EBADF
    assert "fdatasync" in str(info.value)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            impl.fdatasync_timed(r)  # a pipe cannot be synced
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(r)
        os.close(w)


def test_return_time_is_before_the_gil(tmp_path):
    """With another thread holding the GIL, the compiled kernel's return time comes
    before the caller runs again; the gap is the GIL wait the committer's trace shows."""
    fd = os.open(tmp_path / "g", os.O_RDWR | os.O_CREAT, 0o600)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(2000))

    t = threading.Thread(target=spin)
    t.start()
    try:
        gaps = []
        for _ in range(20):
            os.write(fd, b"x")
            _t0, t1 = C.fdatasync_timed(fd)
            gaps.append(time.perf_counter() - t1)
    finally:
        stop.set()
        t.join()
        os.close(fd)
    assert min(gaps) >= 0


# -- pwritev_sync: a batch's write and sync (SegmentWriter.append) ----------------------

_chunks = st.lists(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(bytearray),
                             st.binary(max_size=300).map(memoryview)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(chunks=_chunks, offset=st.integers(0, 5000))
def test_pwritev_sync_same_results(tmp_path_factory, chunks, offset):
    tmp = tmp_path_factory.mktemp("pw")
    got = []
    for impl in (C, P):
        fd = os.open(tmp / impl.__name__, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"\xff" * 10)
            n = impl.pwritev_sync(fd, list(chunks), offset)
            got.append((n, os.pread(fd, offset + n + 10, 0)))
        finally:
            os.close(fd)
    data = b"".join(bytes(c) for c in chunks)
    assert got[0] == got[1]
    assert got[0][0] == len(data) and got[0][1][offset:offset + len(data)] == data


@pytest.mark.parametrize("impl", IMPLS)
def test_pwritev_sync_more_buffers_than_iov_max(impl, tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        bufs = [bytes([i % 251]) * (i % 7 + 1) for i in range(3000)]  # 3 pwritev calls
        assert impl.pwritev_sync(fd, bufs, 4) == sum(map(len, bufs))
        assert os.pread(fd, 1 << 20, 4) == b"".join(bufs)
    finally:
        os.close(fd)


@pytest.mark.parametrize("impl", IMPLS)
def test_pwritev_sync_errors(impl, tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError) as info:
        impl.pwritev_sync(fd, [b"x"], 0)  # closed: the write fails
    assert info.value.errno == errno.EBADF
    null = os.open("/dev/null", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            impl.pwritev_sync(null, [b"x", b"y"], 0)  # written, but it cannot be synced
        assert info.value.errno == errno.EINVAL
        assert "fdatasync" in str(info.value)
    finally:
        os.close(null)
    fd = os.open(tmp_path / "g", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(TypeError):
            impl.pwritev_sync(fd, ["text"], 0)  # not a buffer
    finally:
        os.close(fd)
