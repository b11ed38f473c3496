"""Crash points: let the crash-safety tests SIGKILL a process at an exact step.

Postfix counterpart: none.

The tests start a real process with ``FASTPOST_CRASH_AT=name`` (or ``name:N`` for the
N-th time the point is reached) and the process kills itself with SIGKILL when it gets
there: no handler, no flush, no atexit, exactly as an external ``kill -9`` would leave
things, but at a known step. Without the variable every check is one global lookup.

Points (where they sit is documented next to each call):
    commit.before_write    a batch is ready, nothing written
    commit.mid_write       half of the batch's bytes written (the process dies inside)
    commit.before_sync     the batch written, not yet fdatasync'ed
    commit.before_index    synced and acknowledged, not yet in the index
    compact.mid_write      half of a compaction batch written
    compact.before_repoint copies synced, index entries still point at the originals
    compact.before_reclaim entries moved, the emptied segment not yet removed
    reclaim.after_rename   segment renamed to .dead, its index entry still there
    recover.before_index   a torn tail truncated, the replayed frames not yet indexed

Parameters: the FASTPOST_CRASH_AT environment variable (tests only).
Diagnostics: none; the process ends with SIGKILL.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("FASTPOST_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_TARGET = int(_COUNT) if _COUNT.isdigit() else 1
_seen = 0


def hit(name: str) -> bool:
    """Count a pass through ``name``; True when this pass is the one to die at."""
    global _seen
    if not _SPEC or name != _NAME:
        return False
    _seen += 1
    return _seen == _TARGET


def kill() -> None:
    """Die now, as kill -9 would make us."""
    os.kill(os.getpid(), signal.SIGKILL)


def reached(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and its count is reached."""
    if hit(name):
        kill()
