"""Segment I/O: the pure-Python reference of ext/fastpost/mail/queue/_syncio_c.pyx.

Postfix counterpart: the write and fsync at the end of src/global/mail_stream.c
(pwritev_sync); none for fdatasync_timed (a measuring aid).

``pwritev_sync(fd, buffers, offset)`` writes the buffers at ``offset`` on (pwritev,
IOV_MAX at a time, short writes continued) and then fdatasyncs ``fd``; it returns the
bytes written. The compiled twin does both with the GIL released once
(SegmentWriter.append, the committer's batch): here they are two system calls as
before.

``fdatasync_timed(fd)`` syncs ``fd`` and returns the CLOCK_MONOTONIC seconds at which
the sync was called and returned. The committer uses it only when
FASTPOST_COMMIT_TRACE is set (benchmarks/committer_gil.py): the compiled twin reads
the return time before its thread asks for the GIL again, so the time from there to
the thread running Python (time.perf_counter(), the same clock on Linux) is the GIL
wait after the sync. This reference reads it after (it is the specification and the
differential tests' oracle, not a measuring tool).

Diagnostics: OSError with the errno of a failed write or sync (EINTR is retried; EIO
for a write that made no progress).
"""

from __future__ import annotations

import errno
import os
import time

#: buffers per pwritev (segment.IOV_MAX)
IOV_MAX = 1024


def pwritev_sync(fd: int, buffers: list, offset: int) -> int:
    """Write ``buffers`` at ``offset`` on, then fdatasync(fd); return the bytes written."""
    bufs = [memoryview(b).cast("B") for b in buffers if len(b)]
    total = 0
    i = 0
    while i < len(bufs):
        try:
            n = os.pwritev(fd, bufs[i : i + IOV_MAX], offset + total)
        except InterruptedError:
            continue
        if n == 0:
            raise OSError(errno.EIO, "write made no progress")
        total += n
        while n:  # past what was written (a short write leaves part of a buffer)
            head = bufs[i]
            if n >= len(head):
                n -= len(head)
                i += 1
            else:
                bufs[i] = head[n:]
                n = 0
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"fdatasync: {os.strerror(exc.errno)}") from None
    return total


def fdatasync_timed(fd: int) -> tuple:
    """fdatasync(fd); return CLOCK_MONOTONIC seconds (called, returned)."""
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"fdatasync: {os.strerror(exc.errno)}") from None
    return (t0, time.clock_gettime(time.CLOCK_MONOTONIC))
