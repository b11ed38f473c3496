"""Commit-batch writer: the pure-Python reference of ext/fastpost/mail/queue/_syncio_c.pyx.

Postfix counterpart: none (the write + fsync at the end of src/global/mail_stream.c,
done for a batch of messages by a thread of its own).

A BatchWriter runs one batch at a time. On the event loop, ``submit(fd, buffers,
offset, sync)`` hands over a list of bytes objects to be written at ``offset`` of
``fd`` (pwritev, IOV_MAX at a time, short writes resumed, EINTR retried), followed by
fdatasync when ``sync``; the file position is left at the end of what was written. A
thread running ``serve()`` does the work and then makes ``fileno()`` (an eventfd)
readable; ``collect()`` on the loop returns ``(bytes written, 0)``, or ``(0, errno)``
for the first failing call (nothing is undone: the caller truncates), or None while the
batch is still running. ``times`` holds CLOCK_MONOTONIC seconds of the last batch
(writes started, fdatasync called, fdatasync returned: 0.0 for a step not reached).
``stop()`` makes ``serve()`` return once the batch in flight is done.

The compiled twin's thread never holds the GIL; this one takes it like any Python
thread (it is the specification and the differential tests' oracle).

Diagnostics: RuntimeError for a submit() while a batch is in flight; TypeError for a
buffer that is not bytes; OSError if no eventfd can be made.
"""

from __future__ import annotations

import errno
import os
import threading
import time

IOV_MAX = os.sysconf("SC_IOV_MAX")

_IDLE, _QUEUED, _DONE = 0, 1, 2


class BatchWriter:
    """One batch at a time: submit() on the loop, serve() in a thread, collect() on the loop."""

    def __init__(self):
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._cv = threading.Condition(threading.Lock())
        self._state = _IDLE
        self._stopping = False
        self._job = None
        self._result = (0, 0)
        self.times = (0.0, 0.0, 0.0)

    def __del__(self):
        try:
            os.close(self._efd)
        except (OSError, AttributeError):
            pass

    def fileno(self) -> int:
        """The eventfd that becomes readable when a batch is done."""
        return self._efd

    @property
    def busy(self) -> bool:
        """True from submit() until collect() has returned the result."""
        return self._state != _IDLE

    def submit(self, fd: int, buffers: list, offset: int, sync: bool = True) -> None:
        """Write ``buffers`` (bytes) at ``offset`` of ``fd``, then fdatasync (if ``sync``)."""
        if self._state != _IDLE:
            raise RuntimeError("a batch is in flight")
        if not isinstance(buffers, list):
            raise TypeError(f"buffers must be a list, not {type(buffers).__name__}")
        for i, b in enumerate(buffers):
            if not isinstance(b, bytes):
                raise TypeError(f"buffer {i} is {type(b).__name__}, not bytes")
        with self._cv:
            self._job = (fd, [memoryview(b) for b in buffers if len(b)], offset, sync)
            self._state = _QUEUED
            self._cv.notify()

    def collect(self):
        """Return (bytes written, 0) or (0, errno) of the finished batch; None while it runs."""
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            pass
        with self._cv:
            if self._state != _DONE:
                return None
            self._state = _IDLE
            self._job = None
            return self._result

    def stop(self) -> None:
        """Make serve() return once the batch in flight (if any) is done."""
        with self._cv:
            self._stopping = True
            self._cv.notify()

    def serve(self) -> None:
        """Run batches until stop() (call in a thread of its own)."""
        with self._cv:
            while True:
                while self._state != _QUEUED and not self._stopping:
                    self._cv.wait()
                if self._state != _QUEUED:
                    return
                job = self._job
                self._cv.release()
                try:
                    result = self._run(*job)
                finally:
                    self._cv.acquire()
                self._result = result
                self._state = _DONE
                while True:
                    try:
                        os.eventfd_write(self._efd, 1)
                        break
                    except InterruptedError:
                        continue

    def _run(self, fd: int, bufs: list, offset: int, sync: bool):
        t_write = time.clock_gettime(time.CLOCK_MONOTONIC)
        self.times = (t_write, 0.0, 0.0)
        total = 0
        i = 0
        off = offset
        while i < len(bufs):
            try:
                n = os.pwritev(fd, bufs[i : i + IOV_MAX], off)
            except OSError as exc:
                return (0, exc.errno)
            if n == 0:
                return (0, errno.EIO)
            total += n
            off += n
            while n:  # past what was written (a short write leaves part of one)
                if n >= len(bufs[i]):
                    n -= len(bufs[i])
                    i += 1
                else:
                    bufs[i] = bufs[i][n:]
                    n = 0
        try:
            os.lseek(fd, off, os.SEEK_SET)
        except OSError as exc:
            return (0, exc.errno)
        if sync:
            t_sync = time.clock_gettime(time.CLOCK_MONOTONIC)
            try:
                os.fdatasync(fd)
            except OSError as exc:
                self.times = (t_write, t_sync, time.clock_gettime(time.CLOCK_MONOTONIC))
                return (0, exc.errno)
            self.times = (t_write, t_sync, time.clock_gettime(time.CLOCK_MONOTONIC))
        return (total, 0)


def fdatasync_timed(fd: int) -> tuple:
    """fdatasync(fd); return CLOCK_MONOTONIC seconds (called, returned).

    The compiled twin takes the second time before asking for the GIL again (a
    measuring aid: benchmarks/committer_gil.py); here it is taken after. OSError if the
    sync fails.
    """
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"fdatasync: {os.strerror(exc.errno)}") from None
    return (t0, time.clock_gettime(time.CLOCK_MONOTONIC))
