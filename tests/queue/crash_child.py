"""A real process that uses the queue store, for the crash tests (not a test itself).

    python crash_child.py QUEUE_DIR commit N CONCURRENCY [waves]
        commit N messages, CONCURRENCY at a time; print "ACK <queue id> <tag>" for each
        acknowledged one (the tag is in its Subject), then "DONE". With ``waves``: in
        waves of CONCURRENCY, each started once the last one is in the index, so that
        there are at least N/CONCURRENCY index rounds (without it, a busy machine may
        merge every batch into a few rounds: commit.before_index:K is then never reached)
    python crash_child.py QUEUE_DIR compact
        compact every sealed segment (age 0, any ratio), then "DONE"
    python crash_child.py QUEUE_DIR recover
        open the store (which recovers it), then "DONE"

Run with FASTPOST_CRASH_AT=point[:n] to die by SIGKILL at that step.
"""

import asyncio
import sys
import time

from fastpost.mail.queue.store import QueueSettings, QueueStore


def settings(qdir: str) -> QueueSettings:
    return QueueSettings(qdir, segment_size=256 * 1024, large_message_size=64 * 1024)


async def commit(store: QueueStore, n: int, concurrency: int, waves: bool = False) -> None:
    c = store.committer("crash-child")
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with sem:
            tag = f"m{i:05d}-{time.time_ns()}"
            b = c.builder()
            b.time(time.time())
            b.set_sender(f"s{i}@example.org")
            b.add_recipient(f"r{i}@example.net")
            body = b"line of text\r\n" * (1 + i % 50)
            if i % 17 == 5:
                body = b"big line\r\n" * 8000  # a large message: a file of its own
            await b.write(b"Subject: " + tag.encode() + b"\r\n\r\n" + body)
            qid = await c.commit(b)
            sys.stdout.write(f"ACK {qid} {tag}\n")
            sys.stdout.flush()
            return qid

    if not waves:
        await asyncio.gather(*[one(i) for i in range(n)])
    for start in range(0, n if waves else 0, concurrency):
        qids = await asyncio.gather(*[one(i) for i in range(start, min(n, start + concurrency))])
        while any(store.get(q, recipients=False) is None for q in qids):
            await asyncio.sleep(0.005)  # acknowledged (synced); indexed a moment later
    await c.close()


def main() -> int:
    qdir, mode = sys.argv[1], sys.argv[2]
    store = QueueStore.open(settings=settings(qdir))
    if mode == "commit":
        asyncio.run(commit(store, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:] == ["waves"]))
    elif mode == "compact":
        store.compact(age=0, ratio=100)
    elif mode == "recover":
        r = store.recovery
        print(f"REPORT skipped_locked={r.skipped_locked} indexed={r.messages_indexed} torn={r.torn_bytes}",
              flush=True)
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 64
    store.close()
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
