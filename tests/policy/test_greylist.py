"""Greylisting through the restriction engine: Debian's real postgrey behind
``smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:...``.

The first attempt of a (client, sender, recipient) triplet is deferred with postgrey's
text (its DEFER_IF_PERMIT, which the engine turns into a 450 once the list ends
without a reject); another triplet is greylisted on its own; a retry after postgrey's
delay (1 s, the shortest it takes) is accepted, and postgrey's ``PREPEND
X-Greylist: ...`` lands in the stored message. The wait polls postgrey through real
SMTP sessions (there is no other way to learn its delay has passed).
"""

from __future__ import annotations

import socket
import time

from fastpost.daemons.smtpd.testing import SmtpdThread
from helpers.peers import Postgrey


def _session(port: int, sender: str, rcpt: str, data: bool = False) -> list[bytes]:
    """One SMTP session; the RCPT reply, and DATA's final reply when asked and accepted."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s, s.makefile("rb") as f:
        def reply() -> bytes:
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    return line

        def cmd(text: str) -> bytes:
            s.sendall(text.encode() + b"\r\n")
            return reply()

        assert reply().startswith(b"220")
        cmd("EHLO client.example")
        assert cmd(f"MAIL FROM:<{sender}>").startswith(b"250")
        out = [cmd(f"RCPT TO:<{rcpt}>")]
        if data and out[0].startswith(b"250"):
            assert cmd("DATA").startswith(b"354")
            out.append(cmd("Subject: greylisted\r\n\r\nbody\r\n."))
        cmd("QUIT")
        return out


def test_postgrey_through_check_policy_service(tmp_path):
    with Postgrey(delay=1) as pg:
        main_cf = ("mynetworks = 192.0.2.0/24\nrelay_domains = relay.test\n"
                   "smtpd_recipient_restrictions = reject_unauth_destination, "
                   f"check_policy_service inet:127.0.0.1:{pg.port}\n")
        with SmtpdThread(tmp_path, main_cf) as srv:
            first = _session(srv.port, "a@example.org", "b@relay.test")[0]
            assert first.startswith(b"450 4.2.0 <b@relay.test>: Recipient address rejected: "
                                    b"Greylisted, see http"), first
            other = _session(srv.port, "c@example.org", "b@relay.test")[0]
            assert other.startswith(b"450 4.2.0 "), other
            # Relaying is still refused (smtpd_relay_restrictions' default) first.
            assert _session(srv.port, "a@example.org", "x@elsewhere.example")[0].startswith(
                b"454 4.7.1 <x@elsewhere.example>: Relay access denied")
            deadline = time.monotonic() + 30
            while True:
                replies = _session(srv.port, "a@example.org", "b@relay.test", data=True)
                if replies[0].startswith(b"250") or time.monotonic() > deadline:
                    break
                assert replies[0].startswith(b"450 4.2.0 "), replies
                time.sleep(0.5)  # postgrey's delay has not passed yet
            assert replies[0].startswith(b"250 2.1.5"), replies
            assert replies[1].startswith(b"250 2.0.0"), replies
            (_envelope, content), = srv.sink.messages()
            assert content.startswith(b"X-Greylist: delayed "), content[:200]
            logs = "\n".join(srv.log_lines())
            assert "NOQUEUE: reject: RCPT from" in logs and "Greylisted" in logs
