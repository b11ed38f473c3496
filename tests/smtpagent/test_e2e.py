"""End to end: smtplib -> fastpost smtpd -> cleanup -> queue -> qmgr -> smtp -> smtp-sink.

The real daemons of a private instance (smtpd, cleanup, qmgr, trivial-rewrite, bounce, smtp)
relay through ``relayhost = [127.0.0.1]:P``; P is first dead (the message is deferred
with the agent's reason, and qmgr hears the site failure), then an smtp-sink listens
there and a flush delivers it.
"""

import smtplib

import pytest

from helpers.instance import free_port
from smtpagent.sink import Sink


@pytest.fixture
def relay_site(fastpost_instance):
    from conftest import need_program

    need_program("smtp-sink")
    smtpd_port = free_port()
    relay_port = free_port()
    master = (f"{smtpd_port} inet n - n - - smtpd\n"
              "cleanup unix n - n - 0 cleanup\n"
              "qmgr unix n - n 300 1 qmgr\n"
              "rewrite unix - - n - - trivial-rewrite\n"
              "bounce unix - - n - 0 bounce\n"
              "defer unix - - n - 0 bounce\n"
              "trace unix - - n - 0 bounce\n"
              "smtp unix - - n - - smtp\n"
              "relay unix - - n - - smtp\n"
              "error unix - - n - - error\n"
              "retry unix - - n - - error\n")
    inst = fastpost_instance(master_cf=master, main_cf={
        "mynetworks": "127.0.0.0/8", "relayhost": f"[127.0.0.1]:{relay_port}",
        "default_transport": "smtp", "relay_transport": "relay",
        "queue_run_delay": "1s", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
        "fastpost_backoff_jitter": "0"})
    inst.start()
    return inst, smtpd_port, relay_port


def send(port, rcpts, subject="relay"):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        assert s.sendmail("alice@example.org", rcpts,
                          f"Subject: {subject}\r\n\r\nhello\r\n.dot line\r\n") == {}


def test_relay_deferred_then_delivered(relay_site):
    inst, smtpd_port, relay_port = relay_site
    send(smtpd_port, ["bob@remote.example", "carol@remote.example"])
    qid = inst.wait_log(r": client=localhost\[127\.0\.0\.1\]").split(": client=")[0].split()[-1]
    refused = f"connect to 127.0.0.1[127.0.0.1]:{relay_port}: Connection refused"
    text = inst.wait_log(rf"{qid}: to=<carol@remote.example>, relay=none, .*status=deferred")
    assert f"dsn=4.4.1, status=deferred ({refused})" in text
    with Sink(port=relay_port) as sink:
        inst.command("flush", check=True)
        text = inst.wait_log(rf"{qid}: removed", timeout=60)
        relay = f"relay=127.0.0.1[127.0.0.1]:{relay_port}"
        for rcpt in ("bob", "carol"):
            assert f"{qid}: to=<{rcpt}@remote.example>, {relay}, " in text
        assert "status=sent (250 2.0.0 Ok)" in text
        (msg,) = sink.messages()
        # The server offers DSN: the original recipient goes along as ORCPT (Postfix too).
        assert ("X-Rcpt-Args: <bob@remote.example> ORCPT=rfc822;bob@remote.example\n"
                "X-Rcpt-Args: <carol@remote.example> ORCPT=rfc822;carol@remote.example\n") in msg
        # cleanup added Message-Id:, Date:, From:; the body arrives as sent.
        assert "\nSubject: relay\n" in msg and msg.endswith("\n\nhello\n.dot line\n\n")


def test_relay_rejection_bounces_to_the_sender(relay_site):
    inst, smtpd_port, relay_port = relay_site
    with Sink("-f", "rcpt", port=relay_port):
        send(smtpd_port, ["nobody@remote.example"])
        qid = inst.wait_log(r": client=localhost\[127\.0\.0\.1\]").split(": client=")[0].split()[-1]
        text = inst.wait_log(rf"{qid}: sender non-delivery notification: ", timeout=60)
        assert (f"{qid}: to=<nobody@remote.example>, relay=127.0.0.1[127.0.0.1]:{relay_port}, "
                in text)
        assert ("dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: "
                "command failed (in reply to RCPT TO command))") in text
