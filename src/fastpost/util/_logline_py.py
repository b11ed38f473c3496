# cython: language_level=3, annotation_typing=False
"""A busy daemon's informational line to a deferred maillog file, in one call.

Postfix counterpart: none (src/util/msg_logger.c writes each line at once).

util/log.py owns the logging state; this module holds the one part of it that a busy
daemon's every connection passes through (smtpd's ``connect from``, ``client=`` and
``disconnect from`` lines) with typed fields, so that the compiled smtpd session core
and log.info() hand it the finished text and it appends the line to the waiting ones
without an interpreted frame. KEEPER is the one LineKeeper of the process; log.py
switches it on (``on``) only while the maillog file is the only sink and its lines wait
for the loop's turn to end (log.defer_file_writes), and keeps its fields in step with
its own state (the head ``tag[pid]: ``, the loop's thread, the list of waiting lines,
which flush() swaps). Anything else (off, another thread, a new second whose time stamp
must be made) makes keep() answer False, and the caller logs the line the general way
(log._emit), which writes exactly the same bytes.

One source for both builds: run as Python under this name (the reference), compiled
by Cython's pure-Python mode with ext/fastpost/util/_logline_c.pxd into
fastpost.util._logline_c (production). tests/unit/util/test_log.py holds the two to
each other and to log._emit's line.

Diagnostics: none; keep() never raises for a str (a closed loop is log._waiting's).
"""

import threading
import time

_get_ident = threading.get_ident
_time = time.time


class LineKeeper:
    """The deferred maillog file's waiting lines and what a line is made of.

    set_stamp() and set_head() keep ``prefix`` in step; set them, not the fields."""

    def __init__(self):
        self.on = False  # the maillog file is the only sink, its lines deferred
        self.thread = 0  # the loop's thread: lines from others are not kept here
        self.head = ""  # "tag[pid]: "
        self.stamp_second = -1  # the second stamp_host was made for
        self.stamp_host = ""  # "Mmm dd hh:mm:ss host "
        self.prefix = ""  # stamp_host + head: what each line starts with
        self.pending = []  # the waiting lines (log._state.pending, the same list)
        self.limit = 256  # a turn's lines are written when this many wait
        self.loop = None  # the loop whose turn's end writes the waiting lines
        self.flush = None  # log.flush: writes the waiting lines

    def set_stamp(self, second, stamp_host):
        """The time stamp and host of lines logged in ``second``."""
        self.stamp_second = second
        self.stamp_host = stamp_host
        self.prefix = stamp_host + self.head

    def set_head(self, head):
        """``tag[pid]: ``, after the time stamp and host."""
        self.head = head
        self.prefix = self.stamp_host + head

    def keep(self, text):
        """Append ``text``'s line to the waiting ones; False when it is not for here."""
        if not self.on:
            return False
        now = _time()  # (a float: the second stamp_host is for is int(now))
        if not self.stamp_second <= now < self.stamp_second + 1 \
                or _get_ident() != self.thread:
            return False  # (log._emit makes the new second's stamp, then keep() works)
        pending = self.pending
        # (one f-string: compiled, one joined string instead of two concatenations)
        pending.append(f"{self.prefix}{text}\n".encode("utf-8", "surrogateescape"))
        n = len(pending)
        if n == 1:  # the first of a turn: written when the turn ends (log._waiting)
            try:
                self.loop.call_soon(self.flush)
            except RuntimeError:  # the loop is closed: no more turns
                self.flush()
        elif n >= self.limit:
            self.flush()
        return True


KEEPER = LineKeeper()
