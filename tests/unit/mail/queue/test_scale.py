"""Listing, counting and selecting take memory independent of the queue's size.

The million-message run is a benchmark (benchmarks/queue/bench_scale.py); here a queue of
10,000 messages must be walked with a Python heap peak no larger than for 2,000 (plus a
little slack), and far below what holding the listing would take.
"""

import io
import tracemalloc

import pytest

from fastpost.mail.queue import HOLD, QueueStore
from fastpost.mail.queue.showq import write_json, write_mailq

from .conftest import fill, settings


def heap_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class Sink:
    def __init__(self):
        self.lines = 0

    def write(self, text):
        self.lines += text.count("\n")


def walk_all(store):
    def run():
        n = sum(1 for _ in store.messages())
        write_mailq(store, Sink())
        write_json(store, Sink())
        with store.edit() as ed:  # and an edit pass in chunks, as super -h ALL does
            pass
        return n
    return run


@pytest.mark.slow
def test_walks_are_bounded(tmp_path):
    peaks = {}
    for n in (2000, 10000):
        st = QueueStore.open(settings=settings(tmp_path / str(n)))
        for _ in range(n // 2000):
            fill(st, 2000)
        assert st.counts()["incoming"] == n
        peaks[n] = heap_peak(walk_all(st))
        st.close()
    # holding 10,000 MessageInfo objects would take several MiB (five times what 2,000
    # take); walking takes what a 1,000-entry batch takes, whatever the queue size
    assert peaks[10000] < 4 * 2**20
    assert peaks[10000] < peaks[2000] * 1.5 + 256 * 1024


def test_counts_come_from_the_index(tmp_path):
    st = QueueStore.open(settings=settings(tmp_path))
    ids = fill(st, 500)
    with st.edit() as ed:
        for qid in ids[:100]:
            ed.set_state(qid, HOLD)
        for qid in ids[100:150]:
            ed.delete(qid)
    assert st.counts() == {"incoming": 350, "active": 0, "deferred": 0, "hold": 100, "corrupt": 0}
    assert sum(1 for _ in st.messages(["hold"])) == 100
    out = io.StringIO()
    assert write_mailq(st, out) == 450
    st.close()
