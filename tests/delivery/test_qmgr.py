"""qmgr with real daemons: delivery, scheduling, retries, expiry, notices, recovery."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlv import DeliveryInstance  # noqa: E402


def test_delivers_and_removes(fastpost_instance, tmp_path):
    d = DeliveryInstance(fastpost_instance, tmp_path)
    ids = d.inject([{"sender": "alice@example.org", "rcpts": ["bob@remote.example"]}])
    d.wait_gone(ids)
    text = d.wait_log(rf"{ids[0]}: removed")
    assert f"{ids[0]}: from=<alice@example.org>, size=" in text
    assert "nrcpt=1 (queue active)" in text
    assert f"{ids[0]}: to=<bob@remote.example>, relay=remote.example[127.0.0.1]:25" in text
    (a,) = d.attempts()
    assert (a["queue_id"], a["recipient"], a["nexthop"], a["transport"]) == \
        (ids[0], "bob@remote.example", "remote.example", "smtp")
