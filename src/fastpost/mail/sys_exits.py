"""Sendmail-style exit codes (<sysexits.h>) of delivery commands, as delivery status.

Postfix counterpart: src/global/sys_exits.c

A command that local(8) or pipe(8) runs reports its verdict with its exit status.
0 is success; the <sysexits.h> codes 64..78 carry a meaning that Postfix turns into an
enhanced status code and a text (EX_TEMPFAIL 75 and EX_OSERR 71 are temporary: the
recipient is deferred; the others bounce); any other non-zero status bounces with
``Command died with status N``. The texts and codes below are the ones Debian's
Postfix 3.7 logs (checked by running it: ``"|exit 64"`` ... ``"|exit 78"``).

Diagnostics: none (lookup returns None for codes outside the table).
"""

from __future__ import annotations

from typing import NamedTuple


class SysExit(NamedTuple):
    name: str  # the <sysexits.h> name
    dsn: str  # enhanced status code (RFC 3463)
    text: str  # what the status line and the bounce say
    soft: bool  # True: try again later (defer); False: bounce


EX_OK = 0
EX_USAGE = 64
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_OSERR = 71
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

TABLE: dict[int, SysExit] = {
    64: SysExit("EX_USAGE", "5.3.0", "command line usage error", False),
    65: SysExit("EX_DATAERR", "5.6.0", "data format error", False),
    66: SysExit("EX_NOINPUT", "5.3.0", "cannot open input", False),
    67: SysExit("EX_NOUSER", "5.1.1", "user unknown", False),
    68: SysExit("EX_NOHOST", "5.1.2", "host name unknown", False),
    69: SysExit("EX_UNAVAILABLE", "5.3.0", "service unavailable", False),
    70: SysExit("EX_SOFTWARE", "5.3.0", "internal software error", False),
    71: SysExit("EX_OSERR", "4.3.0", "system resource problem", True),
    72: SysExit("EX_OSFILE", "5.3.0", "critical OS file missing", False),
    73: SysExit("EX_CANTCREAT", "5.2.0", "can't create user output file", False),
    74: SysExit("EX_IOERR", "5.3.0", "input/output error", False),
    75: SysExit("EX_TEMPFAIL", "4.3.0", "temporary failure", True),
    76: SysExit("EX_PROTOCOL", "5.5.0", "remote error in protocol", False),
    77: SysExit("EX_NOPERM", "5.7.0", "permission denied", False),
    78: SysExit("EX_CONFIG", "5.3.5", "local configuration error", False),
}


def lookup(code: int) -> SysExit | None:
    """Return the meaning of a <sysexits.h> exit code, or None."""
    return TABLE.get(code)
