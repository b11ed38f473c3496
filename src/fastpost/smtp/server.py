"""ServerConnection: the sans-IO SMTP server core (selector).

Postfix counterpart: src/smtpd/smtpd.c (the protocol half: command reading and
parsing, sequencing, ESMTP parameters, DATA/BDAT, pipelining checks), without any
policy, I/O or logging.

The contract, ServerOptions and soften() are in fastpost.smtp._server_py (the
reference and specification); ServerConnection is the compiled class of
ext/fastpost/smtp/_server_c.pyx, checked against the reference by
tests/unit/smtp/test_command.py (the same generated sessions through both).

Parameters: see _server_py (ServerOptions, filled from main.cf by the session).
Diagnostics: RemoteProtocolError for the peer's mistakes; LocalProtocolError when
the caller sends a reply that is not due or calls out of order.
Fast path: ext/fastpost/smtp/_server_c.pyx; reference: _server_py.py
"""

from fastpost._accel import select
from fastpost.smtp._server_py import BARE_LF_MODES, ServerOptions, soften

_impl = select("fastpost.smtp._server_c", "fastpost.smtp._server_py")

ServerConnection = _impl.ServerConnection

__all__ = ["ServerConnection", "ServerOptions", "BARE_LF_MODES", "soften"]
