"""qmgr's in-memory scheduler: transports, destinations, entries, concurrency windows.

Postfix counterpart: src/qmgr/qmgr_transport.c, qmgr_queue.c, qmgr_entry.c,
qmgr_feedback.c, qmgr_job.c (whose preemption this replaces, see below);
proto/SCHEDULER_README.html.

Plain data and arithmetic, no I/O, so it can be tested and measured alone.

Structure
    Transport   a master.cf delivery service (smtp, relay, local, error, ...): its
                limits, a virtual clock, and a heap of *ready* destinations
    Queue       one destination of a transport (the next hop, lower-cased): its
                concurrency window, busy count, failure state, and a heap of entries
    Entry       one delivery request to be made: a message and up to
                ``<transport>_destination_recipient_limit`` of its recipients

Concurrency (Postfix's 2.5 scheduler, re-derived from its documentation):
  * a destination starts with a window of ``initial_destination_concurrency`` (never
    above ``<transport>_destination_concurrency_limit``, 0 = no limit);
  * a delivery that did not report a destination failure is positive feedback: the
    window grows by ``..._positive_feedback`` (``1``, ``1/concurrency`` or
    ``1/sqrt_concurrency``, or a number), applied in whole steps (hysteresis 1), and
    only while the window is in use (window < busy + initial concurrency);
  * a destination failure (the agent's hop status: connection refused, timeout, 421)
    is negative feedback: the window shrinks by ``..._negative_feedback`` (in whole
    steps, never below 1), and ``1/window`` is added to the failed-cohort count; at
    ``..._failed_cohort_limit`` cohorts the destination is *dead*: its waiting entries
    are deferred with the last reason, new mail for it is deferred without an attempt
    ("delivery temporarily suspended: ..."), and it is retried after
    ``minimal_backoff_time`` (or at ``fastpost flush``);
  * ``..._destination_rate_delay`` > 0 makes the window 1 and spaces delivery starts;
    ``..._transport_rate_delay`` spaces starts over the whole transport;
  * a transport never has more deliveries in flight than its master.cf process limit
    (maxproc; ``-`` = default_process_limit, 0 = no limit): one delivery occupies one
    Postfix agent process, and the same number bounds fastpost's concurrent requests.

Which entry goes next (the fairness that Postfix's preemptive scheduler provides):
  * each transport has a virtual clock. When a message's recipients are queued, its
    k-th entry on that transport is stamped ``vtime = clock + k`` (the clock at that
    moment, plus the entry's position within the message);
  * among all destinations of the transport that can start a delivery now, the one
    whose next entry has the smallest (vtime, sequence) goes first, and the clock
    advances to that vtime.
  So every active message gets one delivery per turn: a one-recipient message queued
  behind a 10,000-recipient mailing list waits for at most one entry of the list (and
  of each other message already there), not for all of them, whichever destinations
  the list goes to; two lists progress at the same rate; messages queued at the same
  time go in arrival order. Costs are O(log n) per decision (two heaps), independent of
  the number of waiting messages; destinations that cannot start (window full, dead,
  rate-delayed) are not in the ready heap and cost nothing.

Diagnostics: ValueError from parse_feedback() for a malformed feedback value.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass


# -- feedback ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Feedback:
    """A concurrency feedback setting: ``base`` times 1, 1/window or 1/sqrt(window)."""

    base: float
    divisor: str = ""  # "", "concurrency" or "sqrt_concurrency"

    def value(self, window: float) -> float:
        w = max(window, 1.0)
        if self.divisor == "concurrency":
            return self.base / w
        if self.divisor == "sqrt_concurrency":
            return self.base / math.sqrt(w)
        return self.base


def parse_feedback(text: str) -> Feedback:
    """Parse ``1``, ``0.5``, ``1/concurrency``, ``1 / sqrt_concurrency``."""
    s = "".join(text.split())
    num, slash, div = s.partition("/")
    try:
        base = float(num)
    except ValueError:
        raise ValueError(f"bad concurrency feedback value: {text!r}") from None
    if slash and div not in ("concurrency", "sqrt_concurrency"):
        raise ValueError(f"bad concurrency feedback value: {text!r}")
    if base < 0 or (not slash and base > 1e6):
        raise ValueError(f"bad concurrency feedback value: {text!r}")
    return Feedback(base, div if slash else "")


# -- configuration ------------------------------------------------------------------------

@dataclass(slots=True)
class TransportLimits:
    """The per-transport parameters (``<transport>_...`` or their ``default_`` values)."""

    process_limit: int = 100  # master.cf maxproc; 0 = no limit
    dest_concurrency_limit: int = 20  # 0 = no limit
    initial_concurrency: int = 5
    positive: Feedback = Feedback(1.0)
    negative: Feedback = Feedback(1.0)
    cohort_limit: int = 1  # 0 = never declare a destination dead
    dest_rate_delay: float = 0.0
    transport_rate_delay: float = 0.0
    dest_recipient_limit: int = 50  # recipients per delivery request; 0 = no limit
    recipient_limit: int = 20000  # recipients of this transport in core; 0 = no limit
    dead_time: float = 300.0  # minimal_backoff_time: how long a dead destination stays dead


# -- entries, destinations, transports ----------------------------------------------------

class Entry:
    """One delivery request to make: a message and some of its recipients."""

    __slots__ = ("message", "rcpts", "vtime", "seq", "queue")

    def __init__(self, message, rcpts: list, queue: "Queue"):
        self.message = message
        self.rcpts = rcpts
        self.queue = queue
        self.vtime = 0
        self.seq = 0

    def __lt__(self, other: "Entry") -> bool:
        # (vtime, seq) order without building two tuples per comparison (the heaps
        # compare ~10 times per message)
        v, w = self.vtime, other.vtime
        return v < w or (v == w and self.seq < other.seq)


class Queue:
    """One destination (next hop) of a transport."""

    __slots__ = ("transport", "name", "window", "busy", "success", "failure", "fail_cohorts",
                 "dead_until", "dead_reason", "next_start", "entries", "in_ready", "idle_since")

    def __init__(self, transport: "Transport", name: str):
        self.transport = transport
        self.name = name
        lim = transport.limits
        self.window = float(_cap(lim.initial_concurrency, lim.dest_concurrency_limit))
        self.busy = 0
        self.success = 0.0
        self.failure = 0.0
        self.fail_cohorts = 0.0
        self.dead_until = 0.0  # > 0: dead (throttled) until then
        self.dead_reason: tuple[str, str] | None = None  # (dsn, text)
        self.next_start = 0.0  # rate delay gate
        self.entries: list[Entry] = []  # heap by (vtime, seq)
        self.in_ready = False
        self.idle_since = 0.0

    # -- state --------------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        return self.dead_until > 0

    def limit(self) -> int:
        """Deliveries this destination may have in flight now."""
        if self.dead:
            return 0
        if self.transport.limits.dest_rate_delay > 0:
            return 1
        return max(1, int(self.window))

    def can_start(self, now: float) -> bool:
        return not self.dead and self.busy < self.limit() and self.next_start <= now

    # -- feedback -------------------------------------------------------------------------

    def positive_feedback(self) -> None:
        """A delivery attempt that the destination itself did not fail."""
        lim = self.transport.limits
        self.fail_cohorts = 0.0
        if self.dead:
            return
        cap = lim.dest_concurrency_limit
        if cap and self.window >= cap:
            return
        # Grow only while the window limits (it is in use).
        if self.window < self.busy + lim.initial_concurrency:
            step = lim.positive.value(self.window)
            self.success += step
            while self.success + step / 2 >= 1.0:
                self.window += 1.0
                self.success -= 1.0
                self.failure = 0.0
            if cap and self.window > cap:
                self.window = float(cap)

    def negative_feedback(self, now: float, dsn: str, text: str) -> bool:
        """A destination failure; True when the destination is now dead."""
        lim = self.transport.limits
        if self.dead:
            return False
        self.fail_cohorts += 1.0 / max(self.window, 1.0)
        self.dead_reason = (dsn, text)
        if lim.cohort_limit > 0 and self.fail_cohorts >= lim.cohort_limit:
            self.dead_until = now + lim.dead_time
            return True
        step = lim.negative.value(self.window)
        self.failure += step
        while self.failure + step / 2 >= 1.0:  # whole steps; step/2 absorbs rounding
            self.window -= 1.0
            self.failure -= 1.0
            self.success = 0.0
        if self.window < 1.0:
            self.window = 1.0
        return False

    def revive(self) -> None:
        """End a dead period (its time passed, or an administrator flushed the queue)."""
        lim = self.transport.limits
        self.dead_until = 0.0
        self.fail_cohorts = 0.0
        self.success = self.failure = 0.0
        self.window = float(_cap(lim.initial_concurrency, lim.dest_concurrency_limit))


def _cap(value: int, cap: int) -> int:
    return min(value, cap) if cap > 0 else value


class Transport:
    """One delivery transport: its destinations, limits and ready heap."""

    __slots__ = ("name", "limits", "queues", "ready", "busy", "clock", "seq", "next_start",
                 "suspended_until", "suspend_reason", "incore", "backlog", "_later")

    def __init__(self, name: str, limits: TransportLimits):
        self.name = name
        self.limits = limits
        self.queues: dict[str, Queue] = {}
        self.ready: list[tuple[int, int, Queue]] = []  # heap of (head vtime, head seq, queue)
        self.busy = 0
        self.clock = 0  # virtual time
        self.seq = 0
        self.next_start = 0.0  # transport rate delay gate
        self.suspended_until = 0.0  # the agent could not be reached: until then
        self.suspend_reason = ""
        self.incore = 0  # recipients of this transport in entries or in flight
        self.backlog: list = []  # (message, queue, rcpts) over recipient_limit, FIFO
        self._later: list[Queue] = []  # rate-delayed destinations taken out of the heap

    # -- queues and entries ---------------------------------------------------------------

    def queue(self, nexthop: str) -> Queue:
        key = nexthop.lower()
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = Queue(self, key)
        return q

    def chunk(self, rcpts: list) -> list[list]:
        """Split one message's recipients for one destination into delivery requests."""
        n = self.limits.dest_recipient_limit
        if n <= 0 or len(rcpts) <= n:
            return [rcpts]
        return [rcpts[i:i + n] for i in range(0, len(rcpts), n)]

    def add_entries(self, entries: list[Entry], base: int | None = None) -> None:
        """Stamp a message's entries on this transport and queue them."""
        start = self.clock if base is None else base
        for k, e in enumerate(entries):
            e.vtime = start + k
            self.seq += 1
            e.seq = self.seq
            heapq.heappush(e.queue.entries, e)
            self.incore += len(e.rcpts)
        for q in {e.queue for e in entries}:
            self.mark_ready(q)

    def mark_ready(self, q: Queue) -> None:
        """Put a destination in the ready heap if it has work (its gates are checked
        when it is taken out)."""
        if q.entries and not q.in_ready:
            head = q.entries[0]
            heapq.heappush(self.ready, (head.vtime, head.seq, q))
            q.in_ready = True

    def can_start(self, now: float) -> bool:
        lim = self.limits.process_limit
        return (lim <= 0 or self.busy < lim) and self.next_start <= now and \
            self.suspended_until <= now

    def next_entry(self, now: float) -> tuple[Entry | None, float]:
        """Take the next entry that may start now; (None, wake-up time or 0) if none.

        Destinations that cannot start are dropped from the ready heap; the caller puts
        them back (mark_ready) when their state changes; a rate-delayed one is reported
        through the wake-up time.
        """
        wake = 0.0
        if not self.can_start(now):
            if self.next_start > now:
                wake = self.next_start
            return None, wake
        while self.ready:
            vtime, seq, q = heapq.heappop(self.ready)
            q.in_ready = False
            if not q.entries:
                continue
            head = q.entries[0]
            if (head.vtime, head.seq) != (vtime, seq):  # stale: the head changed
                self.mark_ready(q)
                continue
            if not q.can_start(now):
                if not q.dead and q.busy < q.limit() and q.next_start > now:
                    wake = q.next_start if not wake else min(wake, q.next_start)
                    self._later.append(q)
                continue
            entry = heapq.heappop(q.entries)
            q.busy += 1
            self.busy += 1
            if entry.vtime > self.clock:
                self.clock = entry.vtime
            if self.limits.dest_rate_delay > 0:
                q.next_start = now + self.limits.dest_rate_delay
            if self.limits.transport_rate_delay > 0:
                self.next_start = now + self.limits.transport_rate_delay
            self.mark_ready(q)
            return entry, wake
        return None, wake

    def take_later(self) -> list[Queue]:
        """Rate-delayed destinations seen by next_entry(), to be marked ready later."""
        out = self._later
        self._later = []
        return out

    def finished(self, entry: Entry) -> None:
        """An entry's delivery ended (whatever the outcome): free its slot."""
        q = entry.queue
        q.busy -= 1
        self.busy -= 1
        self.incore -= len(entry.rcpts)

    def drop_entries(self, q: Queue) -> list[Entry]:
        """Take every waiting entry of a destination (it died, or its transport did)."""
        out = list(q.entries)
        q.entries.clear()
        for e in out:
            self.incore -= len(e.rcpts)
        return out


__all__ = ["Entry", "Feedback", "Queue", "Transport", "TransportLimits", "parse_feedback"]
