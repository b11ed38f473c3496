"""fdatasync timed: the pure-Python reference of ext/fastpost/mail/queue/_syncio_c.pyx.

Postfix counterpart: none (a measuring aid for the committer's I/O thread).

``fdatasync_timed(fd)`` syncs ``fd`` and returns the CLOCK_MONOTONIC seconds at which
the sync was called and returned. The committer uses it only when
FASTPOST_COMMIT_TRACE is set (benchmarks/committer_gil.py): the compiled twin reads
the return time before its thread asks for the GIL again, so the time from there to
the thread running Python (time.perf_counter(), the same clock on Linux) is the GIL
wait after the sync. This reference reads it after (it is the specification and the
differential tests' oracle, not a measuring tool).

Diagnostics: OSError with the errno of a failed sync (EINTR is retried).
"""

from __future__ import annotations

import os
import time


def fdatasync_timed(fd: int) -> tuple:
    """fdatasync(fd); return CLOCK_MONOTONIC seconds (called, returned)."""
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"fdatasync: {os.strerror(exc.errno)}") from None
    return (t0, time.clock_gettime(time.CLOCK_MONOTONIC))
