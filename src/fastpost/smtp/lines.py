"""Command-line kernel (selector): bounded line splitting and verb parsing.

Postfix counterpart: src/global/smtp_stream.c (smtp_get), the verb lookup of
src/smtpd/smtpd.c.

See fastpost.smtp._lines_py for the contract. Used by ServerConnection and
ClientConnection for every line they read.

Parameters: the caller passes line_length_limit.
Diagnostics: ValueError for a negative limit.
Fast path: ext/fastpost/smtp/_lines_c.pyx; reference: _lines_py.py
"""

from fastpost._accel import select

_impl = select("fastpost.smtp._lines_c", "fastpost.smtp._lines_py")

LineReader = _impl.LineReader
split_command = _impl.split_command
BARE_LF = _impl.BARE_LF
OVERLONG = _impl.OVERLONG

__all__ = ["BARE_LF", "OVERLONG", "LineReader", "split_command"]
