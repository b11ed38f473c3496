"""The kernel's scheduling of a thread: by role from the environment (measuring only),
and SCHED_BATCH for a thread while it is busy (BusySwitch, smtpd's default).

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

``BusySwitch`` (docs/accept.md, "Session 10: smtpd under SCHED_BATCH only when it is
busy"): one thread at SCHED_BATCH from the moment it serves HIGH clients, back at
SCHED_OTHER once it serves LOW or fewer and has not served HIGH for ADAPT_HOLD
seconds. Both the gap between the thresholds and the hold are hysteresis: at
smtp-source -s 100 smtpd's client count swings between ~20 and ~100 a few times a
second (accepts fall behind and catch up), which thresholds alone followed with 12
changes a second. ``FASTPOST_SCHED_ADAPT`` chooses it:
``0`` off, ``1`` on with the defaults, ``HIGH:LOW[:HOLD]`` on with those; unset
means the default (ADAPT_DEFAULT). One ``sched_setscheduler`` per change of state, no
system call per client. Threads the thread creates while at SCHED_BATCH (libuv's
resolver pool, on its first use) inherit it. Fails soft too: a refused change (EPERM, a
seccomp filter) is logged once and the switch stops trying; no session ever sees it.
"""

from __future__ import annotations

import os
import threading
import time

from fastpost.util import log

_POLICIES = {"batch": "SCHED_BATCH", "idle": "SCHED_IDLE", "normal": "SCHED_OTHER"}


#: FASTPOST_SCHED_ADAPT unset: is the adaptive switch on? (docs/accept.md, "Session 10:
#: smtpd under SCHED_BATCH only when it is busy").
ADAPT_DEFAULT = True
#: Clients at which the thread goes to SCHED_BATCH, and at or below which it returns.
#: Measured (accept.md): smtpd at SCHED_BATCH gains msgs/s from smtp-source -s 30 on and
#: is even or loses at -s 20, whose sessions never number more than 20 in smtpd; at -s
#: 30 the count reaches 30 ~150 times a second, at -s 100 it swings between ~20 and 100.
ADAPT_HIGH = 30
ADAPT_LOW = 20
#: Seconds without HIGH clients before the thread leaves SCHED_BATCH.
ADAPT_HOLD = 1.0


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


class BusySwitch:
    """SCHED_BATCH for one thread from ``high`` clients on, SCHED_OTHER again at <= ``low``
    clients once ``hold`` seconds have passed without ``high``.

    The thread's owner calls ``arrived()`` when a client connects and ``gone()`` when
    one leaves (the same thread, e.g. an event loop's protocol callbacks: no locking).
    The return is decided in ``gone()``: a thread left with few clients and no
    departures keeps SCHED_BATCH, which costs nothing while it has little to do.
    ``switches`` counts the policy changes made; ``batch`` is the state set.
    """

    __slots__ = ("high", "low", "hold", "clock", "busy_at", "tid", "clients", "batch",
                 "switches", "broken")

    def __init__(self, high: int = ADAPT_HIGH, low: int = ADAPT_LOW, tid: int | None = None,
                 hold: float = ADAPT_HOLD, clock=time.monotonic):
        if not 0 <= low < high:
            raise ValueError(f"adaptive scheduling: need 0 <= LOW < HIGH, got {high}:{low}")
        self.high, self.low, self.hold, self.clock = high, low, hold, clock
        #: When the thread last served ``high`` clients.
        self.busy_at = 0.0
        #: The thread whose policy changes (default: the one creating the switch).
        self.tid = threading.get_native_id() if tid is None else tid
        self.clients = 0
        self.batch = False
        self.switches = 0
        self.broken = False

    @classmethod
    def from_environ(cls, role: str, environ=os.environ) -> BusySwitch | None:
        """The switch FASTPOST_SCHED_ADAPT asks for (for the calling thread), or None.

        None too when FASTPOST_SCHED names ``role``: a fixed setting is measured as set.
        """
        text = environ.get("FASTPOST_SCHED_ADAPT", "").strip()
        try:
            if role in parse(environ.get("FASTPOST_SCHED", "")):
                return None
        except ValueError:
            pass  # apply() warns about it
        if not text:
            return cls() if ADAPT_DEFAULT else None
        if text == "0":
            return None
        if text == "1":
            return cls()
        parts = text.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError(
                    f"FASTPOST_SCHED_ADAPT: expected 0, 1 or HIGH:LOW[:HOLD], got {text!r}")
            hold = float(parts[2]) if len(parts) == 3 else ADAPT_HOLD
            return cls(int(parts[0]), int(parts[1]), hold=hold)
        except ValueError as exc:
            log.warn("%s", exc)
            return None

    def arrived(self) -> None:
        self.clients += 1
        if self.clients >= self.high:
            self.busy_at = self.clock()
            if not self.batch:
                self._set(True)

    def gone(self) -> None:
        self.clients -= 1
        if self.clients <= self.low and self.batch and self.clock() - self.busy_at >= self.hold:
            self._set(False)

    def _set(self, batch: bool) -> None:
        if self.broken:
            return
        name = "SCHED_BATCH" if batch else "SCHED_OTHER"
        try:
            os.sched_setscheduler(self.tid, getattr(os, name), os.sched_param(0))
        except OSError as exc:
            self.broken = True  # once: the thread keeps whatever it has
            log.warn("adaptive scheduling of thread %d off: %s: %s", self.tid, name, exc)
            return
        self.batch = batch
        self.switches += 1
        log.info("thread %d: %s at %d clients (change %d)", self.tid, name, self.clients,
                 self.switches)
