"""Free space in the queue file system: the queue_minfree check.

Postfix counterpart: src/smtpd/smtpd_check.c (the storage check at MAIL FROM, which
answers 452 4.3.1 Insufficient system storage), src/util/fsspace.c.

enough_space() is what smtpd and cleanup ask before they accept a message. The rule
follows Postfix's documentation of queue_minfree: mail is refused while the free space
(for unprivileged users, as statvfs's f_bavail counts it) is at most queue_minfree, or
is less than 1.5 times message_size_limit, or, when the client announced a size
(MAIL FROM ... SIZE=n), is less than that size plus queue_minfree.

The check is advisory: the store itself never relies on it. A write that finds the
disk full raises InsufficientStorage (segment.py), nothing of the failed batch is kept
or acknowledged, and the next commit tries again.

Parameters: queue_minfree, message_size_limit.
Diagnostics: OSError from statvfs (a missing queue directory) propagates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastpost.mail.queue.segment import InsufficientStorage

#: Postfix refuses mail when free space is below this many message_size_limits.
SPACE_MULTIPLIER = 1.5

__all__ = ["InsufficientStorage", "SpaceReport", "enough_space", "free_space"]


@dataclass(frozen=True, slots=True)
class SpaceReport:
    """The outcome of a space check, with the numbers behind it."""

    ok: bool
    free: int  # bytes available to unprivileged users
    needed: int  # the threshold that applied

    def reason(self) -> str:
        return "" if self.ok else f"free space {self.free} bytes is below {self.needed} bytes"


def free_space(path: str) -> int:
    """Return the bytes available to unprivileged users on path's file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def enough_space(path: str, queue_minfree: int = 0, message_size_limit: int = 0,
                 declared_size: int = 0) -> SpaceReport:
    """Decide whether the queue file system can take a message (see the module doc)."""
    free = free_space(path)
    needed = max(queue_minfree + 1, int(SPACE_MULTIPLIER * message_size_limit) if message_size_limit else 0)
    if declared_size > 0:
        needed = max(needed, declared_size + queue_minfree)
    return SpaceReport(free >= needed, free, needed)
