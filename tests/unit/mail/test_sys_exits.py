"""The <sysexits.h> table, as Debian's Postfix 3.7 local(8) reports each code."""

from fastpost.mail import sys_exits

# Recorded from Postfix 3.7.11: alias "|exit N" -> status line (dsn, status, text).
POSTFIX_37 = {
    64: ("5.3.0", "bounced", "command line usage error"),
    65: ("5.6.0", "bounced", "data format error"),
    66: ("5.3.0", "bounced", "cannot open input"),
    67: ("5.1.1", "bounced", "user unknown"),
    68: ("5.1.2", "bounced", "host name unknown"),
    69: ("5.3.0", "bounced", "service unavailable"),
    70: ("5.3.0", "bounced", "internal software error"),
    71: ("4.3.0", "deferred", "system resource problem"),
    72: ("5.3.0", "bounced", "critical OS file missing"),
    73: ("5.2.0", "bounced", "can't create user output file"),
    74: ("5.3.0", "bounced", "input/output error"),
    75: ("4.3.0", "deferred", "temporary failure"),
    76: ("5.5.0", "bounced", "remote error in protocol"),
    77: ("5.7.0", "bounced", "permission denied"),
    78: ("5.3.5", "bounced", "local configuration error"),
}


def test_table_matches_postfix():
    for code, (dsn, status, text) in POSTFIX_37.items():
        e = sys_exits.lookup(code)
        assert (e.dsn, "deferred" if e.soft else "bounced", e.text) == (dsn, status, text)
    assert sys_exits.lookup(1) is None and sys_exits.lookup(79) is None
