#!/usr/bin/env python3
"""smtpd's own CPU per session, in one process, without the network: a profiling bench.

    .venv/bin/python benchmarks/smtpd_session_cpu.py [--sessions 20000] [--concurrency 20]
        [--sink cleanup|null] [--profile FILE] [--repeat 3] [--recipients N] [--distinct]

Why: on the shared 2-core machine the whole-path benchmark (accept_pipeline.py) cannot
resolve a 10 % change of smtpd's CPU, and half of smtpd's CPU there is the loopback
send of its replies. This runs the real session code (SmtpdService.from_config with
the benchmark harness's main.cf, its RestrictionPolicy, and with ``--sink cleanup``
the real CleanupSink/CleanupClient over a UNIX socket) and replaces only the client
socket by an in-memory transport that feeds the next command as soon as the reply to
the previous one is written: EHLO, MAIL, RCPT, DATA, 1 KiB content, QUIT, one session
per message, ``--concurrency`` sessions at a time, as smtp-source does. The cleanup
end is a small responder in a child process (OPEN -> queue ID, END -> 250), so its CPU
is not counted.

``--recipients N`` sends N RCPTs per session (``rcpt0@example.net`` ...
``rcpt<N-1>@example.net``, the same in every session, as smtp-source -r does);
``--distinct`` numbers the recipients on across sessions, so that no address
recurs (only the domain does), as an ISP gateway's mail has many recipients.

Prints smtpd-side CPU microseconds per session (process user+sys time of this
process, which is only smtpd's code, the event loop and the in-memory driver), the
median and range over ``--repeat`` runs. ``--profile FILE`` writes a cProfile of one
run (pstats format) and prints the top functions.

Not part of the test suite; not a substitute for accept_pipeline.py (no kernel TCP).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from fastpost.mail import attr  # noqa: E402
from fastpost.mail import cleanup_proto as P  # noqa: E402
from fastpost.mail.config import Config  # noqa: E402
from fastpost.util import log  # noqa: E402

MAIN_CF = """\
compatibility_level = 3.6
myhostname = fastpost.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
local_recipient_maps =
smtpd_peername_lookup = no
smtputf8_enable = no
"""

CONTENT = (b"From: <sender@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: bench\r\n\r\n"
           + b"".join(b"%04d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" % i
                      for i in range(14)) + b".\r\n")
SCRIPT = [b"EHLO client.example.com\r\n", b"MAIL FROM:<sender@example.com>\r\n",
          b"RCPT TO:<rcpt@example.net>\r\n", b"DATA\r\n", CONTENT, b"QUIT\r\n"]

#: Sessions started so far (the numbers of --distinct recipients go on from run to run).
_SESSIONS = itertools.count()


def session_script(recipients: int, distinct: bool) -> list[bytes]:
    """The commands of the next session: SCRIPT, or SCRIPT with its RCPTs replaced."""
    if recipients == 1 and not distinct:
        return SCRIPT
    first = next(_SESSIONS) * recipients if distinct else 0
    rcpts = [b"RCPT TO:<rcpt%d@example.net>\r\n" % (first + j) for j in range(recipients)]
    return SCRIPT[:2] + rcpts + SCRIPT[3:]


# ------------------------------------------------------------------ fake cleanup

def cleanup_responder(path: str, ready_fd: int) -> None:
    """A child process: answer OPEN with a queue ID and END with 250 (no storage)."""
    async def serve(reader, writer):
        dec = attr.FrameDecoder(1 << 24, 8)
        writer.write(attr.encode_many([{"protocol": P.PROTOCOL}]))
        n = 0
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buf = dec.get_buffer(len(data))
            buf[:len(data)] = data
            dec.buffer_updated(len(data))
            out = []
            while (frame := dec.next_frame()) is not None:
                op = frame.get("o")
                if op == P.OPEN:
                    n += 1
                    out.append({"t": frame["t"], "id": "B%08X" % n})
                elif op == P.END:
                    out.append({"t": frame["t"], "c": 250, "x": "2.0.0 Ok",
                                "id": "B%08X" % n})
            if out:
                writer.write(attr.encode_many(out))

    async def main():
        server = await asyncio.start_unix_server(serve, path)
        os.write(ready_fd, b"x")
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------ in-memory client

class MemTransport(asyncio.Transport):
    """The client: each write by the server (a reply) sends the next command."""

    def __init__(self, loop, proto, done, port, script=SCRIPT):
        super().__init__()
        self.script = script
        self.loop = loop
        self.proto = proto
        self.done = done
        self.step = 0
        self.closing = False
        self.paused = False
        self.pending = None
        self.extra = {"peername": ("127.0.0.1", port), "sockname": ("127.0.0.1", 25)}

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False
        if self.pending is not None:
            data, self.pending = self.pending, None
            self.loop.call_soon(self._feed, data)

    def is_closing(self):
        return self.closing

    def write(self, data):
        # banner -> EHLO, EHLO -> MAIL, MAIL -> RCPT, RCPT -> DATA, 354 -> content,
        # 250 queued -> QUIT, 221: the server closes.
        if self.step < len(self.script) and not data.startswith(b"221"):
            cmd = self.script[self.step]
            self.step += 1
            self._send(cmd)

    def _send(self, data):
        if self.paused:
            self.pending = data
        else:
            self.loop.call_soon(self._feed, data)

    def _feed(self, data):
        if self.closing:
            return
        if self.paused:
            self.pending = data
            return
        view = self.proto.get_buffer(len(data))
        view[:len(data)] = data
        self.proto.buffer_updated(len(data))

    def close(self):
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._lost)

    def abort(self):
        self.close()

    def _lost(self):
        self.proto.connection_lost(None)
        self.done()


async def drive(service, sessions: int, concurrency: int, recipients: int = 1,
                distinct: bool = False) -> float:
    loop = asyncio.get_running_loop()
    left = sessions
    running = 0
    finished = loop.create_future()
    port = [1024]

    def start_one():
        nonlocal left, running
        left -= 1
        running += 1
        proto = service.protocol()
        port[0] = port[0] + 1 if port[0] < 65000 else 1025
        tr = MemTransport(loop, proto, one_done, port[0],
                          session_script(recipients, distinct))
        proto.connection_made(tr)

    def one_done():
        nonlocal running
        running -= 1
        if left > 0:
            start_one()
        elif running == 0 and not finished.done():
            finished.set_result(None)

    t0 = time.process_time()
    for _ in range(min(concurrency, sessions)):
        start_one()
    await finished
    return time.process_time() - t0


def build_service(sink_kind: str, spool: str):
    from fastpost.daemons.smtpd.service import SmtpdService

    cfg = Config(spool, text=MAIN_CF + f"queue_directory = {spool}\n")
    service = SmtpdService.from_config(cfg, sink=None)
    if sink_kind == "cleanup":
        from fastpost.daemons.smtpd.cleanupsink import CleanupSink
        service.sink = CleanupSink.from_config(cfg, queue_directory=spool)
    else:
        from fastpost.daemons.smtpd.testsink import NullSink
        service.sink = NullSink()
    return service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--sink", choices=("cleanup", "null"), default="cleanup")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", default="")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--gc", choices=("default", "freeze", "off"), default="default",
                    help="the cyclic GC as is, with startup objects frozen, or off")
    ap.add_argument("--recipients", type=int, default=1, help="RCPTs per session")
    ap.add_argument("--log-writes", choices=("turn", "line"), default="turn",
                    help="the maillog file's lines written once per loop turn, as smtpd's "
                         "skeleton has them (log.defer_file_writes), or each at once "
                         "(the default before session 11's smtpdlog11)")
    ap.add_argument("--distinct", action="store_true",
                    help="no recipient address recurs (numbered on across sessions)")
    args = ap.parse_args()

    spool = tempfile.mkdtemp(prefix="fastpost-session-cpu-")
    # Log lines go to a file, as smtpd's do under the benchmark harness (maillog_file).
    log.init("smtpd", maillog_file=os.path.join(spool, "maillog"), use_syslog=False)
    child = None
    if args.sink == "cleanup":
        os.makedirs(os.path.join(spool, "public"), exist_ok=True)
        from fastpost.mail import ipc
        path = ipc.endpoint(spool, "cleanup", ipc.PUBLIC)
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(r)
            try:
                cleanup_responder(path, w)
            finally:
                os._exit(0)
        os.close(w)
        os.read(r, 1)
        os.close(r)
    if args.loop == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.log_writes == "turn":
        log.defer_file_writes(loop)  # as smtpd's skeleton does (smtpd/__init__.py)
    try:
        service = build_service(args.sink, spool)
        service.loop = loop
        rcpt = (args.recipients, args.distinct)
        loop.run_until_complete(drive(service, min(2000, args.sessions), args.concurrency, *rcpt))
        import gc
        if args.gc == "freeze":
            gc.collect()
            gc.freeze()
        elif args.gc == "off":
            gc.disable()
        collections0 = [g["collections"] for g in gc.get_stats()]
        results = []
        for i in range(args.repeat):
            if args.profile and i == args.repeat - 1:
                import cProfile
                import pstats
                prof = cProfile.Profile()
                prof.enable()
                secs = loop.run_until_complete(drive(service, args.sessions, args.concurrency,
                                                     *rcpt))
                prof.disable()
                prof.dump_stats(args.profile)
                pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
            else:
                secs = loop.run_until_complete(drive(service, args.sessions, args.concurrency,
                                                     *rcpt))
                results.append(secs * 1e6 / args.sessions)
        collections = [g["collections"] - c for g, c in zip(gc.get_stats(), collections0)]
        print(f"gc collections per generation during the runs: {collections}")
        if results:
            print(f"smtpd session CPU ({args.sink} sink, {args.loop}, -s {args.concurrency}): "
                  f"{statistics.median(results):.1f} us/session "
                  f"[{min(results):.1f}-{max(results):.1f}] over {len(results)} runs of "
                  f"{args.sessions}")
    finally:
        if child:
            os.kill(child, 15)
            os.waitpid(child, 0)
        shutil.rmtree(spool, ignore_errors=True)


if __name__ == "__main__":
    main()
