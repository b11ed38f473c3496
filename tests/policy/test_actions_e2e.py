"""access(5) actions that act on the message, end to end: a real master runs smtpd,
cleanup and trivial-rewrite (no qmgr: the mail stays queued), a client sends mail over
SMTP, and what each action asked for must be in the queue as `fastpost queue -j` and
`fastpost cat` show it: HOLD (hold queue), DISCARD (not queued), REDIRECT, BCC, FILTER,
PREPEND."""

from __future__ import annotations

import re
import smtplib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.instance import free_port  # noqa: E402

ACTIONS = ("{hold@example.org = HOLD held by policy} "
           "{discard@example.org = DISCARD dropped by policy} "
           "{redirect@example.org = REDIRECT elsewhere@example.net} "
           "{bcc@example.org = BCC copy@example.net} "
           "{filter@example.org = FILTER smtp:[127.0.0.1]:10025} "
           "{prepend@example.org = PREPEND X-Policy: prepended}")


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    from helpers.instance import Instance

    port = free_port()
    master = (f"{port} inet n - n - - smtpd\n"
              "cleanup unix n - n - 0 cleanup\n"
              "rewrite unix - - n - - trivial-rewrite\n")
    inst = Instance(tmp_path_factory.mktemp("e2e"), master_cf=master, main_cf={
        "mynetworks": "127.0.0.0/8",
        "smtpd_sender_restrictions": f"check_sender_access inline:{{ {ACTIONS} }}"})
    inst.port = port
    inst.start()
    yield inst
    inst.cleanup()


def _send(inst, sender: str) -> str:
    """Send one message from ``sender``; return its queue ID."""
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.ehlo("client.example")
        reply = s.sendmail(sender, ["rcpt@remote.example"], f"Subject: {sender}\r\n\r\nbody\r\n")
        assert reply == {}
    line = inst.wait_log(r": message-id=", count=_send.count + 1)
    _send.count += 1
    return re.findall(r"(\w+): message-id=", line)[-1]


_send.count = 0


def test_message_actions_reach_the_queue(instance):
    import json

    qids = {sender: _send(instance, f"{sender}@example.org")
            for sender in ("hold", "redirect", "bcc", "filter", "prepend", "discard")}
    queue = {}
    for line in instance.command("queue", "-j", check=True).stdout.splitlines():
        entry = json.loads(line)
        queue[entry["queue_id"]] = entry

    def cat(name):
        return instance.command("cat", "-q", qids[name], check=True).stdout

    assert queue[qids["hold"]]["queue_name"] == "hold"
    assert "redirect_to: elsewhere@example.net" in cat("redirect")
    assert [r["address"] for r in queue[qids["bcc"]]["recipients"]] == [
        "rcpt@remote.example", "copy@example.net"]
    assert "content_filter: smtp:[127.0.0.1]:10025" in cat("filter")
    assert "\nX-Policy: prepended\n" in cat("prepend")
    assert qids["discard"] not in queue
    for name in ("redirect", "bcc", "filter", "prepend"):
        assert queue[qids[name]]["queue_name"] == "incoming"
