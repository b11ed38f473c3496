"""A gateway that verifies addresses, and the remote MTA behind it (tests/verify).

    remote = Remote()            # C Postfix on loopback: relays remote.test, knows
    with remote:                 #   known@ and sender@ only (550 5.1.1 for the rest)
        gw = gateway(tmp, remote.port, dead_port, poll_count=1, **main_cf)
        gw.start(); chat(gw_port, [...])

The remote is Debian's C Postfix (helpers.peers.PrivatePostfix: own config, queue and
log, needs root and the postfix package) with relay_recipient_maps listing the known
addresses; its log shows every session's commands (``disconnect from ... ehlo=1
mail=1 rcpt=0/1 rset=1 quit=1``), which is how the tests see that a probe sends no DATA.
``dead.test`` routes to a port nobody listens on (connection refused).
"""

from __future__ import annotations

import socket

from helpers.instance import Instance, free_port
from helpers.peers import PrivatePostfix

KNOWN = ("known@remote.test", "sender@remote.test")

MASTER_CF = ("{port} inet n - n - - smtpd\n"
             "cleanup unix n - n - 0 cleanup\n"
             "rewrite unix - - n - - trivial-rewrite\n"
             "smtp unix - - n - - smtp\n"
             "relay unix - - n - - smtp\n"
             "error unix - - n - - error\n"
             "retry unix - - n - - error\n"
             "verify unix - - n - 1 verify\n"
             "pickup unix n - n 60 1 pickup\n"
             "bounce unix - - n - 0 bounce\n"
             "trace unix - - n - 0 bounce\n"
             "local unix - n n - - local\n")


def remote_main_cf() -> dict:
    table = ", ".join("{%s=x}" % a for a in KNOWN)
    return {"relay_domains": "remote.test", "mydestination": "",
            "relay_recipient_maps": f"inline:{{ {table} }}",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination"}


def gateway_main_cf(remote_port: int, dead_port: int, **extra) -> dict:
    cf = {"transport_maps": (f"inline:{{ {{remote.test=smtp:[127.0.0.1]:{remote_port}}}, "
                             f"{{dead.test=smtp:[127.0.0.1]:{dead_port}}} }}"),
          "relay_domains": "remote.test, dead.test", "mynetworks": "127.0.0.0/8",
          "smtpd_recipient_restrictions": "reject_unverified_recipient",
          "smtpd_sender_restrictions": "reject_unverified_sender",
          "address_verify_poll_count": "1", "smtp_connect_timeout": "3s",
          "alias_maps": "", "local_recipient_maps": "",
          "virtual_alias_maps": ("inline:{ {alias@remote.test=known@remote.test}, "
                                 "{badalias@remote.test=unknown@remote.test} }")}
    cf.update({k: str(v) for k, v in extra.items()})
    return cf


def fastpost_gateway(tmp, remote_port: int, dead_port: int, name: str = "gw", **extra):
    """A fastpost Instance (not started) and its smtpd port."""
    port = free_port()
    main = gateway_main_cf(remote_port, dead_port, **extra)
    main.update(myhostname="mx.fastpost.test",
                mydomain="fastpost.test", mydestination="$myhostname, localhost",
                smtpd_peername_lookup="no")
    return Instance(tmp, master_cf=MASTER_CF.format(port=f"127.0.0.1:{port}"), main_cf=main,
                    name=name), port


def postfix_gateway(remote_port: int, dead_port: int, **extra) -> PrivatePostfix:
    return PrivatePostfix(gateway_main_cf(remote_port, dead_port, **extra))


def chat(port: int, lines: list[str]) -> list[str]:
    """One SMTP session, a command at a time; the replies (multi-line joined by |)."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")

        def read():
            got = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                got.append(line)
                if len(line) < 4 or line[3] != "-":
                    return "|".join(got)
        read()
        for line in lines:
            s.sendall(line.encode() + b"\r\n")
            replies.append(read())
    return replies


def rcpt_session(sender: str, *rcpts: str) -> list[str]:
    return ["HELO client.test", f"MAIL FROM:<{sender}>",
            *(f"RCPT TO:<{r}>" for r in rcpts), "QUIT"]
