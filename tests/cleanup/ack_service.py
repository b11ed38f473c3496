"""A cleanup service behind a unix socket, for the direct-acknowledgement tests.

Run in a thread of the test process (``Service``: the tests read its counters) or as a
process of its own (``python ack_service.py DIR``: the kill -9 tests arm
FASTPOST_CRASH_AT in it). uvloop, as the cleanup daemon runs; trivial-rewrite's
protocol is answered in the same loop by the daemon's own Rewriter.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import uvloop

from fastpost.daemons.cleanup.service import CleanupService
from fastpost.daemons.cleanup.settings import CleanupSettings
from fastpost.mail.config import Config
from fastpost.mail.ipc import AttrServerProtocol
from fastpost.mail.queue import QueueStore
from fastpost.mail.rewrite import Rewriter
from fastpost.mail.rewrite_clnt import RewriteClient

MAIN_CF = ("compatibility_level = 3.7\nmyhostname = mx.example.test\nmydomain = example.test\n"
           "myorigin = $myhostname\ninet_interfaces = 127.0.0.1\n"
           "fastpost_rewrite_cache_time = 1h\n")


def queue_directory(root: str) -> str:
    return os.path.join(root, "queue")


async def start(root: str, loop):
    """Serve cleanup on ROOT/cleanup; return (service, servers)."""
    os.makedirs(os.path.join(root, "private"), exist_ok=True)
    cfg = Config(root, text=MAIN_CF)
    rewriter = Rewriter(cfg)

    def handle(request, conn):
        return {"status": 0, "address": rewriter.rewrite(request["rule"], request["address"])}

    servers = [await loop.create_unix_server(
        lambda: AttrServerProtocol(None, "trivial_rewrite_protocol", handle),
        os.path.join(root, "private", "rewrite"))]
    store = QueueStore.open(queue_directory=queue_directory(root))
    svc = CleanupService(CleanupSettings.from_config(cfg), store, store.committer("ack"),
                         RewriteClient(cfg, queue_directory=root), loop=loop, long_ids=True,
                         trigger_qmgr=False)
    servers.append(await loop.create_unix_server(svc.protocol, os.path.join(root, "cleanup")))
    return svc, servers


class Service:
    """The service on a uvloop in a thread of this process."""

    def __init__(self, root: str):
        self.root = root
        self.path = os.path.join(root, "cleanup")
        self.loop = uvloop.new_event_loop()
        self.errors: list = []
        self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(ctx))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.svc, self.servers = self.call(start(root, self.loop))

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn, *args):
        async def run():
            return fn(*args)
        return self.call(run())

    def close(self):
        async def close():
            for s in self.servers:
                s.close()
            await self.svc.close()
        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def main() -> None:
    root = sys.argv[1]
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(start(root, loop))
    print("READY", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
