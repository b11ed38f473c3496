"""The session core's timeout queue (_Deadlines): one loop timer for all sessions'
timeout checks, in both builds of the core (_session_py interpreted, _session_c)."""

from __future__ import annotations

import asyncio
import importlib

import pytest

BUILDS = ["fastpost.daemons.smtpd._session_py", "fastpost.daemons.smtpd._session_c"]


class FakeSession:
    """What _Deadlines calls: _check_timeout() (records the order of the calls)."""

    def __init__(self, name, calls, fail=False):
        self.name = name
        self.calls = calls
        self.fail = fail

    def _check_timeout(self):
        self.calls.append(self.name)
        if self.fail:
            raise RuntimeError("boom")


@pytest.fixture(params=BUILDS)
def core(request):
    return importlib.import_module(request.param)


def _run_until(loop, calls, n):
    async def wait():
        while len(calls) < n:
            await asyncio.sleep(0.01)
    loop.run_until_complete(asyncio.wait_for(wait(), 10))


def test_checks_run_in_order_cancelled_ones_do_not(core):
    loop = asyncio.new_event_loop()
    try:
        calls = []
        q = core._Deadlines(loop, 0.05)
        a = q.add(FakeSession("a", calls))
        b = q.add(FakeSession("b", calls))
        c = q.add(FakeSession("c", calls))
        assert q.live == 3
        b.cancel()
        b.cancel()  # (twice: once counted)
        assert q.live == 2
        _run_until(loop, calls, 2)
        loop.run_until_complete(asyncio.sleep(0.1))
        assert calls == ["a", "c"]
        assert q.live == 0 and not q.queue and q.handle is None
        assert a.session is None and c.session is None
        a.cancel()  # after it ran: nothing
        assert q.live == 0
    finally:
        loop.close()


def test_a_check_armed_from_a_check_runs_later(core):
    loop = asyncio.new_event_loop()
    try:
        calls = []
        q = core._Deadlines(loop, 0.05)

        class Rearming(FakeSession):
            def _check_timeout(self):
                super()._check_timeout()
                if len(self.calls) == 1:
                    q.add(self)  # as a busy session's _check_timeout() re-arms

        q.add(Rearming("r", calls))
        q.add(FakeSession("s", calls))
        _run_until(loop, calls, 3)
        assert calls == ["r", "s", "r"]
    finally:
        loop.close()


def test_a_failing_check_goes_to_the_handler_and_the_rest_run(core):
    loop = asyncio.new_event_loop()
    seen = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        calls = []
        q = core._Deadlines(loop, 0.01)
        q.add(FakeSession("bad", calls, fail=True))
        q.add(FakeSession("good", calls))
        _run_until(loop, calls, 2)
        assert calls == ["bad", "good"]
        assert len(seen) == 1 and isinstance(seen[0]["exception"], RuntimeError)
    finally:
        loop.close()


def test_cancelled_entries_are_dropped_when_they_pile_up(core):
    loop = asyncio.new_event_loop()
    try:
        q = core._Deadlines(loop, 3600)
        for _ in range(1000):
            q.add(FakeSession("x", [])).cancel()
        assert q.live == 0
        assert len(q.queue) <= 65
        keep = q.add(FakeSession("kept", []))
        for _ in range(200):
            q.add(FakeSession("x", [])).cancel()
        assert keep in list(q.queue) and q.live == 1
        assert len(q.queue) <= 2 * q.live + 65
        q.handle.cancel()
    finally:
        loop.close()
