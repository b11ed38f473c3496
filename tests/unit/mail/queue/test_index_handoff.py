"""The committer's index hand-off: the batches waiting for the index thread make one
round, and an index round's result reaches the loop without a commit after it
although it does not wake the loop while a flush runs (committer.py,
"_post(lazy=True)")."""

import asyncio
import threading

from fastpost.mail.queue import index as ix

from .conftest import commit_one


async def _until(pred, timeout=10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.005)


def test_a_lone_message_is_indexed_and_reported(store):
    """No batch follows: the round's result wakes the loop although no flush runs."""
    reported = []

    async def run():
        c = store.committer("t", on_indexed=reported.extend)
        try:
            qid = await commit_one(c, 1)
            await _until(lambda: qid in reported)
            assert store.get(qid).state == ix.INCOMING
            assert c.index_rounds == 1
        finally:
            await c.close()

    asyncio.run(run())


def test_batches_held_while_a_round_runs_go_over_in_one_piece(store):
    """While the index thread is in a round, the batches flushed meanwhile wait and
    then make one round together, in order."""
    reported = []
    entered = threading.Event()
    release = threading.Event()
    real = store.index_batch

    def slow_index_batch(infos, watermarks):
        entered.set()
        assert release.wait(10)
        return real(infos, watermarks)

    async def run():
        c = store.committer("t", on_indexed=reported.extend)
        try:
            store.index_batch = slow_index_batch
            first = await commit_one(c, 0)
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, entered.wait, 10)  # round 1 runs
            later = []
            for i in range(1, 6):  # five batches, each acknowledged (synced) on its own
                later.append(await commit_one(c, i))
            assert c.index_rounds == 0 and reported == []
            release.set()
            await _until(lambda: len(reported) == 6)
            assert reported == [first, *later]
            assert c.index_rounds == 2
            assert store.counts()["incoming"] == 6
        finally:
            release.set()
            store.index_batch = real
            await c.close()

    asyncio.run(run())


def test_close_hands_over_what_it_holds(store):
    """close() right after a commit: the message is indexed before the threads stop."""

    async def run():
        c = store.committer("t")
        qid = await commit_one(c, 7)
        await c.close()
        return qid

    qid = asyncio.run(run())
    assert store.get(qid) is not None
    assert store.counts()["incoming"] == 1
