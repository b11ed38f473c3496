"""The SMTP server's protocol states, sequencing rules and reply transitions (selector).

Postfix counterpart: the command table and the state checks at the top of each
*_cmd() function in src/smtpd/smtpd.c. What every name means is in
fastpost.smtp._state_py, the one source of both builds: run as Python under that name
(the reference), and compiled by Cython's pure-Python mode, typed by
ext/fastpost/smtp/_state_c.pxd, into fastpost.smtp._state_c (ServerState a cdef
class), which production runs. Every name comes from the one selected module, so the
markers in SEQUENCE (_NO_RCPT, _DISCARD) are the ones callers compare with.
tests/unit/smtp/test_state_builds.py holds the two builds to each other.

Diagnostics: none (see _state_py).
Fast path: _state_py.py compiled as _state_c; reference: _state_py.py interpreted.
"""

from fastpost._accel import select

_impl = select("fastpost.smtp._state_c", "fastpost.smtp._state_py")

# Transaction phases.
READY = _impl.READY
MAIL = _impl.MAIL
RCPT = _impl.RCPT
BDAT_OPEN = _impl.BDAT_OPEN
BDAT_FAILED = _impl.BDAT_FAILED
BDAT_FAILED_IDLE = _impl.BDAT_FAILED_IDLE
# Input modes.
GREETING = _impl.GREETING
COMMAND = _impl.COMMAND
DATA = _impl.DATA
CHUNK = _impl.CHUNK
AUTH = _impl.AUTH
TLS = _impl.TLS
CLOSED = _impl.CLOSED
# Rules and the state object.
_NO_RCPT = _impl._NO_RCPT
_DISCARD = _impl._DISCARD
SEQUENCE = _impl.SEQUENCE
OUTSIDE_TRANSACTION = _impl.OUTSIDE_TRANSACTION
LAST_IN_GROUP = _impl.LAST_IN_GROUP
JUNK = _impl.JUNK
ServerState = _impl.ServerState
REPLY_TRANSITIONS = _impl.REPLY_TRANSITIONS
CLOSING_CODES = _impl.CLOSING_CODES
