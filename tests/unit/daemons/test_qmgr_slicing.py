"""qmgr's slice arithmetic on a real queue store: which recipients a slice holds, how
much room a message takes, when the feeder must wait (manager._slice, _activate,
_read_slice)."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastpost.daemons.qmgr.manager import _activate, _read_slice, _slice
from fastpost.mail.queue import ACTIVE, HOLD, INCOMING, RCPT_DONE, QueueSettings, QueueStore


async def _commit(store, rcpt_lists):
    c = store.committer("test")
    ids = []
    try:
        for rcpts in rcpt_lists:
            b = c.builder()
            b.time(time.time())
            b.set_sender("s@example.org")
            for r in rcpts:
                b.add_recipient(r, r)
            await b.write(b"Subject: x\r\n\r\nbody\r\n")
            ids.append(await c.commit(b))
    finally:
        await c.close()
    return ids


@pytest.fixture
def store(tmp_path):
    s = QueueStore.open(settings=QueueSettings(str(tmp_path / "queue")))
    yield s
    s.close()


def test_slices_cover_the_live_recipients_once(store):
    (qid,) = asyncio.run(_commit(store, [[f"r{i}@x.example" for i in range(25)]]))
    info = store.get(qid)
    rcpts, nxt = _slice(store, info, 0, 25)  # fits: one slice
    assert [r.offset for r in rcpts] == [r.offset for r in info.recipients] and nxt is None
    with store.edit() as ed:  # recipients 0..4 done already (an earlier attempt)
        ed.mark_recipients(qid, [r.offset for r in info.recipients[:5]], RCPT_DONE)
    info = store.get(qid)
    assert store.get(qid, recipients=False).live == 20
    seen, pos, slices = [], 0, 0
    while pos is not None:
        rcpts, pos = _slice(store, info, pos, 7)
        assert 0 < len(rcpts) <= 7
        seen.extend(r.offset for r in rcpts)
        slices += 1
    assert slices == 3  # 20 live recipients, 7 at a time
    assert seen == sorted(r.offset for r in info.recipients[5:])


def test_activate_takes_a_slice_and_read_slice_the_rest(store):
    small, big = asyncio.run(_commit(store, [["a@x.example", "b@x.example"],
                                             [f"r{i}@y.example" for i in range(30)]]))
    offsets = [r.offset for r in store.get(big).recipients]
    batch, _more, blocked = _activate(store, [INCOMING], None, 10, frozenset(), 12, True, 5)
    by_id = {b[0].queue_id: b for b in batch}
    assert set(by_id) == {small, big} and not blocked
    _, env, _, _, next_pos, rcpts = by_id[big]
    assert len(env.recipients) == 10 and env.rcpt_total == 30  # 12 - 2 room left
    assert [r.offset for r in rcpts] == offsets[:10]
    assert next_pos == offsets[10]
    assert len(by_id[small][1].recipients) == 2 and by_id[small][4] is None
    assert store.get(big).state == ACTIVE
    info, env, next_pos, rcpts = _read_slice(store, big, next_pos, 15)
    assert [r.address for r in env.recipients] == [f"r{i}@y.example" for i in range(10, 25)]
    assert next_pos == offsets[25]
    info, env, next_pos, rcpts = _read_slice(store, big, next_pos, 15)
    assert len(env.recipients) == 5 and next_pos is None
    with store.edit() as ed:  # put on hold meanwhile: no more slices
        ed.set_state(big, HOLD)
    assert _read_slice(store, big, 0, 15) is None


def test_feeder_waits_when_less_than_the_minimum_is_left(store):
    asyncio.run(_commit(store, [["a@x.example"] * 1, [f"r{i}@y.example" for i in range(30)]]))
    # something is in core (take_one False) and only 3 recipients of room: the big one
    # waits rather than taking a slice below the minimum of 5
    batch, _more, blocked = _activate(store, [INCOMING], None, 10, frozenset(), 4, False, 5)
    assert len(batch) == 1 and blocked
