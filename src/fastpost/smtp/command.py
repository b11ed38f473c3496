"""Common-command kernel (selector): the simple forms of HELO, EHLO, MAIL, RCPT, DATA,
RSET, NOOP and QUIT recognised and parsed in one pass.

Postfix counterpart: the argument parsing of helo_cmd/ehlo_cmd/mail_cmd/rcpt_cmd/
data_cmd/rset_cmd/noop_cmd/quit_cmd in src/smtpd/smtpd.c.

See fastpost.smtp._command_py for the contract. Used by ServerConnection._command
before its general parser: what this answers None for takes the general path.

Parameters: none.
Diagnostics: none (None means "not the simple form").
Fast path: ext/fastpost/smtp/_command_c.pyx; reference: _command_py.py
"""

from fastpost._accel import select

_impl = select("fastpost.smtp._command_c", "fastpost.smtp._command_py")

quick_command = _impl.quick_command
VERBS = _impl.VERBS
HELO, EHLO, MAIL, RCPT = _impl.HELO, _impl.EHLO, _impl.MAIL, _impl.RCPT
DATA, RSET, NOOP, QUIT = _impl.DATA, _impl.RSET, _impl.NOOP, _impl.QUIT

__all__ = ["quick_command", "VERBS", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET",
           "NOOP", "QUIT"]
