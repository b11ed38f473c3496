"""SessionCore: the smtpd session's per-command plumbing (selector).

Postfix counterpart: src/smtpd/smtpd.c's smtpd_proto() loop and smtpd_chat.c's reply
side. The contract (fields, methods, the subclass's callbacks) is in
fastpost.daemons.smtpd._session_py, the reference and specification; production runs
the compiled cdef class of ext/fastpost/daemons/smtpd/_session_c.pyx, checked against
the reference by tests/unit/daemons/smtpd/test_sessioncore.py.

Parameters and diagnostics: see _session_py.
Fast path: ext/fastpost/daemons/smtpd/_session_c.pyx; reference: _session_py.py
"""

from fastpost._accel import select
from fastpost.daemons.smtpd._session_py import HANGUP, STATS_ORDER, neuter_helo

_impl = select("fastpost.daemons.smtpd._session_c", "fastpost.daemons.smtpd._session_py")

SessionCore = _impl.SessionCore
#: The handlers the core implements, by event type (merged into the session's).
CORE_HANDLERS = _impl.CORE_HANDLERS

__all__ = ["SessionCore", "CORE_HANDLERS", "HANGUP", "STATS_ORDER", "neuter_helo"]
