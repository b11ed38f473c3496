"""FASTPOST_COMMIT_TRACE: the committer's step times per batch (benchmarks/committer_gil.py)."""

import os

from fastpost.mail.queue import committer as committer_mod
from fastpost.mail.queue.store import QueueStore

from .conftest import fill, settings


def test_trace_lines_carry_each_message_commit_time(tmp_path, monkeypatch):
    trace = tmp_path / "ct"
    monkeypatch.setattr(committer_mod, "_TRACE", str(trace))
    with QueueStore.open(settings=settings(tmp_path / "q")) as store:
        ids = fill(store, 7)
    assert len(ids) == 7
    (path,) = [p for p in tmp_path.iterdir() if p.name.startswith("ct.")]
    assert path.name == f"ct.{os.getpid()}"
    flushed = [line for line in path.read_text().splitlines() if line.startswith("F ")]
    messages = 0
    for line in flushed:
        steps, sep, queued = line.partition(" | ")
        assert sep, line
        n, writev, sync_called, sync_done, back, posted, delivered = map(float, steps.split()[1:])
        taken, *commits = map(float, queued.split())
        # the batch's messages, each committed before the I/O thread took the batch,
        # then the steps in order
        assert len(commits) == n
        assert all(c <= taken for c in commits)
        assert taken <= writev <= sync_called <= sync_done <= back <= posted <= delivered
        messages += len(commits)
    assert messages == 7
