"""fastpost super -r of a message that qmgr is delivering: no recipient is delivered
twice. The requeue is recorded and qmgr carries it out when the message leaves the
active queue: the recipient whose delivery was under way stays delivered, the others
go through maildrop, pickup and cleanup and are delivered once by the new message.

(Postfix 3.7 renames the file into maildrop at once; when pickup reads it before the
delivery under way ends, that recipient is delivered twice: see docs/queue.md.)"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delivery"))
from dlv import DeliveryInstance  # noqa: E402

from fastpost.mail.queue import index as ix  # noqa: E402

SLOW = 2.0  # the slow recipient's delivery: time to requeue while it is under way
RCPTS = ["slow@a.example", "two@b.example", "three@c.example"]
PICKUP = ("pickup    unix  n  -  n  60  1  pickup\n"
          "cleanup   unix  n  -  n  -   0  cleanup\n")


def _sent(d) -> dict:
    out: dict = {}
    for a in d.attempts():
        if a["status"] == "sent":
            out[a["recipient"]] = out.get(a["recipient"], 0) + 1
    return out


def test_requeue_during_a_delivery_delivers_each_recipient_once(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, master_extra=PICKUP,
                         main_cf={"local_recipient_maps": ""})
    # the old message: slow@ delivered slowly, two@ at once, three@ deferred
    d.rules([{"rcpt": "^slow@", "status": "sent", "delay": SLOW, "mark": True},
             {"rcpt": "^three@", "status": "deferred", "text": "not now"}])
    (old,) = d.inject([{"sender": "s@example.org", "rcpts": RCPTS}])
    d.wait(d.started, what="the slow delivery under way")
    out = d.command("super", "-r", old, check=True)
    assert f"postsuper: {old}: requeued" in out.stderr
    assert "postsuper: Requeued: 1 message" in out.stderr
    # recorded, not carried out while the slow delivery is under way (SLOW seconds)
    if "slow@a.example" not in _sent(d):
        info = d.info(old)
        assert info.state == ix.ACTIVE and info.flags & ix.FLAG_REQUEUE
    log_text = d.wait_log(rf"{old}: requeued \(postsuper -r while active\)", timeout=60)
    assert f"{old}: requeue when delivery ends (queue active)" in log_text
    d.rules([])  # from now on everything is delivered
    # pickup gives what was left (three@) to cleanup: a new message, delivered once
    m = d.wait_log(r"(\w+): uid=\d+ from=<s@example.org>", timeout=60)
    new = re.findall(r"(\w+): uid=\d+ from=<s@example.org>", m)[-1]
    assert new != old
    # pickup logs before cleanup commits: wait for the new message's end, not its absence
    d.wait_log(rf"{new}: removed", timeout=60)
    d.wait_gone([old, new], timeout=60)
    sent = {(a["recipient"], a["queue_id"]) for a in d.attempts() if a["status"] == "sent"}
    assert _sent(d) == {r: 1 for r in RCPTS}, d.attempts()
    assert sent == {("slow@a.example", old), ("two@b.example", old), ("three@c.example", new)}
    assert d.counts() == {"incoming": 0, "active": 0, "deferred": 0, "hold": 0, "corrupt": 0}


def test_requeue_between_slices_leaves_the_rest_to_the_copy(fastpost_instance, tmp_path):
    """A message taken in slices (qmgr_message_recipient_limit 10): super -r while the
    first slice is delivered. That slice's outcomes stand (its bounce is reported), the
    recipients no slice reached yet go to the requeued copy, each is delivered once."""
    d = DeliveryInstance(fastpost_instance, tmp_path, master_extra=PICKUP,
                         main_cf={"local_recipient_maps": "",
                                  "qmgr_message_recipient_limit": "10"})
    rcpts = [f"r{i:02d}@d{i}.example" for i in range(30)]
    d.rules([{"rcpt": "^r05@", "status": "bounced", "text": "no such user"},
             {"rcpt": "^r0", "status": "sent", "delay": SLOW, "mark": True},
             {"rcpt": "^s@", "status": "sent"}])
    (old,) = d.inject([{"sender": "s@example.org", "rcpts": rcpts}])
    d.wait(d.started, what="the first slice under way")
    d.command("super", "-r", old, check=True)
    d.wait_log(rf"{old}: requeued \(postsuper -r while active\)", timeout=60)
    d.wait_log(rf"{old}: sender non-delivery notification", timeout=60)
    m = d.wait_log(r"(\w+): uid=\d+ from=<s@example.org>", timeout=60)
    new = re.findall(r"(\w+): uid=\d+ from=<s@example.org>", m)[-1]
    # pickup logs before cleanup commits: wait for the new message's end, not its absence
    d.wait_log(rf"{new}: removed", timeout=60)
    d.wait_gone([old, new], timeout=60)
    by = {}
    for a in d.attempts():
        if a["recipient"].startswith("r"):
            by.setdefault(a["recipient"], []).append((a["queue_id"], a["status"]))
    assert sorted(by) == rcpts
    assert all(len(v) == 1 for v in by.values()), by
    assert by["r05@d5.example"] == [(old, "bounced")]
    assert {r for r, v in by.items() if v[0][0] == old} == set(rcpts[:10])
    assert {r for r, v in by.items() if v[0][0] == new} == set(rcpts[10:])
