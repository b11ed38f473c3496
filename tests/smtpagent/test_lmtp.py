"""The agent in LMTP mode against real Dovecot LMTP (TCP and a UNIX-domain socket).

Dovecot is started by the test with its own configuration, passwd-file users
alice and bob (mail stored as nobody) and Maildirs read back with Python's mailbox.
"""

import re

import pytest

from smtpagent.agent import AgentSite
from smtpagent.dovecot import Dovecot


@pytest.fixture(scope="module")
def env():
    from conftest import need_program, need_root

    need_root()
    need_program("dovecot")
    with Dovecot(["alice", "bob"]) as dc, AgentSite() as site:
        site.start()
        yield site, dc


def bodies(dc, user):
    return [m.get_payload() for m in dc.maildir(user)]


def test_per_recipient_results_over_tcp(env):
    site, dc = env
    qid = site.submit(["alice@example.net", "nosuch@example.net", "bob@example.net"],
                      "Subject: lmtp\n\nover tcp\n")
    res = site.deliver(qid, f"inet:127.0.0.1:{dc.port}", transport="lmtp")
    relay = f"127.0.0.1[127.0.0.1]:{dc.port}"
    alice, nosuch, bob = res.results
    assert (alice.status, alice.dsn, alice.relay) == ("sent", "2.0.0", relay)
    assert re.fullmatch(r"250 2\.0\.0 <alice@example\.net> \S+ Saved", alice.text)
    assert re.fullmatch(r"250 2\.0\.0 <bob@example\.net> \S+ Saved", bob.text)
    assert (nosuch.status, nosuch.dsn) == ("bounced", "5.1.1")
    assert nosuch.text == (
        "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <nosuch@example.net> User doesn't exist: "
        "nosuch@example.net (in reply to RCPT TO command)")
    assert res.hop_status is None
    assert "over tcp\n" in bodies(dc, "alice") and "over tcp\n" in bodies(dc, "bob")
    lines = site.status_lines(qid)
    assert lines[0].startswith(f"to=<alice@example.net>, relay={relay}, dsn=2.0.0, status=sent (250 2.0.0 <alice@")


def test_unix_socket_next_hop(env):
    site, dc = env
    qid = site.submit(["bob@example.net"], "Subject: lmtp\n\nover a unix socket\n.dot\n")
    res = site.deliver(qid, f"unix:{dc.socket}", transport="lmtp")
    (r,) = res.results
    assert (r.status, r.relay) == ("sent", f"test.localdomain[{dc.socket}]")
    msgs = [m for m in dc.maildir("bob") if "unix socket" in m.get_payload()]
    assert len(msgs) == 1 and msgs[0]["Subject"] == "lmtp"
    assert msgs[0].get_payload() == "over a unix socket\n.dot\n"


def test_dovecot_down_defers(env):
    site, dc = env
    qid = site.submit(["alice@example.net"])
    res = site.deliver(qid, f"unix:{dc.socket}.missing", transport="lmtp")
    (r,) = res.results
    assert (r.status, r.dsn, r.relay) == ("deferred", "4.4.1", "none")
    assert r.text == (f"connect to test.localdomain[{dc.socket}.missing]: "
                      "No such file or directory")
    assert res.hop_status is not None
