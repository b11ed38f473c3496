# cython: language_level=3, annotation_typing=False
"""The cleanup connection's hot fields and its attach(): one source, run as Python
and compiled.

cleanup_clnt._Conn (one connection to cleanup, shared by many transactions) derives
from ConnFields: the fields every message reads or writes (the transactions by
number, the frames waiting for the next write, the flags of the write and of the
connection, the idle timer and the watchdog) are C members in the compiled build, so
smtpd's compiled transaction (daemons/smtpd/_cleanuptxn_py.py) reads them without
a dictionary lookup each, and ``attach()``, which starts each message on the
connection, is a C call from it instead of two interpreted calls
(CleanupClient.start and the connection's attach, ~4k instructions per message).

What stays in cleanup_clnt._Conn (interpreted): everything else, and the methods
attach() calls back by name: ``flush()`` (scheduled once per batch of frames) and
``armed(txn)`` (the watchdog, when none runs).

One source, two modules (Cython's pure-Python mode, docs/conventions.md): this file
is the reference, imported as fastpost.mail._cleanupconn_py; setup.py compiles it,
typed by ext/fastpost/mail/_cleanupconn_c.pxd, into fastpost.mail._cleanupconn_c,
which cleanup_clnt selects (fastpost._accel.select).

Parameters: ipc_ttl (``ttl``, given by CleanupClient). Diagnostics: none of its own.
"""

from __future__ import annotations

import time

from fastpost.mail import cleanup_proto as P

__all__ = ["ConnFields"]

_OP_OPEN = P.OPEN
_monotonic = time.monotonic


class ConnFields:
    """The fields of one connection to cleanup that each message touches."""

    __slots__ = ("loop", "txns", "next_tid", "out", "flush_scheduled", "ready", "closed",
                 "started", "ttl", "paused", "idle_handle", "watch_handle")

    def __init__(self, loop, ttl):
        self.loop = loop
        self.txns = {}  # transaction number -> transaction
        self.next_tid = 1
        self.out = []  # frames for the next write (flush())
        self.flush_scheduled = False
        self.ready = False  # connected and greeted
        self.closed = False
        self.started = _monotonic()
        self.ttl = ttl  # ipc_ttl: no new message on a connection older than this
        self.paused = False  # the socket is full (pause_writing)
        self.idle_handle = None  # the ipc_idle timer, while no message is open
        self.watch_handle = None  # the ipc_timeout watchdog, while an answer is due

    def usable(self):
        """True when a new message may start here: open and not older than ipc_ttl."""
        return not self.closed and _monotonic() - self.started <= self.ttl

    def attach(self, txn, frame):
        """Give ``txn`` its number on this connection and send ``frame`` as its OPEN."""
        tid = self.next_tid
        self.next_tid = tid + 1
        txn.conn = self
        txn.tid = tid
        self.txns[tid] = txn
        frame["o"] = _OP_OPEN
        frame["t"] = tid
        self.out.append(frame)
        if not self.flush_scheduled and self.ready:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        if self.watch_handle is None:
            self.armed(txn)
        return txn
