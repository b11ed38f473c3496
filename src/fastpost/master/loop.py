"""The master's event loop: descriptors, timers and signals, single-threaded.

Postfix counterpart: src/util/events.c (as the master uses it)

The master does not run asyncio: it forks workers from inside its loop, and a child
must not inherit a running event loop. This loop is a selector (epoll), a heap of
timers, and signals delivered through ``signal.set_wakeup_fd`` so that a handler only
records the signal and the loop acts on it between events.

Diagnostics: an exception raised by a callback propagates out of run() (a master bug
must be loud); OSError from the selector other than EINTR likewise.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import time


class Timer:
    """A pending call_later(); cancel() makes it a no-op."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback, args):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """Readers, timers and signals for one process."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: list = []
        self._seq = itertools.count()
        self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signal_handlers: dict[int, object] = {}
        self._pending_signals: list[int] = []
        self._running = False
        self.selector.register(self._signal_r, selectors.EVENT_READ, (self._drain_signals, ()))

    # -- descriptors ----------------------------------------------------------------

    def add_reader(self, fd: int, callback, *args) -> None:
        """Call callback(*args) whenever fd is readable (replaces an earlier reader)."""
        try:
            self.selector.modify(fd, selectors.EVENT_READ, (callback, args))
        except KeyError:
            self.selector.register(fd, selectors.EVENT_READ, (callback, args))

    def remove_reader(self, fd: int) -> None:
        """Stop watching fd (no error when it was not watched)."""
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def is_reading(self, fd: int) -> bool:
        try:
            self.selector.get_key(fd)
        except (KeyError, ValueError):
            return False
        return True

    # -- timers ---------------------------------------------------------------------

    def call_later(self, delay: float, callback, *args) -> Timer:
        """Call callback(*args) after delay seconds (monotonic clock)."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    # -- signals --------------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback) -> None:
        """Call callback(signum) from the loop (not from the signal handler)."""
        self._signal_handlers[signum] = callback
        signal.signal(signum, self._record_signal)
        signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)

    def _record_signal(self, signum, frame) -> None:
        self._pending_signals.append(signum)

    def _drain_signals(self) -> None:
        try:
            while os.read(self._signal_r, 512):
                pass
        except BlockingIOError:
            pass

    def _dispatch_signals(self) -> None:
        while self._pending_signals:
            signum = self._pending_signals.pop(0)
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                handler(signum)

    # -- running --------------------------------------------------------------------

    def stop(self) -> None:
        """Make run() return after the current iteration."""
        self._running = False

    def run(self) -> None:
        """Dispatch events until stop()."""
        self._running = True
        while self._running:
            self._dispatch_signals()
            if not self._running:
                break
            timeout = None
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                events = self.selector.select(timeout)
            except InterruptedError:
                events = []
            live = self.selector.get_map()
            for key, _ in events:
                if live.get(key.fd) is not key:
                    continue  # unregistered or replaced by an earlier callback
                callback, args = key.data
                callback(*args)
                if not self._running:
                    break
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    timer.cancelled = True
                    timer.callback(*timer.args)

    def close_in_child(self) -> None:
        """Release the loop's descriptors in a forked child (the parent keeps its own)."""
        signal.set_wakeup_fd(-1)
        for fd in (self._signal_r, self._signal_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.selector.close()
