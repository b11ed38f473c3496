"""qmgr recipient slicing: a message with 10,000 recipients is delivered with at most
qmgr_message_recipient_limit of them in core at a time, its outcomes (delivered,
bounced, deferred) accounted across the slices: one activation, one non-delivery
notice naming every bounce, the deferred ones kept."""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "delivery"))
from dlv import DeliveryInstance  # noqa: E402

from fastpost.mail.queue import RCPT_DONE  # noqa: E402

N = 10_000  # ten slices (benchmarks/qmgr/bench_slicing.py runs bigger messages)
LIMIT = 1_000
BOUNCE = (10, 2_345, 9_990)
LATER = (4_000, 8_000)


def _address(i: int) -> str:
    kind = "bounce" if i in BOUNCE else "later" if i in LATER else "r"
    return f"{kind}{i}@big.example"


def test_ten_thousand_recipients_in_slices(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path, main_cf={
        "qmgr_message_recipient_limit": str(LIMIT), "minimal_backoff_time": "1h",
        "maximal_backoff_time": "2h", "queue_run_delay": "1h",
        "default_destination_concurrency_limit": "4"})
    d.rules([{"rcpt": "^bounce", "status": "bounced", "dsn": "5.1.1", "text": "no such user"},
             {"rcpt": "^later", "status": "deferred", "text": "try later"}])
    (qid,) = d.inject([{"sender": "big@example.org", "rcpts": [_address(i) for i in range(N)]}])
    d.wait(lambda: (i := d.info(qid)) and i.state_name == "deferred", timeout=300,
           what="the big message deferred")
    log_text = d.wait_log(rf"{qid}: sender non-delivery notification: ")
    assert log_text.count(f"{qid}: from=<big@example.org>, size=") == 1  # one activation
    assert f"nrcpt={N} (queue active)" in log_text
    assert len(re.findall(rf"{qid}: to=<bounce\d+@big.example>, .*status=bounced", log_text)) == 3

    attempts = [a for a in d.attempts() if a["queue_id"] == qid]
    assert len(attempts) == N and len({a["recipient"] for a in attempts}) == N
    # slice k is positions [k*LIMIT, (k+1)*LIMIT): every answer of a slice came before
    # qmgr sent any request of the next one, so at most LIMIT recipients were in core
    pos = {_address(i): i for i in range(N)}
    slices: dict[int, list] = {}
    for a in attempts:
        slices.setdefault(pos[a["recipient"]] // LIMIT, []).append(a)
    assert sorted(slices) == list(range(N // LIMIT))
    for k in range(N // LIMIT - 1):
        assert max(a["end"] for a in slices[k]) <= min(a["request_time"] for a in slices[k + 1]), k
    # the deferred two remain, with their reasons; everything else is done
    info = d.info(qid)
    live = sorted(r.address for r in info.recipients if r.status != RCPT_DONE)
    assert live == sorted(_address(i) for i in LATER)
    listing = d.command("queue", "-p", check=True).stdout
    assert "(try later)" in listing and "later4000@big.example" in listing
    assert "r1@big.example" not in listing
    # the notice went to the sender and named the three bounces
    notice = [a for a in d.attempts() if a["recipient"] == "big@example.org"]
    assert len(notice) == 1
