#!/usr/bin/env python3
"""cleanup's event-loop CPU per message, in one process, without smtpd or the network.

    .venv/bin/python benchmarks/cleanup_loop.py [--messages 20000] [--inflight 20]
        [--runs 3] [--profile N] [--index-map-size BYTES] [--recipients N] [--distinct]

Postfix counterpart: none. What benchmarks/cleanup_threads.py measures for the event
loop thread of a real cleanup worker, isolated: a CleanupService (fast path on, the
real queue store and committer with its I/O and index threads, in a temporary
directory; trivial-rewrite's answers served in this process over its real protocol)
gets OPEN and END frames through CleanupServerProtocol from a stand-in client that
keeps ``--inflight`` messages under way, as smtpd does at smtp-source -s 20: a new
OPEN when a message's 250 comes back, its END when its queue ID does. The client's
frames are encoded once, its replies are only split, so the loop thread's CPU
(time.thread_time) is almost all cleanup's: the figure is CPU microseconds per
message of the loop thread, and of the whole process (loop + committer threads).
``--profile N`` prints cProfile's N most expensive functions of the last run (the
loop thread only; that run's CPU figures then include cProfile's own overhead). Deterministic enough for A/B comparisons of the loop's code on a
loaded machine; the kernel's share of a real run (socket writes to smtpd, wake-ups
by smtpd) is not in it.

``--recipients N`` puts N recipients in each message (``dst0@example.net`` ...,
the same in every message); ``--distinct`` numbers them on from message to message,
so that no address recurs: each is then a miss of cleanup's rewrite cache, a round
trip to the trivial-rewrite stand-in (which runs on this same loop, so its work is in
the loop thread's figure) and a message off the fast path.

Instructions per message, as session 9 counted them (docs/accept.md, "Session 9:
cleanup's CPU"): under ``PYTHONHASHSEED=0 valgrind --tool=callgrind
--separate-threads=yes`` with ``--runs 1 --index-map-size 1073741824`` (valgrind cannot
map LMDB's default 64 GiB), once with ``--messages 1000`` and once with 3000; per
thread (-01 the loop, -02 the committer's I/O thread, -03 its index thread),
(Ir(3000) - Ir(1000)) / 2000.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import pstats
import shutil
import sys
import tempfile
import time

import uvloop

from fastpost.daemons.cleanup.service import CleanupService
from fastpost.daemons.cleanup.settings import CleanupSettings
from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P
from fastpost.mail.config import Config
from fastpost.mail.ipc import AttrServerProtocol
from fastpost.mail.queue import QueueSettings, QueueStore
from fastpost.mail.rewrite import Rewriter
from fastpost.mail.rewrite_clnt import RewriteClient
from fastpost.util import log

BASE = ("compatibility_level = 3.7\nmyhostname = mx.example.test\nmydomain = example.test\n"
        "myorigin = $myhostname\ninet_interfaces = 127.0.0.1\nfastpost_rewrite_cache_time = 1h\n"
        "local_recipient_maps =\nalias_maps =\n")

CONTENT = (b"Received: from client.example.org (localhost [127.0.0.1])\r\n"
           b"\tby mx.example.test (fastpost) with ESMTP id 4XYZ\r\n"
           b"\tfor <dst@example.net>; Sat, 21 Nov 2026 21:00:00 +0000 (UTC)\r\n"
           b"From: <src@example.org>\r\nTo: <dst@example.net>\r\nDate: Sat, 21 Nov 2026\r\n"
           b"Message-Id: <20261121.1@client.example.org>\r\nSubject: test\r\n\r\n"
           + b"La de da de da 1.\r\n" * 50)


class FakeTransport(asyncio.Transport):
    """The client's end: replies come here; it answers with its next frame."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    def write(self, data):
        self.client.replies(data)

    def close(self):
        pass

    def is_closing(self):
        return False

    def get_extra_info(self, name, default=None):
        return default


class Client:
    def __init__(self, loop, proto, total: int, inflight: int, recipients: int = 1,
                 distinct: bool = False):
        self.loop = loop
        self.recipients = recipients
        self.distinct = distinct
        self.proto = proto
        self.total = total
        self.inflight = inflight
        self.sent = 0
        self.done = 0
        self.next_tid = 1
        self.finished = loop.create_future()
        meta = {"f": P.FLAGS_EXTERNAL, "s": "src@example.org",
                "a": [["log_client_name", "localhost"], ["log_client_address", "127.0.0.1"],
                      ["log_message_origin", "localhost[127.0.0.1]"], ["log_helo_name", "client"],
                      ["log_protocol_name", "ESMTP"], ["client_name", "localhost"],
                      ["reverse_client_name", "localhost"], ["client_address", "127.0.0.1"],
                      ["client_port", "40000"], ["server_address", "127.0.0.1"],
                      ["server_port", "25"], ["helo_name", "client"], ["protocol_name", "ESMTP"],
                      ["rewrite_context", "remote"]],
                "ctx": "remote"}
        self.open_tpl = meta
        rcpts = ([["dst@example.net", "", 0]] if recipients == 1 and not distinct else
                 [[f"dst{j}@example.net", "", 0] for j in range(recipients)])
        self.end_tpl = {"o": P.END, "r": rcpts, "d": CONTENT}
        self.decoder = attr.FrameDecoder(1 << 24, 8)

    def start(self):
        for _ in range(self.inflight):
            self._open()

    def _open(self):
        if self.sent >= self.total:
            return
        self.sent += 1
        tid = self.next_tid
        self.next_tid += 1
        frame = dict(self.open_tpl, o=P.OPEN, t=tid, time=int(time.time() * 1e6))
        self._feed(attr.encode(frame))

    def _feed(self, data: bytes):
        proto = self.proto
        view = data
        while view:
            buf = proto.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            proto.buffer_updated(n)
            view = view[n:]

    def replies(self, data: bytes):
        # one decoder for the run, as smtpd's cleanup client has (a fresh one per
        # batch cleared its 64 KiB buffer each time: ~8k instructions per message of
        # the stand-in's own, before session 12)
        dec = self.decoder
        buf = dec.get_buffer(len(data))
        buf[:len(data)] = data
        dec.buffer_updated(len(data))
        while (frame := dec.next_frame()) is not None:
            if "protocol" in frame:
                continue
            tid = frame["t"]
            if "c" not in frame:  # the queue ID: send the message
                end = dict(self.end_tpl, t=tid)
                if self.distinct:
                    first = next(_MESSAGES) * self.recipients
                    end["r"] = [[f"dst{first + j}@example.net", "", 0]
                                for j in range(self.recipients)]
                self.loop.call_soon(self._feed, attr.encode(end))
                continue
            if frame["c"] != 250:
                raise SystemExit(f"unexpected reply {frame}")
            self.done += 1
            if self.done >= self.total:
                if not self.finished.done():
                    self.finished.set_result(None)
            else:
                self.loop.call_soon(self._open)


#: Messages sent so far (the numbers of --distinct recipients go on from run to run).
_MESSAGES = itertools.count(1)


async def run(svc, n: int, inflight: int, profile: cProfile.Profile | None,
              recipients: int = 1, distinct: bool = False):
    loop = asyncio.get_running_loop()
    proto = svc.protocol()
    client = Client(loop, proto, n, inflight, recipients, distinct)
    proto.connection_made(FakeTransport(client))
    t0 = time.thread_time()
    p0 = time.process_time()
    w0 = time.monotonic()
    if profile is not None:
        profile.enable()
    client.start()
    await client.finished
    if profile is not None:
        profile.disable()
    t1 = time.thread_time()
    p1 = time.process_time()
    w1 = time.monotonic()
    await svc.committer.drain(30)
    return 1e6 * (t1 - t0) / n, 1e6 * (p1 - p0) / n, n / (w1 - w0)


def make_service(loop, root: str, index_map_size: int | None = None):
    """This bench's cleanup service in ``root`` (its maillog, queue and an in-process
    trivial-rewrite on a UNIX socket), warmed with 50 messages: (svc, store, server).
    Also used by benchmarks/kernels/bench_statecore.py."""
    os.makedirs(os.path.join(root, "private"))
    log.init("cleanup", syslog_name="bench-fastpost", maillog_file=os.path.join(root, "maillog"))
    cfg = Config(root, text=BASE)
    rewriter = Rewriter(cfg)

    def handle(request, conn):
        return {"status": 0, "address": rewriter.rewrite(request["rule"], request["address"])}

    path = os.path.join(root, "private", "rewrite")
    server = loop.run_until_complete(loop.create_unix_server(
        lambda: AttrServerProtocol(None, "trivial_rewrite_protocol", handle), path))
    qdir = os.path.join(root, "queue")
    store = (QueueStore.open(queue_directory=qdir) if index_map_size is None else
             QueueStore.open(settings=QueueSettings(qdir, index_map_size=index_map_size)))
    svc = CleanupService(CleanupSettings.from_config(cfg), store, store.committer("bench"),
                         RewriteClient(cfg, queue_directory=root), loop=loop, long_ids=False,
                         trigger_qmgr=False)
    loop.run_until_complete(run(svc, 50, 1, None))  # warm the rewrite caches
    return svc, store, server


def close_service(loop, svc, store, server) -> None:
    """Undo make_service() (the directory is the caller's)."""
    loop.run_until_complete(svc.committer.close())
    store.close()
    server.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--inflight", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--index-map-size", type=int, default=None,
                    help="LMDB map size of the queue index (default: the store's 64 GiB)")
    ap.add_argument("--recipients", type=int, default=1, help="recipients per message")
    ap.add_argument("--distinct", action="store_true",
                    help="no recipient address recurs (numbered on across messages)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="fp-cleanup-loop-", dir="/var/tmp")
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        svc, store, server = make_service(loop, root, args.index_map_size)
        prof = cProfile.Profile() if args.profile else None
        for r in range(args.runs):
            loop_us, proc_us, rate = loop.run_until_complete(
                run(svc, args.messages, args.inflight, prof if r == args.runs - 1 else None,
                    args.recipients, args.distinct))
            print(f"run {r + 1}: loop thread {loop_us:6.1f} us/msg  process {proc_us:6.1f} us/msg  "
                  f"{rate:7,.0f} msgs/s  (fast path {svc.fast_messages})")
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        close_service(loop, svc, store, server)
    finally:
        loop.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
