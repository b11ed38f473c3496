"""qmgr's scheduler and retry arithmetic, without processes."""

from __future__ import annotations

import pytest

from fastpost.daemons.qmgr.manager import next_retry
from fastpost.daemons.qmgr.scheduler import (
    Entry, Feedback, Transport, TransportLimits, parse_feedback,
)


def test_parse_feedback():
    assert parse_feedback("1") == Feedback(1.0)
    assert parse_feedback("1 / concurrency") == Feedback(1.0, "concurrency")
    assert parse_feedback("1/sqrt_concurrency").value(16) == 0.25
    assert parse_feedback("1/concurrency").value(4) == 0.25
    for bad in ("x", "1/windows", "-1", ""):
        with pytest.raises(ValueError):
            parse_feedback(bad)


def _t(**kw) -> Transport:
    return Transport("smtp", TransportLimits(**kw))


def test_window_grows_only_while_in_use_and_stops_at_the_limit():
    t = _t(initial_concurrency=2, dest_concurrency_limit=4)
    q = t.queue("Example.COM")
    assert q.name == "example.com" and q.window == 2
    q.positive_feedback()  # busy 0: window 2 < 0 + 2 is false: not in use, no growth
    assert q.window == 2
    q.busy = 2
    q.positive_feedback()
    assert q.window == 3
    q.busy = 3
    for _ in range(5):
        q.positive_feedback()
    assert q.window == 4  # the limit


def test_fractional_feedback_has_hysteresis():
    t = _t(initial_concurrency=4, dest_concurrency_limit=0, positive=parse_feedback("1/concurrency"))
    q = t.queue("d")
    q.busy = 4
    grown = []
    for _ in range(8):
        q.positive_feedback()
        grown.append(q.window)
    assert grown[:2] == [4, 4] and grown[-1] >= 5  # whole steps only


def test_failed_cohort_kills_and_revive_restores():
    t = _t(initial_concurrency=5, cohort_limit=1, dead_time=30)
    q = t.queue("dead.example")
    died = [q.negative_feedback(100.0, "4.4.1", "refused") for _ in range(5)]
    # 1/5 + 1/4 + 1/3 + 1/2 >= 1: dead at the fourth failure of a window of five
    assert died == [False, False, False, True, False]
    assert q.dead and q.dead_until == 130.0 and q.limit() == 0 and not q.can_start(101)
    assert q.dead_reason == ("4.4.1", "refused")
    q.revive()
    assert not q.dead and q.window == 5 and q.fail_cohorts == 0


def test_cohort_limit_zero_never_kills():
    t = _t(initial_concurrency=3, cohort_limit=0)
    q = t.queue("d")
    assert not any(q.negative_feedback(1.0, "4.4.1", "x") for _ in range(50))
    assert q.window == 1 and not q.dead


def test_virtual_time_interleaves_messages_across_destinations():
    t = _t(process_limit=1)
    big, small = object(), object()
    t.add_entries([Entry(big, [i], t.queue(f"list{i}.example")) for i in range(100)])
    order = []
    for _ in range(10):
        e, _ = t.next_entry(1.0)
        order.append(e.message)
        t.finished(e)
        if len(order) == 3:
            t.add_entries([Entry(small, [0], t.queue("small.example"))])
    # the small message, queued after three entries of the list, goes within one turn
    assert order.index(small) in (3, 4)


def test_process_limit_and_rate_delays():
    t = _t(process_limit=2, dest_rate_delay=5.0)
    for i in range(3):
        t.add_entries([Entry(object(), [i], t.queue("d.example"))])
    e1, _ = t.next_entry(10.0)
    e2, wake = t.next_entry(10.0)  # a rate delay makes the window 1
    assert e1 is not None and e2 is None and wake == 0.0
    t.finished(e1)
    t.mark_ready(e1.queue)
    e2, wake = t.next_entry(11.0)  # free, but not before 10 + 5
    assert e2 is None and wake == 15.0
    for q in t.take_later():
        t.mark_ready(q)
    e3, _ = t.next_entry(15.0)
    assert e3 is not None


def test_recipient_chunks():
    t = _t(dest_recipient_limit=2)
    assert t.chunk([1, 2, 3, 4, 5]) == [[1, 2], [3, 4], [5]]
    assert _t(dest_recipient_limit=0).chunk(list(range(7))) == [list(range(7))]


def test_next_retry_backoff_and_jitter():
    assert next_retry(1000, 990, 300, 4000) == 1300  # young: the minimal backoff
    assert next_retry(10000, 9000, 300, 4000) == 11000  # age 1000: wait 1000 (doubling)
    assert next_retry(100000, 0, 300, 4000) == 104000  # old: the maximal backoff
    assert next_retry(1000, 990, 300, 4000, 0.2, rand=lambda: 1.0) == 1360
    assert next_retry(1000, 990, 300, 4000, 0.2, rand=lambda: 0.0) == 1300
