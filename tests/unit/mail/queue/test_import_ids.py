"""Imported Postfix queue IDs against the committers' numbers (importer._choose_ids).

Committers do not look their new queue IDs up in the index (Committer.builder): the
importer must keep off every number a committer may hold. These tests build small
Postfix queue trees (files from QueueFileBuilder, marked complete as Postfix's cleanup
does) and import them into a store whose committer has reserved a block.
"""

import asyncio
import os

from fastpost.mail.queue import message as M
from fastpost.mail.queue.importer import import_postfix_queue
from fastpost.mail.queue.queue_id import number_of, parse_short
from fastpost.mail.queue.store import FIRST_NUMBER

from .conftest import commit_one


def _queue_file(i: int) -> bytes:
    b = M.QueueFileBuilder()
    b.time(1_700_000_000.25)
    b.set_sender(f"sender{i}@example.org")
    b.add_recipient(f"user{i}@example.com", orig=f"user{i}@example.com")
    b.write(b"Subject: imported %d\n\nbody\n" % i)
    return b.build()


def _postfix_tree(root, names: dict) -> str:
    """A Postfix queue directory with one complete file per (queue, name) in ``names``."""
    for i, (qname, name) in enumerate(names):
        d = os.path.join(root, qname)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        with open(path, "wb") as fh:
            fh.write(_queue_file(i))
        os.chmod(path, 0o700)  # owner-execute: complete
    return str(root)


def _counter(store) -> int:
    with store.index.read() as txn:
        return store.index.counter(txn, b"next_number")


def test_ids_a_committer_may_hold_are_renamed(store, tmp_path):
    async def start():
        c = store.committer("t")
        qid = await commit_one(c, 0)
        return c, qid

    loop = asyncio.new_event_loop()
    try:
        committer, first = loop.run_until_complete(start())
        handed = _counter(store)  # the committer's block lies below
        usec, number = parse_short(first)
        in_block = f"{usec:05X}{number + 1:X}"  # what the committer would give out next (same µs)
        low = "ABCDE" + f"{FIRST_NUMBER - 7:X}"  # below every committer's number
        high = "12345" + f"{handed + 100:X}"  # above the counter: kept, counter raised
        src = _postfix_tree(tmp_path / "pfx", [
            ("deferred", in_block), ("deferred", low), ("deferred", high),
            ("incoming", first),  # already in the index
            ("hold", low),  # the same name twice in one tree
        ])
        said = []
        report = import_postfix_queue(store, src, on_message=lambda old, new, where: said.append((old, new)))
        assert report.imported == 5
        assert set(report.renamed) == {in_block, first, low}
        kept = [new for old, new in said if old == new]
        assert sorted(kept) == sorted([low, high])
        assert _counter(store) > handed + 100
        for old, new in report.renamed.items():
            n = number_of(new)
            assert n is not None and n >= handed  # fresh numbers, reserved past the raise
            assert store.exists(new)
        # the committer's next IDs (from its old block) meet no imported one
        ids = [committer.new_queue_id() for _ in range(50)]
        assert not any(store.exists(q) for q in ids)
        assert len(set(ids)) == 50
        loop.run_until_complete(committer.close())
    finally:
        loop.close()


def test_import_into_a_fresh_store_keeps_every_id(store, tmp_path):
    names = [("deferred", "3F1A2" + f"{FIRST_NUMBER + 3:X}"), ("incoming", "00A1B" + "1F2E3"),
             ("hold", "7777" + "7" + f"{5 * FIRST_NUMBER:X}")]
    report = import_postfix_queue(store, _postfix_tree(tmp_path / "pfx", names))
    assert report.imported == 3 and report.renamed == {}
    assert _counter(store) == 5 * FIRST_NUMBER + 1
    for _, name in names:
        assert store.exists(name)

    async def after():
        c = store.committer("t")
        try:
            return [await commit_one(c, i) for i in range(3)]
        finally:
            await c.close()

    for qid in asyncio.run(after()):
        assert number_of(qid) > 5 * FIRST_NUMBER
