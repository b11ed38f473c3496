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
