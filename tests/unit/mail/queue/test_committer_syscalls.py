"""System calls the committer saves (committer.py), with their rules kept: the
free-space rule for gathering index rounds (INDEX_GATHER_MIN_FREE: a yes is kept
INDEX_SPACE_KEEP seconds, a no is asked again at every round, so that near a full disk
the index never waits longer than that)."""

from __future__ import annotations

import asyncio
import os
import time

from fastpost.mail.queue import committer as cm


_real_statvfs = os.statvfs


class _Statvfs:
    """os.statvfs with a chosen free space, counting its calls."""

    def __init__(self, free: int):
        self.free = free
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        st = _real_statvfs(path)
        return os.statvfs_result((st.f_bsize, 1, st.f_blocks, self.free, self.free,
                                  st.f_files, st.f_ffree, st.f_favail, st.f_flag,
                                  st.f_namemax))


def test_a_yes_is_kept_a_no_is_asked_again(store, monkeypatch):
    fake = _Statvfs(cm.INDEX_GATHER_MIN_FREE)
    monkeypatch.setattr(cm.os, "statvfs", fake)

    async def run():
        c = store.committer("space")
        try:
            t0 = time.monotonic()
            answers = [c._space_to_gather() for _ in range(5)]
            kept = time.monotonic() - t0 < cm.INDEX_SPACE_KEEP  # (all within the keep)
            calls_yes = fake.calls
            c._space_ok_until = float("-inf")  # the keep ran out
            fake.free = cm.INDEX_GATHER_MIN_FREE - 1
            no = [c._space_to_gather() for _ in range(3)]
            return answers, kept, calls_yes, no, fake.calls - calls_yes
        finally:
            await c.close()

    answers, kept, calls_yes, no, calls_no = asyncio.run(run())
    assert answers == [True] * 5
    if kept:  # (a machine that stalled the test past the keep asks again: no check)
        assert calls_yes == 1
    assert no == [False] * 3 and calls_no == 3

