"""The Received: header smtpd writes at the top of every message it accepts (selector).

Postfix counterpart: the header written at the start of DATA in src/smtpd/smtpd.c.
The functions and the header's form are documented in
fastpost.daemons.smtpd._received_py, the one source of both builds: run as Python
under that name (the reference), and compiled by Cython's pure-Python mode, typed by
ext/fastpost/daemons/smtpd/_received_c.pxd, into fastpost.daemons.smtpd._received_c,
which production runs. tests/unit/daemons/test_received.py holds the two builds to
each other.

Parameters and diagnostics: see _received_py.
Fast path: _received_py.py compiled as _received_c; reference: _received_py.py interpreted.
"""

from fastpost._accel import select

_impl = select("fastpost.daemons.smtpd._received_c", "fastpost.daemons.smtpd._received_py")

received_header = _impl.received_header
rfc2822_date = _impl.rfc2822_date
protocol_name = _impl.protocol_name

__all__ = ["received_header", "rfc2822_date", "protocol_name"]
