"""XFORWARD from the smtp client (smtp_send_xforward_command), compared with C Postfix's.

A recording server (recorder.py) announces XFORWARD and keeps every command. Postfix's
client relays a message it received by SMTP (and one from its sendmail); fastpost's
agent relays a message carrying the same client attributes. The XFORWARD commands must
be the same but for IDENT (each MTA's own queue ID).
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import time

import pytest

from fastpost.daemons.smtp.engine import xforward_groups
from fastpost.smtp.grammar import xtext_encode
from fastpost.mail.deliver import DeliveryRequest
from smtpagent.agent import AgentSite
from smtpagent.recorder import Recorder
from smtpagent.test_vs_postfix import Postfix

ALL = "NAME ADDR PROTO HELO SOURCE PORT IDENT"


def _xforwards(commands: list[str]) -> list[str]:
    return [re.sub(r"IDENT=\w+", "IDENT=ID", c) for c in commands if c.startswith("XFORWARD")]


def _wait(recorder, n: int) -> None:
    deadline = time.monotonic() + 30
    while sum(c == "QUIT" for c in recorder.commands) < n and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def peers():
    from conftest import need_program, need_root

    need_root()
    need_program("postfix")
    rec = Recorder(ALL)
    pf = Postfix(rec.port)
    try:
        pf.configure("smtp_send_xforward_command=yes", "smtp_connection_cache_on_demand=no")
        with AgentSite(main_cf={"smtp_send_xforward_command": "yes",
                                "smtp_connection_cache_on_demand": "no"}) as site:
            site.start()
            yield rec, pf, site
    finally:
        pf.stop()
        rec.stop()


@pytest.mark.parametrize("announce", [ALL, "NAME ADDR", "HELO SOURCE"])
def test_smtp_received_mail_as_postfix(peers, announce):
    rec, pf, site = peers
    rec.announce = announce
    rec.commands.clear()
    with smtplib.SMTP("127.0.0.1", pf.port, local_hostname="client.example", timeout=30) as s:
        s.sendmail("a@example.org", ["x@remote.example"], "Subject: t\r\n\r\nhi\r\n")
    _wait(rec, 1)
    theirs = _xforwards(rec.commands)
    port = (re.findall(r"PORT=(\d+)", " ".join(rec.commands)) or [""])[0]
    rec.commands.clear()
    qid = site.submit(["x@remote.example"], "Subject: t\n\nhi\n", sender="a@example.org")
    client = {"name": "localhost", "addr": "127.0.0.1", "port": port, "proto": "ESMTP",
              "helo": "client.example", "rewrite_context": "local"}
    site.deliver(qid, f"[127.0.0.1]:{rec.port}", transport="relay", client=client)
    _wait(rec, 1)
    assert _xforwards(rec.commands) == theirs
    assert theirs  # each announcement leaves something to send


def test_locally_submitted_mail_as_postfix(peers):
    rec, pf, site = peers
    rec.announce = ALL
    rec.commands.clear()
    subprocess.run(["/usr/sbin/sendmail", "-C", pf.etc, "-f", "a@example.org",
                    "x@remote.example"], input=b"Subject: t\n\nhi\n", check=True)
    _wait(rec, 1)
    theirs = _xforwards(rec.commands)
    rec.commands.clear()
    qid = site.submit(["x@remote.example"], "Subject: t\n\nhi\n", sender="a@example.org")
    site.deliver(qid, f"[127.0.0.1]:{rec.port}", transport="relay",
                 client={"rewrite_context": "local"})
    _wait(rec, 1)
    assert _xforwards(rec.commands) == theirs == ["XFORWARD SOURCE=LOCAL"]


def test_groups_xtext_and_ipv6():
    req = DeliveryRequest(queue_id="ABC123", transport="smtp", nexthop="x", sender="",
                          recipients=[], arrival_time=0, active_time=0, client={
                              "name": "h=st+x", "addr": "2001:db8::1", "port": "25",
                              "proto": "SMTP", "helo": "héllo", "rewrite_context": "remote",
                              "ident": "ORIG9"})
    assert xforward_groups(req, ALL) == [
        ["NAME=h+3Dst+2Bx", "ADDR=IPV6:2001:db8::1", "PORT=25"],
        ["PROTO=SMTP", "HELO=h+C3+A9llo", "IDENT=ORIG9", "SOURCE=REMOTE"]]
    assert xforward_groups(req, "addr") == [["ADDR=IPV6:2001:db8::1"], []]
    assert xtext_encode("a b") == "a+20b"
