"""fastpost super against a running qmgr: -h, -H, -d, -e, -f on deferred and on active
mail (a delivery in flight), end to end: held mail is not delivered, released mail is,
deleted mail is gone for good, expired mail is returned to its sender."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delivery"))
from dlv import DeliveryInstance  # noqa: E402

SLOW = 2.0  # seconds the agent takes for a "slow" recipient: time to act while in flight


def _tried(d, rcpt: str) -> int:
    return sum(1 for a in d.attempts() if a["recipient"] == rcpt)


def _state(d, qid):
    info = d.info(qid)
    return info.state_name if info is not None else None


def test_super_operations_with_qmgr_running(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        # retries only when the test asks (flush), a deferred scan every second
        "minimal_backoff_time": "1h", "maximal_backoff_time": "2h", "queue_run_delay": "1s"})
    later = {"status": "deferred", "text": "not yet"}
    d.rules([{"rcpt": "^slow", "status": "deferred", "text": "slowly not yet", "delay": SLOW},
             {"rcpt": "^sender@", "status": "deferred", "text": "notices wait"}, later])
    held, deleted, expired, slow_hold, slow_del, forced = d.inject([
        {"rcpts": ["held@a.example"]}, {"rcpts": ["deleted@a.example"]},
        {"rcpts": ["expired@a.example"]}, {"rcpts": ["slowhold@b.example"]},
        {"rcpts": ["slowdel@c.example"]}, {"rcpts": ["forced@a.example"]}])
    quick = (held, deleted, expired, forced)
    d.wait(lambda: all(_state(d, q) == "deferred" for q in quick), what="deferred")
    # -h and -d while the slow deliveries are in flight (active)
    d.wait(lambda: _tried(d, "slowhold@b.example") == 0 and _state(d, slow_hold) == "active"
           and _state(d, slow_del) == "active", what="slow ones active")
    out = d.command("super", "-h", slow_hold, "-d", slow_del, check=True)
    assert f"postsuper: {slow_hold}: placed on hold" in out.stderr
    assert f"postsuper: {slow_del}: removed" in out.stderr
    # on the deferred ones
    out = d.command("super", "-h", held, "-d", deleted, "-e", expired, "-h", forced, check=True)
    assert f"postsuper: {held}: placed on hold" in out.stderr
    assert f"postsuper: {expired}: expired" in out.stderr
    assert "postsuper: Placed on hold: 2 messages" in out.stderr
    # the attempts in flight end: the held one stays held, the deleted one stays gone
    d.wait(lambda: _tried(d, "slowhold@b.example") == 1 and _tried(d, "slowdel@c.example") == 1,
           what="slow attempts done")
    d.wait(lambda: _state(d, slow_hold) == "hold", what="held after its attempt")
    assert _state(d, slow_del) is None and _state(d, deleted) is None
    listing = d.command("queue", "-p", check=True).stdout
    assert f"{held}!" in listing and f"{slow_hold}!" in listing and deleted not in listing
    assert f"{expired}#" in listing

    # everything may be delivered now; a flush retries all but the held ones
    d.rules([{"rcpt": "^sender@", "status": "deferred", "text": "notices wait"}])
    d.flush()
    d.wait_log(rf"{expired}: from=<sender@example.org>, status=expired, returned to sender")
    d.wait_gone([expired])
    d.flush()
    d.wait(lambda: any(n for n in d.notices()), what="the expiry notice")
    assert _tried(d, "held@a.example") == 1 and _tried(d, "slowhold@b.example") == 1
    assert _tried(d, "expired@a.example") == 1  # returned at its next turn, not tried again
    assert _state(d, held) == _state(d, slow_hold) == _state(d, forced) == "hold"
    assert _tried(d, "deleted@a.example") == 1 and _tried(d, "slowdel@c.example") == 1

    # -H releases into deferred, due now: the next deferred scan delivers without a flush
    out = d.command("super", "-H", held, "-H", slow_hold, check=True)
    assert "postsuper: Released from hold: 2 messages" in out.stderr
    d.wait_gone([held, slow_hold])
    assert _tried(d, "held@a.example") == 2 and _tried(d, "slowhold@b.example") == 2
    # -f: expire and release: returned to the sender at its next attempt, not delivered
    d.rules([{"rcpt": "^sender@", "status": "deferred", "text": "notices wait"}, later])
    out = d.command("super", "-f", forced, check=True)
    assert f"postsuper: {forced}: expired" in out.stderr
    assert f"postsuper: {forced}: released from hold" in out.stderr
    d.wait_log(rf"{forced}: from=<sender@example.org>, status=expired, returned to sender")
    d.wait_gone([forced])
    assert _tried(d, "deleted@a.example") == 1 and _tried(d, "slowdel@c.example") == 1
    assert _tried(d, "forced@a.example") == 1  # forced to expire: never tried again
    assert f"{forced}: to=<forced@a.example>, relay=none, " in d.log()  # "administratively expired"
