"""smtp_generic_maps, compared live with C Postfix's smtp client.

Both clients relay the same message (already in the form cleanup leaves it: addresses
qualified, Message-Id and Date present, so Postfix's own cleanup changes nothing but
its Received: line) with the same generic table to Postfix's smtp-sink, which records
the MAIL FROM and RCPT TO arguments and the message. The envelope and every header but
Received: must be byte-identical; the queue keeps the original addresses (the status
line names the recipient as queued).
"""

from __future__ import annotations

import os
import re
import smtplib

import pytest

from helpers.instance import free_port
from smtpagent.agent import AgentSite
from smtpagent.sink import Sink
from smtpagent.test_vs_postfix import Postfix

TABLE = """\
alice@pf.localdomain alice.smith@example.com
@localdomain @out.example
bob bob@bob.example
rcpt@remote.example other@remote.example
"""

MESSAGE = """\
From: Alice <alice@pf.localdomain>
To: rcpt@remote.example, "Bob B" <bob@pf.localdomain>,
  carol@localdomain (Carol), dave@elsewhere.example
Cc: undisclosed-recipients:;
Reply-To: alice@pf.localdomain
Sender: bob@pf.localdomain
X-Other: alice@pf.localdomain
Subject: hi
Message-Id: <1.generic@pf.localdomain>
Date: Sat, 21 Nov 2026 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=BB

--BB
Content-Type: text/plain

body alice@pf.localdomain
--BB
Content-Type: message/rfc822

From: alice@pf.localdomain
To: bob@pf.localdomain
Subject: inner

inner body
--BB--
"""

SENDER = "alice@pf.localdomain"
RCPTS = ["rcpt@remote.example", "carol@localdomain", "dave@elsewhere.example"]


def _comparable(dump: str) -> str:
    """The envelope lines smtp-sink recorded and the header without Received:."""
    head = dump.split("\n\n", 1)[0]
    keep, skipping = [], False
    for line in head.split("\n"):
        if line[:1] in (" ", "\t"):
            if not skipping:
                keep.append(line)
            continue
        skipping = line.startswith(("Received:", "X-Client-", "X-Helo-Args:"))
        if not skipping:
            keep.append(line)
    # Postfix's qmgr sorts a message's recipients; the order is not the point here
    rcpts = sorted(x for x in keep if x.startswith("X-Rcpt-Args:"))
    return "\n".join(rcpts + [x for x in keep if not x.startswith("X-Rcpt-Args:")])


@pytest.fixture(scope="module")
def outputs():
    from conftest import need_program, need_root

    need_root()
    need_program("postfix")
    need_program("smtp-sink")
    port = free_port()
    pf = Postfix(port)
    try:
        table = os.path.join(pf.etc, "generic")
        with open(table, "w") as fh:
            fh.write(TABLE)
        pf.configure(f"smtp_generic_maps=texthash:{table}", "mydestination=pf.localdomain")
        with AgentSite(main_cf={"smtp_generic_maps": f"texthash:{table}",
                                "myorigin": "pf.localdomain",
                                "mydestination": "pf.localdomain"}) as site:
            site.start()
            with Sink(port=port) as sink:
                with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
                    s.sendmail(SENDER, RCPTS, MESSAGE.replace("\n", "\r\n"))
                sink.wait(1)
                qid = site.submit([{"address": r, "orig": r} for r in RCPTS], MESSAGE,
                                  sender=SENDER)
                site.deliver(qid, f"[127.0.0.1]:{port}", transport="relay")
                postfix_dump, fastpost_dump = sink.messages()
                yield postfix_dump, fastpost_dump, site.status_lines(qid)
    finally:
        pf.stop()


def test_envelope_and_headers_as_postfix(outputs):
    postfix_dump, fastpost_dump, _ = outputs
    assert _comparable(fastpost_dump) == _comparable(postfix_dump)
    ours = _comparable(fastpost_dump)
    assert "X-Mail-Args: <alice.smith@example.com>" in ours
    assert "X-Rcpt-Args: <other@remote.example> ORCPT=rfc822;rcpt@remote.example" in ours
    assert "X-Rcpt-Args: <carol@out.example> ORCPT=rfc822;carol@localdomain" in ours
    assert "From: Alice <alice.smith@example.com>" in ours
    assert "X-Other: alice@pf.localdomain" in ours  # not an address header


def test_body_and_attached_headers_untouched(outputs):
    postfix_dump, fastpost_dump, _ = outputs
    body = fastpost_dump.split("\n\n", 1)[1]
    assert body == postfix_dump.split("\n\n", 1)[1]
    assert "From: alice@pf.localdomain\nTo: bob@pf.localdomain\n" in body


def test_status_lines_name_the_queued_recipients(outputs):
    *_, lines = outputs
    assert [re.match(r"to=<([^>]*)>", line).group(1) for line in lines] == RCPTS
    assert all("status=sent" in line for line in lines)
