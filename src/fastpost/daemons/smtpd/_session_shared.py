"""What the compiled and the interpreted smtpd session core share as one object.

The session core (fastpost.daemons.smtpd._session_py) is one source built twice: run
as plain Python under its own name and compiled by Cython as
fastpost.daemons.smtpd._session_c (docs/accept.md, "Session 7"). Each build is its own
module with its own globals, so a sentinel compared by identity (``is``) by code
outside the core must come from a third module that both import: this one.

Postfix counterpart: none (an implementation detail of the session's reply path).
Diagnostics: none.
"""

from fastpost.smtp.replies import Reply

__all__ = ["HANGUP", "STATS_ORDER"]

#: SessionCore._refused()'s answer after an access(5) HANGUP: the connection is
#: already closed, nothing more is sent (session.py compares with ``is``).
HANGUP = Reply(421, "hangup")

#: The order of the per-command counts on the "disconnect from" line (Postfix's).
STATS_ORDER = ("helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt",
               "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown")
