# cython: language_level=3
"""Segment I/O without the GIL: the compiled kernel.

Reference and specification: src/fastpost/mail/queue/_syncio_py.py (same names, same
arguments, same results). ``pwritev_sync`` writes a batch and syncs it with the GIL
released once (the committer's I/O thread would otherwise take the GIL back between
the write and the sync, waiting for the event loop when it holds it).
``fdatasync_timed`` (a measuring aid) reads the return time before the GIL is asked
for again, so a caller that reads time.perf_counter() (CLOCK_MONOTONIC on Linux, the
same clock) as soon as it runs sees how long its thread waited for the GIL after the
sync.
"""

import os

from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from libc.errno cimport errno, EINTR, EIO
from libc.stdlib cimport malloc, free


cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t pwritev(int fd, const iovec *iov, int iovcnt, long long offset)

cdef enum:
    _IOV_MAX = 1024  # iovecs per pwritev (segment.IOV_MAX, the kernel's limit)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def fdatasync_timed(int fd):
    """fdatasync(fd) without the GIL; return CLOCK_MONOTONIC seconds (called, returned).

    OSError (with the errno) if the sync fails; EINTR is retried.
    """
    cdef double t0, t1
    cdef int rc, err = 0
    with nogil:
        t0 = _now()
        while True:
            rc = fdatasync(fd)
            if rc == 0 or errno != EINTR:
                break
        if rc < 0:
            err = errno
        t1 = _now()
    if rc < 0:
        raise OSError(err, f"fdatasync: {__import__('os').strerror(err)}")
    return (t0, t1)


def pwritev_sync(int fd, list buffers, long long offset):
    """Write every buffer of ``buffers`` at ``offset`` on, in order (pwritev, IOV_MAX
    buffers at a time, short writes continued), then fdatasync(fd); the GIL is released
    once for all of it. Return the bytes written.

    OSError with the errno of a failed write or sync (EINTR is retried; EIO for a
    write that made no progress): how much was written before is then unknown to the
    caller, which removes it (SegmentWriter.rollback).
    """
    cdef Py_ssize_t n = len(buffers), k = 0, s = 0, i
    cdef Py_buffer *views = <Py_buffer *>malloc((n if n else 1) * sizeof(Py_buffer))
    cdef iovec *iov = <iovec *>malloc((n if n else 1) * sizeof(iovec))
    cdef long long total = 0
    cdef ssize_t r
    cdef int cnt, rc = 0, err = 0, failed_sync = 0
    if views == NULL or iov == NULL:
        free(views)
        free(iov)
        raise MemoryError()
    try:
        for i in range(n):
            PyObject_GetBuffer(buffers[i], &views[k], PyBUF_SIMPLE)
            if views[k].len == 0:
                PyBuffer_Release(&views[k])
                continue
            iov[k].iov_base = views[k].buf
            iov[k].iov_len = <size_t>views[k].len
            k += 1
        with nogil:
            while s < k:
                cnt = <int>(k - s) if k - s < _IOV_MAX else _IOV_MAX
                r = pwritev(fd, &iov[s], cnt, offset + total)
                if r < 0:
                    if errno == EINTR:
                        continue
                    err = errno
                    break
                if r == 0:
                    err = -1  # no progress: EIO, said so
                    break
                total += r
                while r > 0:  # past what was written (a short write leaves part of one)
                    if <size_t>r >= iov[s].iov_len:
                        r -= <ssize_t>iov[s].iov_len
                        s += 1
                    else:
                        iov[s].iov_base = <char *>iov[s].iov_base + r
                        iov[s].iov_len -= <size_t>r
                        r = 0
            if err == 0:
                while True:
                    rc = fdatasync(fd)
                    if rc == 0 or errno != EINTR:
                        break
                if rc < 0:
                    err = errno
                    failed_sync = 1
    finally:
        for i in range(k):
            PyBuffer_Release(&views[i])
        free(views)
        free(iov)
    if err:
        if err == -1:
            raise OSError(EIO, "write made no progress")
        if failed_sync:
            raise OSError(err, f"fdatasync: {os.strerror(err)}")
        raise OSError(err, os.strerror(err))
    return total
