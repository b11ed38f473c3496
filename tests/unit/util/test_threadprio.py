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
