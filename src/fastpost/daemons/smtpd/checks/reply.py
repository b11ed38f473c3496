"""Reply texts of the restriction engine: classes, enhanced-code fixes, the Rejected signal.

Postfix counterpart: the reply formats of src/smtpd/smtpd_check.c and the DSN
fixing of src/smtpd/smtpd_dsn_fix.c.

Every refusal has Postfix's form ``CODE X.Y.Z <NAME>: CLASS rejected: TEXT`` where
NAME is what was checked (``name[addr]``, the HELO name, an address, ``DATA``...) and
CLASS one of the names below. An enhanced status code from a table (``550 5.1.1
text``) is made to fit the class, as Postfix does, and the change is logged
(``mapping DSN status 5.1.1 into Sender address status 5.1.7``):

    Sender address     X.1.1 X.1.3 X.1.4 X.1.6 -> X.1.7, X.1.2 -> X.1.8,
                       other X.1.N (N not 0, 7, 8) -> X.1.0
    Recipient address  X.1.7 -> X.1.3, X.1.8 -> X.1.2, X.1.N for N > 8 -> X.1.0
    anything else      X.1.N -> X.0.0  (an address status makes no sense there)

Diagnostics: none; ``Rejected`` is the engine's internal signal that a restriction
refused the command (it never leaves the package).
"""

from __future__ import annotations

import re

from fastpost.smtp.replies import Reply, printable
from fastpost.util import log

__all__ = [
    "CLIENT", "REV_CLIENT", "CCERT", "SASL", "HELO", "SENDER", "RECIPIENT", "ETRN",
    "DATA", "EOD", "Rejected", "dsn_fix", "split_dsn", "make_reply",
]

CLIENT = "Client host"
REV_CLIENT = "Unverified Client host"
CCERT = "Client certificate"
SASL = "SASL login name"
HELO = "Helo command"
SENDER = "Sender address"
RECIPIENT = "Recipient address"
ETRN = "Etrn command"
DATA = "Data command"
EOD = "End-of-data"

_DSN = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


class Rejected(Exception):
    """A restriction refused the command with ``reply`` (``hangup``: say nothing)."""

    def __init__(self, reply: Reply | None, *, hangup: bool = False):
        super().__init__(str(reply))
        self.reply = reply
        self.hangup = hangup


def split_dsn(text: str, default: str) -> tuple[str, str]:
    """Split a leading enhanced status code off ``text``; return (dsn, rest).

    ``default`` is used when the text has none; the class digit of a code found in
    the text is kept as written (the caller's reply code decides 4xx/5xx).
    """
    m = _DSN.match(text)
    if m is None:
        return default, text
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end():]


def dsn_fix(dsn: str, klass: str) -> str:
    """Return ``dsn`` made to fit ``klass`` (module docstring); log a change."""
    first, subject, detail = dsn.split(".")
    if subject != "1":
        return dsn
    n = int(detail)
    if klass == SENDER:
        if n in (0, 7, 8):
            return dsn
        fixed = (f"{first}.1.8" if n == 2 else f"{first}.1.7" if n in (1, 3, 4, 6)
                 else f"{first}.1.0")
    elif klass == RECIPIENT:
        if n <= 6:
            return dsn
        fixed = f"{first}.1.3" if n == 7 else f"{first}.1.2" if n == 8 else f"{first}.1.0"
    else:
        fixed = f"{first}.0.0"
    log.info("mapping DSN status %s into %s status %s", dsn, klass, fixed)
    return fixed


def make_reply(code: int, dsn: str, text: str) -> Reply:
    """Return the Reply ``code dsn text`` (text made printable; the dsn's class digit
    follows the code, as Postfix writes it)."""
    if dsn and dsn[0] != str(code)[0]:
        dsn = str(code)[0] + dsn[1:]
    return Reply(code, printable(text), dsn)
