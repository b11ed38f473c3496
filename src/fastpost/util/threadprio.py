"""Experiment: the kernel's scheduling of one thread, chosen by role from the environment.

Postfix counterpart: none (Postfix's daemons are single-threaded and run at the nice
value the master was started with).

Measuring only (docs/accept.md, "Session 10: who runs first on two CPUs"):
``FASTPOST_SCHED`` holds a comma-separated list of ``ROLE=VALUE``; a thread that calls
``apply(ROLE)`` sets its own scheduling to VALUE:

- an integer: the thread's nice value (``setpriority(PRIO_PROCESS, tid, n)``; on Linux
  PRIO_PROCESS with a thread id changes that thread only). Raising it needs no
  privilege; lowering it below the current value needs CAP_SYS_NICE, which the
  daemons have dropped by the time they call this;
- ``batch`` or ``idle``: SCHED_BATCH or SCHED_IDLE (``sched_setscheduler(tid, ...)``),
  which a thread may always choose for itself; ``normal``: SCHED_OTHER, the default
  policy (an explicit "off" side in paired runs).

Roles used: ``index`` (the committer's index thread), ``commit`` (its I/O thread),
``cleanup`` (cleanup's event-loop thread), ``smtpd`` (smtpd's event-loop thread).
A thread inherits its creator's setting at creation: a role left out keeps what it
inherited.

Unset or empty (the default): nothing is changed and nothing is read but the variable.
Fails soft: a malformed entry or a refused change is logged as a warning, and the
thread runs at its inherited priority.
"""

from __future__ import annotations

import os
import threading

from fastpost.util import log

_POLICIES = {"batch": "SCHED_BATCH", "idle": "SCHED_IDLE", "normal": "SCHED_OTHER"}


def parse(text: str) -> dict[str, str]:
    """``"index=19,cleanup=batch"`` -> {"index": "19", "cleanup": "batch"}; ValueError if malformed."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        role, sep, value = item.partition("=")
        role, value = role.strip(), value.strip().lower()
        if not sep or not role or not value:
            raise ValueError(f"FASTPOST_SCHED: expected ROLE=VALUE, got {item!r}")
        if value not in _POLICIES:
            int(value)  # ValueError for anything else
        out[role] = value
    return out


def apply(role: str, environ=os.environ) -> str | None:
    """Set the calling thread's scheduling for ``role``; return what was set, or None."""
    text = environ.get("FASTPOST_SCHED", "")
    if not text:
        return None
    try:
        value = parse(text).get(role)
    except ValueError as exc:
        log.warn("%s", exc)
        return None
    if value is None:
        return None
    tid = threading.get_native_id()
    try:
        if value in _POLICIES:
            os.sched_setscheduler(tid, getattr(os, _POLICIES[value]), os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, tid, int(value))
    except OSError as exc:
        log.warn("FASTPOST_SCHED: %s=%s for thread %d: %s", role, value, tid, exc)
        return None
    return value
