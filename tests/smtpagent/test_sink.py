"""The smtp agent against Postfix's smtp-sink: delivered, deferred, bounced, reuse, LMTP.

A test acts as qmgr: messages are committed to a private instance's queue and a
delivery request goes over private/smtp (or relay, lmtp) to the real agent, which
talks to a real smtp-sink started with the failure each case needs (-f: 5xx, -r: 4xx,
-q: drop the connection, -Q: 421 and drop, per command).
"""

import pytest

from smtpagent.agent import AgentSite
from helpers.instance import free_port
from smtpagent.sink import Sink

pytestmark = pytest.mark.usefixtures("need_sink")


@pytest.fixture(scope="module")
def need_sink():
    from conftest import need_program, need_root

    need_root()
    need_program("smtp-sink")


@pytest.fixture(scope="module")
def site():
    with AgentSite(main_cf={"smtp_connection_cache_time_limit": "5s"}) as s:
        s.start()
        yield s


def one(site, sink, *, transport="smtp", rcpts=("x@example.net",), body="Subject: t\n\nhi\n"):
    qid = site.submit(list(rcpts), body)
    return qid, site.deliver(qid, sink.nexthop if hasattr(sink, "nexthop") else sink,
                             transport=transport)


def test_delivered_with_relay_and_content(site):
    with Sink() as sink:
        body = "Subject: dots\n\nline\n.leading dot\n..two\n.\nend\n"
        qid, res = one(site, sink, rcpts=("a@example.net", "b@example.net"), body=body)
        relay = f"127.0.0.1[127.0.0.1]:{sink.port}"
        assert [(r.status, r.dsn, r.text, r.relay) for r in res.results] == \
            [("sent", "2.0.0", "250 2.0.0 Ok", relay)] * 2
        assert res.hop_status is None
        assert site.status_lines(qid) == [
            f"to=<{a}>, relay={relay}, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
            for a in ("a@example.net", "b@example.net")]
        (msg,) = sink.messages()
        assert "X-Mail-Args: <sender@example.org>" in msg
        assert "X-Rcpt-Args: <a@example.net>\nX-Rcpt-Args: <b@example.net>" in msg
        # The sink undoes dot-stuffing: what arrives is what was queued.
        assert msg.endswith("Subject: dots\n\nline\n.leading dot\n..two\n.\nend\n\n") or \
            "line\n.leading dot\n..two\n.\nend\n" in msg


def test_connection_reused_for_the_next_message(site):
    with Sink() as sink:
        lines = []
        for _ in range(3):
            qid, res = one(site, sink)
            assert res.results[0].status == "sent"
            lines += site.status_lines(qid)
        assert ["conn_use=" in line for line in lines] == [False, True, True]
        assert "conn_use=2," in lines[1] and "conn_use=3," in lines[2]
        assert len(sink.messages()) == 3


def test_relay_transport_is_the_same_agent(site):
    with Sink() as sink:
        qid, res = one(site, sink, transport="relay")
        assert res.results[0].status == "sent"


@pytest.mark.parametrize("options, status, dsn, text", [
    (("-f", "rcpt"), "bounced", "5.3.0",
     "host {h} said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)"),
    (("-r", "rcpt"), "deferred", "4.3.0",
     "host {h} said: 450 4.3.0 Error: command failed (in reply to RCPT TO command)"),
    (("-f", "mail"), "bounced", "5.3.0",
     "host {h} said: 500 5.3.0 Error: command failed (in reply to MAIL FROM command)"),
    (("-r", "data"), "deferred", "4.3.0",
     "host {h} said: 450 4.3.0 Error: command failed (in reply to DATA command)"),
    (("-f", "."), "bounced", "5.3.0",
     "host {h} said: 500 5.3.0 Error: command failed (in reply to end of DATA command)"),
])
def test_recipient_verdicts(site, options, status, dsn, text):
    with Sink(*options) as sink:
        qid, res = one(site, sink)
        h = "127.0.0.1[127.0.0.1]"
        (r,) = res.results
        assert (r.status, r.dsn, r.text) == (status, dsn, text.format(h=h))
        assert r.relay == f"{h}:{sink.port}"
        assert res.hop_status is None  # the server answered: not a site failure
        assert site.status_lines(qid) == [
            f"to=<x@example.net>, relay={h}:{sink.port}, dsn={dsn}, status={status} "
            f"({text.format(h=h)})"]


@pytest.mark.parametrize("options, dsn, text", [
    (("-Q", "mail"), "4.0.0",
     "host {h} said: 421 4.0.0 Server closing connection (in reply to MAIL FROM command)"),
    (("-Q", "rcpt"), "4.0.0",
     "host {h} said: 421 4.0.0 Server closing connection (in reply to RCPT TO command)"),
    (("-q", "rcpt"), "4.4.2", "lost connection with {h} while sending RCPT TO"),
    (("-q", "."), "4.4.2",
     "lost connection with {h} while sending end of data -- message may be sent more than once"),
    (("-f", "connect"), "4.3.0",
     "host {h} refused to talk to me: 500 5.3.0 Error: command failed"),
    (("-Q", "connect"), "4.0.0",
     "host {h} refused to talk to me: 421 4.0.0 Server closing connection"),
])
def test_site_failures_defer_with_hop_status(site, options, dsn, text):
    with Sink(*options) as sink:
        qid, res = one(site, sink)
        want = text.format(h="127.0.0.1[127.0.0.1]")
        (r,) = res.results
        assert (r.status, r.dsn, r.text) == ("deferred", dsn, want)
        assert res.hop_status == {"dsn": dsn, "text": want}


def test_connection_refused(site):
    port = free_port()
    qid = site.submit(["x@example.net"])
    res = site.deliver(qid, f"[127.0.0.1]:{port}")
    text = f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"
    assert [(r.status, r.dsn, r.text, r.relay) for r in res.results] == \
        [("deferred", "4.4.1", text, "none")]
    assert res.hop_status == {"dsn": "4.4.1", "text": text}
    assert site.status_lines(qid) == [
        f"to=<x@example.net>, relay=none, dsn=4.4.1, status=deferred ({text})"]


def test_next_hop_list_tries_the_next_destination(site):
    dead = free_port()
    with Sink() as sink:
        qid = site.submit(["x@example.net"])
        res = site.deliver(qid, f"[127.0.0.1]:{dead}, {sink.nexthop}")
        assert res.results[0].status == "sent"
        assert res.hop_status is None
        assert f"connect to 127.0.0.1[127.0.0.1]:{dead}: Connection refused" in site.inst.log_text()


def test_helo_after_ehlo_refused(site):
    with Sink("-f", "ehlo") as sink:
        qid, res = one(site, sink)
        assert res.results[0].status == "sent"
        assert "X-Client-Proto: SMTP\n" in sink.messages()[0]


def test_without_pipelining_and_esmtp(site):
    with Sink("-e") as sink:
        qid, res = one(site, sink, rcpts=("a@example.net", "b@example.net"))
        assert [r.status for r in res.results] == ["sent", "sent"]
        assert "X-Client-Proto: SMTP\n" in sink.messages()[0]


def test_bad_next_hop_defers(site):
    qid = site.submit(["x@example.net"])
    res = site.deliver(qid, "[127.0.0.1")
    assert [(r.status, r.dsn) for r in res.results] == [("deferred", "4.3.5")]
    assert "missing \"]\"" in res.results[0].text


def test_lmtp_against_smtp_sink(site):
    with Sink(lmtp=True) as sink:
        qid = site.submit(["a@example.net", "b@example.net"])
        res = site.deliver(qid, f"inet:127.0.0.1:{sink.port}", transport="lmtp")
        # One reply per recipient after the end of data (smtp-sink's LMTP says 2.2.0).
        assert [(r.status, r.text) for r in res.results] == [("sent", "250 2.2.0 Ok")] * 2
        assert "X-Client-Proto: LMTP" in sink.messages()[0]
