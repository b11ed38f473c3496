#!/usr/bin/python3
"""A pipe(8) command that relays the message on stdin to an SMTP sink.

    pipe_relay.py HOST PORT SENDER RECIPIENT...

Postfix counterpart: none; it stands in for the smtp(8) client in the reliability
battery while fastpost has no smtp agent. The battery's fastpost instance then runs
``smtp`` and ``relay`` as pipe services with
``argv=/usr/bin/python3 .../pipe_relay.py 127.0.0.1 PORT ${sender} ${recipient}``,
so every delivery still crosses qmgr, a delivery agent process (which the kill9 check
kills at random) and the network to the battery's sink, and the sink still counts
Message-IDs. Only the standard library: it runs as ``nobody`` under the system Python.

Exit status as sysexits(3), which pipe(8) maps to the delivery status: 0 when the sink
answered 250 to the end of data, 75 (EX_TEMPFAIL: defer and retry) on a network error
or a 4xx reply, 69 (EX_UNAVAILABLE: bounce) on a 5xx reply, 64 on bad arguments.
"""

import smtplib
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print("usage: pipe_relay.py HOST PORT SENDER RECIPIENT...", file=sys.stderr)
        return 64
    host, port, sender, rcpts = argv[1], int(argv[2]), argv[3], argv[4:]
    data = sys.stdin.buffer.read()
    try:
        with smtplib.SMTP(host, port, timeout=30) as conn:
            refused = conn.sendmail(sender, rcpts, data)
    except smtplib.SMTPResponseException as exc:
        print(f"sink said {exc.smtp_code} {exc.smtp_error!r}", file=sys.stderr)
        return 69 if 500 <= exc.smtp_code < 600 else 75
    except smtplib.SMTPRecipientsRefused as exc:
        print(f"sink refused {exc.recipients!r}", file=sys.stderr)
        return 75
    except (OSError, smtplib.SMTPException) as exc:
        print(f"cannot relay to {host}:{port}: {exc}", file=sys.stderr)
        return 75
    if refused:
        print(f"sink refused {refused!r}", file=sys.stderr)
        return 75
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
