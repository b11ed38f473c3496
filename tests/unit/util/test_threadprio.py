"""util/threadprio.py: FASTPOST_SCHED sets the calling thread's nice value or policy, and only its."""

import os
import threading

import pytest

from fastpost.util import threadprio


def _in_thread(fn):
    """Run fn in a new thread; return (its result, its tid)."""
    out = {}

    def run():
        out["tid"] = threading.get_native_id()
        out["result"] = fn()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["result"], out["tid"]


def test_parse():
    assert threadprio.parse("index=19, cleanup=batch,smtpd=IDLE,") == {
        "index": "19", "cleanup": "batch", "smtpd": "idle"}
    assert threadprio.parse("") == {}
    for bad in ("index", "index=", "=5", "index=fast"):
        with pytest.raises(ValueError):
            threadprio.parse(bad)


def test_unset_changes_nothing():
    assert threadprio.apply("index", environ={}) is None
    assert threadprio.apply("index", environ={"FASTPOST_SCHED": "commit=5"}) is None


def test_nice_of_the_calling_thread_only():
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def set_and_read():
        got = threadprio.apply("index", environ={"FASTPOST_SCHED": f"index={before + 5}"})
        return got, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    (got, nice), _tid = _in_thread(set_and_read)
    assert got == str(before + 5)
    assert nice == before + 5
    # the calling (main) thread is untouched
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


@pytest.mark.parametrize("value, policy", [("batch", os.SCHED_BATCH), ("idle", os.SCHED_IDLE)])
def test_policy(value, policy):
    def set_and_read():
        got = threadprio.apply("commit", environ={"FASTPOST_SCHED": f"commit={value}"})
        return got, os.sched_getscheduler(threading.get_native_id())

    (got, seen), _tid = _in_thread(set_and_read)
    assert (got, seen) == (value, policy)
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER


def test_malformed_is_a_warning_not_an_error():
    assert threadprio.apply("index", environ={"FASTPOST_SCHED": "index=fast"}) is None


def test_normal_returns_to_the_default_policy():
    def batch_then_normal():
        threadprio.apply("smtpd", environ={"FASTPOST_SCHED": "smtpd=batch"})
        got = threadprio.apply("smtpd", environ={"FASTPOST_SCHED": "smtpd=normal"})
        return got, os.sched_getscheduler(threading.get_native_id())

    assert _in_thread(batch_then_normal)[0] == ("normal", os.SCHED_OTHER)


# -- BusySwitch: SCHED_BATCH while busy -------------------------------------------------


def _policy(tid):
    return os.sched_getscheduler(tid)


def test_busy_switch_follows_the_thresholds():
    """A real thread's policy, read back from the kernel after each client arrives/leaves."""
    seen = []

    def serve():
        tid = threading.get_native_id()
        sw = threadprio.BusySwitch(high=3, low=1, hold=0)
        for step in ("+", "+", "+", "+", "-", "-", "-", "+", "+", "-", "-", "-"):
            sw.arrived() if step == "+" else sw.gone()
            seen.append((sw.clients, _policy(tid)))
        return sw.switches

    switches, _tid = _in_thread(serve)
    B, O = os.SCHED_BATCH, os.SCHED_OTHER
    assert seen == [(1, O), (2, O), (3, B), (4, B),  # up to HIGH: batch
                    (3, B), (2, B), (1, O),          # down to LOW: back
                    (2, O), (3, B),                  # between the two: no change
                    (2, B), (1, O), (0, O)]
    assert switches == 4
    assert _policy(threading.get_native_id()) == O  # the test's own thread untouched


def test_busy_switch_changes_another_thread_by_tid():
    """The loop thread creates the switch; the change applies to it, not the caller."""
    ready, done = threading.Event(), threading.Event()
    box = {}

    def loop_thread():
        box["sw"] = threadprio.BusySwitch(high=1, low=0, hold=0)
        ready.set()
        done.wait(10)

    t = threading.Thread(target=loop_thread)
    t.start()
    try:
        ready.wait(10)
        sw = box["sw"]
        sw.arrived()
        assert _policy(sw.tid) == os.SCHED_BATCH
        assert _policy(threading.get_native_id()) == os.SCHED_OTHER
        sw.gone()
        assert _policy(sw.tid) == os.SCHED_OTHER
    finally:
        done.set()
        t.join()


def test_busy_switch_refused_change_is_logged_once_and_never_raises():
    # A thread id that does not exist: ESRCH, as EPERM would be, is not the session's problem.
    sw = threadprio.BusySwitch(high=1, low=0, tid=2**22 + 12345, hold=0)
    for _ in range(3):
        sw.arrived()
        sw.gone()
    assert sw.broken and sw.switches == 0 and not sw.batch and sw.clients == 0


def test_busy_switch_from_environ():
    env = threadprio.BusySwitch.from_environ
    assert env("smtpd", {"FASTPOST_SCHED_ADAPT": "0"}) is None
    assert (env("smtpd", {}) is not None) == threadprio.ADAPT_DEFAULT
    on = env("smtpd", {"FASTPOST_SCHED_ADAPT": "1"})
    assert (on.high, on.low) == (threadprio.ADAPT_HIGH, threadprio.ADAPT_LOW)
    custom = env("smtpd", {"FASTPOST_SCHED_ADAPT": "60:30"})
    assert (custom.high, custom.low, custom.hold) == (60, 30, threadprio.ADAPT_HOLD)
    held = env("smtpd", {"FASTPOST_SCHED_ADAPT": "3:1:0.5"})
    assert (held.high, held.low, held.hold) == (3, 1, 0.5)
    for bad in ("yes", "30:60", "5:5", "a:b", "3:1:x", "3:1:0:0"):
        assert env("smtpd", {"FASTPOST_SCHED_ADAPT": bad}) is None
    # a fixed FASTPOST_SCHED setting for the role wins
    assert env("smtpd", {"FASTPOST_SCHED_ADAPT": "1", "FASTPOST_SCHED": "smtpd=batch"}) is None
    assert env("smtpd", {"FASTPOST_SCHED_ADAPT": "1", "FASTPOST_SCHED": "index=idle"}) is not None


def test_busy_switch_holds_batch_until_quiet_for_hold_seconds():
    """Back to SCHED_OTHER only at <= LOW clients *and* HOLD seconds after the last HIGH."""
    now = [100.0]

    def serve():
        tid = threading.get_native_id()
        sw = threadprio.BusySwitch(high=2, low=0, hold=1.0, clock=lambda: now[0])
        sw.arrived(), sw.arrived()          # 2 clients at t=100: batch
        states = [_policy(tid)]
        sw.gone(), sw.gone()                # 0 clients at once: held
        states.append(_policy(tid))
        now[0] = 100.5
        sw.arrived(), sw.gone()             # still within the hold
        states.append(_policy(tid))
        now[0] = 101.2
        sw.arrived(), sw.gone()             # quiet for 1.2 s: back
        states.append(_policy(tid))
        return states, sw.switches

    (states, switches), _tid = _in_thread(serve)
    B, O = os.SCHED_BATCH, os.SCHED_OTHER
    assert states == [B, B, B, O]
    assert switches == 2
