"""Across subsystems: mail accepted by smtpd (through cleanup) is delivered by qmgr."""

from __future__ import annotations

import smtplib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.instance import free_port  # noqa: E402


def test_smtpd_queue_qmgr_discard_and_a_success_notice(fastpost_instance):
    port = free_port()
    master = (f"{port} inet n - n - - smtpd\n"
              "cleanup unix n - n - 0 cleanup\n"
              "qmgr unix n - n 300 1 qmgr\n"
              "rewrite unix - - n - - trivial-rewrite\n"
              "bounce unix - - n - 0 bounce\n"
              "defer unix - - n - 0 bounce\n"
              "trace unix - - n - 0 bounce\n"
              "discard unix - - n - - discard\n")
    inst = fastpost_instance(master_cf=master, main_cf={
        "default_transport": "discard:dropped by the test", "mynetworks": "127.0.0.0/8"})
    inst.start()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        refused = s.sendmail("alice@example.org", ["bob@remote.example", "carol@remote.example"],
                             "Subject: across\r\n\r\nhello\r\n",
                             rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@Remote.example"])
    assert refused == {}
    qid = inst.wait_log(r": client=localhost\[127\.0\.0\.1\]").split(": client=")[0].split()[-1]
    # cleanup wakes qmgr after the commit: no flush needed
    text = inst.wait_log(rf"{qid}: sender delivery status notification: ")
    assert f"{qid}: from=<alice@example.org>, size=" in text and "nrcpt=2 (queue active)" in text
    for rcpt in ("bob", "carol"):
        assert (f"{qid}: to=<{rcpt}@remote.example>, relay=none, ") in text
    assert "status=sent (dropped by the test)" in text
    notice = text.split(f"{qid}: sender delivery status notification: ")[1].split()[0]
    inst.wait_log(rf"{notice}: to=<alice@example.org>, relay=none, .*status=sent")
    inst.wait_log(rf"{qid}: removed")
