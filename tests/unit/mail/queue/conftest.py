"""Helpers shared by the queue store tests."""

import asyncio
import time

import pytest

from fastpost.mail.queue.store import QueueSettings, QueueStore


def settings(path, **kw) -> QueueSettings:
    return QueueSettings(str(path), **kw)


async def commit_one(committer, i: int = 0, *, body: bytes | None = None, rcpts=None, state=None,
                     sender=None):
    b = committer.builder()
    b.time(time.time())
    b.set_sender(sender if sender is not None else f"sender{i}@example.org")
    for r in rcpts or [f"rcpt{i}@example.net"]:
        b.add_recipient(r, r)
    await b.write(body if body is not None else b"Subject: message %d\r\n\r\nbody\r\n" % i)
    if state is None:
        return await committer.commit(b)
    return await committer.commit(b, state)


def fill(store: QueueStore, n: int, **kw) -> list[str]:
    """Commit n messages through a committer; return their queue IDs."""

    async def run():
        c = store.committer("test")
        try:
            return await asyncio.gather(*[commit_one(c, i, **kw) for i in range(n)])
        finally:
            await c.close()

    return asyncio.run(run())


@pytest.fixture
def store(tmp_path):
    s = QueueStore.open(settings=settings(tmp_path / "queue"))
    yield s
    s.close()
