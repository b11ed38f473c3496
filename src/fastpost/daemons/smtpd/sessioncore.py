"""SessionCore: the smtpd session's per-command plumbing (selector).

Postfix counterpart: src/smtpd/smtpd.c's smtpd_proto() loop and smtpd_chat.c's reply
side. The contract (fields, methods, the subclass's callbacks) is in
fastpost.daemons.smtpd._session_py, the one source of both builds: run as Python under
that name (the reference), and compiled by Cython's pure-Python mode, typed by
ext/fastpost/daemons/smtpd/_session_c.pxd, into fastpost.daemons.smtpd._session_c (a
cdef class), which production runs. tests/unit/daemons/test_sessioncore.py holds the
two builds to each other.

Parameters and diagnostics: see _session_py.
Fast path: _session_py.py compiled as _session_c; reference: _session_py.py interpreted.
"""

from fastpost._accel import select
from fastpost.daemons.smtpd._session_shared import HANGUP, STATS_ORDER

_impl = select("fastpost.daemons.smtpd._session_c", "fastpost.daemons.smtpd._session_py")

SessionCore = _impl.SessionCore
#: SmtpdService's base: the fields of the service the core reads (service.py)
ServiceFields = _impl.ServiceFields
#: The handlers the core implements, by event type (merged into the session's).
CORE_HANDLERS = _impl.CORE_HANDLERS
neuter_helo = _impl.neuter_helo

__all__ = ["SessionCore", "ServiceFields", "CORE_HANDLERS", "HANGUP", "STATS_ORDER", "neuter_helo"]
