"""read_envelope() on queue files written by Debian's C Postfix (DSN data as Postfix
stores it: named attributes, O records, the W record)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "queue"))
from postfix_instance import PostfixInstance, postfix_tmpdir  # noqa: E402

from fastpost.mail.envelope import read_envelope  # noqa: E402

pytestmark = pytest.mark.postfix


def test_envelope_of_a_postfix_queue_file():
    with postfix_tmpdir() as root:
        pfx = PostfixInstance(root, delay_warning_time="1h")
        pfx.start()
        try:
            pfx.send("alice@example.org", ["bob@remote.example", "carol@remote.example"],
                     "Subject: x\r\n\r\nhi\r\n", mail_options=["RET=HDRS", "ENVID=abc+2Bdef"],
                     rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob@Remote.example"])
            pfx.wait_deferred(1)
            (path,) = pfx.queue_files("deferred")
            data = open(path, "rb").read()
        finally:
            pfx.stop()
    env = read_envelope(data)
    assert env.sender == "alice@example.org"
    assert env.envid == "abc+def" and env.ret == 2
    assert env.attrs["log_client_name"] == "localhost" and env.attrs["rewrite_context"] == "local"
    assert env.warn_time == pytest.approx(env.arrival + 3600, abs=2)
    bob, carol = env.recipients
    assert (bob.address, bob.notify, bob.orcpt) == ("bob@remote.example", 6, "rfc822;Bob@Remote.example")
    assert bob.orig == "bob@remote.example"
    assert carol.address == "carol@remote.example"
    assert data[bob.offset:bob.offset + 1] == b"R"  # offsets point at the R records
    assert env.size > 0 and env.rcpt_count == 2
