"""lmtp: the smtp delivery agent in LMTP mode (Postfix's lmtp(8) is smtp under another name).

Postfix counterpart: lmtp(8) (src/smtp/ built as lmtp)

    lmtp      unix  -       -       n       -       -       lmtp

Everything is in fastpost.daemons.smtp; this module only selects LMTP mode (lmtp_*
parameters, LHLO, no MX lookups, port 24, ``unix:/path`` next hops).

Parameters and diagnostics: as fastpost.daemons.smtp in LMTP mode.
"""

from fastpost.daemons.smtp import lmtp_main


def main(argv: list[str]) -> None:
    lmtp_main(argv)
