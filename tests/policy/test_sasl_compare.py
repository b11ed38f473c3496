"""SASL restrictions with SASL really on, compared with C Postfix reply for reply.

One real Dovecot (auth only, tests/helpers/peers.py) serves both MTAs. C Postfix runs
one smtpd per configuration (master.cf ``-o`` overrides, one instance in all);
fastpost one SmtpdThread per configuration. Every configuration plays the same
sessions (unauthenticated, or AUTH PLAIN as alice/bob/carol, then MAIL and RCPT) and
the AUTH, MAIL and RCPT replies and the ``reject:`` log lines must be the same:
reject_sender_login_mismatch and its three relatives with smtpd_sender_login_maps
(owned, co-owned, unowned and null senders), check_sasl_access (each access result
kind), permit_sasl_authenticated in the relay list, smtpd_sasl_local_domain (no effect with
Dovecot, in either MTA).
"""

from __future__ import annotations

import base64
import re
import socket

import pytest

from fastpost.daemons.smtpd.testing import SmtpdThread
from helpers.peers import Dovecot, PrivatePostfix

USERS = {"alice": "secret", "bob": "secret", "carol": "secret"}

LOGIN_MAP = """\
alice@example.com   alice
bob@example.com     bob
shared@example.com  alice, bob
<>                  bob
"""
SASL_ACCESS = """\
alice   REJECT no mail for you
bob     OK
carol   451 4.7.1 come back later
"""

CONFIGS = {
    "mismatch": {"smtpd_sender_restrictions": "reject_sender_login_mismatch"},
    "auth_mismatch": {"smtpd_sender_restrictions": "reject_authenticated_sender_login_mismatch"},
    "known_mismatch": {"smtpd_sender_restrictions": "reject_known_sender_login_mismatch"},
    "unauth_mismatch": {"smtpd_sender_restrictions":
                        "reject_unauthenticated_sender_login_mismatch"},
    "sasl_access": {"smtpd_recipient_restrictions": "check_sasl_access texthash:{sasl}, permit"},
    "relay": {"smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination"},
    # With Dovecot the local realm changes nothing: logins stay as typed (Postfix 3.7).
    "local_domain": {"smtpd_sasl_local_domain": "example.com",
                     "smtpd_sender_restrictions": "reject_sender_login_mismatch"},
}

#: (login, sender, recipient) per session.
SESSIONS = [
    (None, "alice@example.com", "r@relay.test"),
    ("alice", "alice@example.com", "r@relay.test"),
    ("alice", "bob@example.com", "r@relay.test"),
    ("alice", "nobody@example.com", "r@relay.test"),
    ("alice", "", "r@relay.test"),
    ("bob", "", "r@relay.test"),
    (None, "", "r@relay.test"),
    ("bob", "shared@example.com", "x@elsewhere.example"),
    ("carol", "alice@example.com", "x@elsewhere.example"),
    (None, "bob@example.com", "x@elsewhere.example"),
    (None, "nobody@example.com", "r@relay.test"),
]


def _play(port: int, login, sender: str, rcpt: str) -> list[str]:
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s, s.makefile("rb") as f:
        def reply() -> str:
            lines = []
            while True:
                line = f.readline()
                lines.append(line.decode().rstrip("\r\n"))
                if not line or line[3:4] != b"-":
                    return "\n".join(lines)

        def cmd(text: str) -> str:
            s.sendall(text.encode() + b"\r\n")
            return reply()

        assert reply().startswith("220")
        assert cmd("EHLO client.example").startswith("250")
        if login:
            token = base64.b64encode(f"\0{login}\0{USERS[login]}".encode()).decode()
            out.append(cmd(f"AUTH PLAIN {token}"))
        out.append(cmd(f"MAIL FROM:<{sender}>"))
        out.append(cmd(f"RCPT TO:<{rcpt}>"))
        cmd("QUIT")
    return out


_REJECT = re.compile(r"(NOQUEUE: reject: .*)")


def _rejects(lines) -> list[str]:
    return [m.group(1) for m in map(_REJECT.search, lines) if m]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sasl")
    (tmp / "logins").write_text(LOGIN_MAP)
    (tmp / "sasl").write_text(SASL_ACCESS)
    with Dovecot(USERS) as dv:
        common = {
            "mynetworks": "192.0.2.0/24",
            "relay_domains": "relay.test",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": dv.socket,
            "smtpd_sender_login_maps": f"texthash:{tmp}/logins",
            "smtpd_error_sleep_time": "0",
        }
        configs = {name: {k: v.format(sasl=tmp / "sasl") for k, v in over.items()}
                   for name, over in CONFIGS.items()}
        ports = {}
        extra = ""
        from helpers.instance import free_port

        for name, over in configs.items():
            ports[name] = free_port()
            extra += f"127.0.0.1:{ports[name]} inet n - n - - smtpd\n" + "".join(
                f"  -o {k}={v.replace(', ', ',').replace(' ', ',')}\n" for k, v in over.items())
        with PrivatePostfix(common, extra) as pfx:
            yield tmp, common, configs, ports, pfx


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_as_postfix(world, name, tmp_path):
    tmp, common, configs, ports, pfx = world
    main_cf = "".join(f"{k} = {v}\n" for k, v in {**common, **configs[name]}.items())
    before = len(pfx.log_text().splitlines())
    theirs = [_play(ports[name], *s) for s in SESSIONS]
    with SmtpdThread(tmp_path, main_cf) as srv:
        ours = [_play(srv.port, *s) for s in SESSIONS]
        our_log = srv.log_lines()
    for session, a, b in zip(SESSIONS, ours, theirs):
        assert a == b, (name, session)
    # Postfix's log may lag the last reply a moment: wait for all its reject lines.
    want = sum(1 for replies in theirs if replies[-1][:1] in "45")
    import time

    deadline = time.monotonic() + 20
    while True:
        their_rejects = _rejects(pfx.log_text().splitlines()[before:])
        if len(their_rejects) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert _rejects(our_log) == their_rejects
