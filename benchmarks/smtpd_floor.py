#!/usr/bin/env python3
"""The floor under smtpd's CPU per message: a uvloop server that only answers.

    .venv/bin/python benchmarks/smtpd_floor.py [--messages 5000] [--sessions 20]
        [--runs 3] [--modes bare,logs,handoff] [--accept-handles 4] [--syscalls DIR]

What the real smtpd costs beyond what any uvloop SMTP server must spend under the
same load. A server process answers smtp-source (one connection per 1 KiB message,
the accept benchmark's client) with precomputed replies of the right sizes (banner,
the EHLO keyword list, 250s, 354, ``250 2.0.0 Ok: queued as ...``, 221) and no session
logic at all; its user and system CPU come from /proc/PID/stat before and after.
Modes add, one by one, what smtpd does besides answering:

    bare     only the replies: accept, the reads, the 7 writes, close
    raw      the same replies without uvloop's transports (floor_raw.py): accept4 until
             EAGAIN, recv_into/send on the socket, each descriptor watched with the
             loop's add_reader
    rawep    raw, with the descriptors in an epoll set of the server's own (one
             epoll_ctl per connection instead of uvloop's poll handle per add_reader)
    rawc     rawep compiled by Cython (needs Cython and gcc; built in the temporary dir)
    logs     + the three log lines per session (connect, client=, disconnect), one
             O_APPEND write each to a file, as fastpost's log module did before session 8
    turnlogs the same lines written once per turn of the loop, all of that turn's lines
             in one write (log.defer_file_writes, smtpd since session 8); not in the
             default --modes
    handoff  + the message to another process over a UNIX socket (what smtpd sends
             cleanup, ~1.3 KiB per message, written once per loop iteration as the
             cleanup client batches; the other end only reads)

``--accept-handles N`` (default 4, as smtpd since session 5) serves the listening
socket through N descriptors, each its own uvloop server: the loop accepts one
connection per handle per iteration (docs/accept.md, "Session 5: smtpd at -s 20").

Prints CPU ms per message (user+sys) per mode: median and range of ``--runs`` runs.
The real smtpd's figure comes from accept_pipeline.py (its "smtpd" CPU column).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness.tools import run_source  # noqa: E402

# the precomputed replies (one copy: floor_raw.py is also compiled on its own by the rawc mode)
from floor_raw import BANNER, BYE, EHLO, GO_AHEAD, OK_MAIL, OK_RCPT  # noqa: E402


def serve(sock: socket.socket, mode: str, logpath: str, handoff_fd: int | None,
          accept_handles: int = 4) -> None:
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    logfd = os.open(logpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) \
        if mode in ("logs", "handoff", "turnlogs") else None
    turn_lines: list[bytes] = []
    # One read buffer for every connection, as smtpd's service.read_view (until
    # session 9 this was a bytearray(65536) per connection: its memset alone was
    # ~66,000 instructions per session, half of the floor's user-space count).
    shared_buf = bytearray(65536)

    def write_turn():
        data = b"".join(turn_lines)
        turn_lines.clear()
        os.write(logfd, data)
    handoff = socket.socket(fileno=handoff_fd) if handoff_fd is not None else None
    pending: list[bytes] = []
    counter = [0]

    def push():
        data = b"".join(pending)
        pending.clear()
        try:
            handoff.send(data)
        except BlockingIOError:
            pass

    def log(text: str) -> None:
        if logfd is not None:
            line = f"Nov 21 12:00:00 vm postfix/smtpd[1]: {text}\n".encode()
            if mode == "turnlogs":  # log.defer_file_writes(): one write per loop turn
                turn_lines.append(line)
                if len(turn_lines) == 1:
                    loop.call_soon(write_turn)
            else:
                os.write(logfd, line)

    class Floor(asyncio.BufferedProtocol):
        __slots__ = ("t", "data", "peer")

        def connection_made(self, t):
            self.t = t
            self.data = False
            self.peer = t.get_extra_info("peername")
            t.get_extra_info("sockname")
            log(f"connect from unknown[{self.peer[0]}]")
            t.write(BANNER)

        def get_buffer(self, hint):
            return shared_buf

        def buffer_updated(self, n):
            chunk = bytes(shared_buf[:n])
            if self.data:
                if handoff is not None:
                    if not pending:
                        loop.call_soon(push)
                    pending.append(chunk)
                if chunk.endswith(b"\r\n.\r\n"):
                    self.data = False
                    counter[0] += 1
                    self.t.write(b"250 2.0.0 Ok: queued as 4Qx%08X\r\n" % counter[0])
                return
            verb = chunk[:4].upper()
            if verb == b"EHLO":
                self.t.write(EHLO)
            elif verb == b"MAIL":
                self.t.write(OK_MAIL)
            elif verb == b"RCPT":
                log(f"4Qx{counter[0] + 1:08X}: client=unknown[{self.peer[0]}]")
                self.t.write(OK_RCPT)
            elif verb == b"DATA":
                self.data = True
                self.t.write(GO_AHEAD)
            elif verb == b"QUIT":
                self.t.write(BYE)
                self.t.close()
            else:
                self.t.write(b"250 2.0.0 Ok\r\n")

        def connection_lost(self, exc):
            log(f"disconnect from unknown[{self.peer[0]}] ehlo=1 mail=1 rcpt=1 data=1 "
                f"quit=1 commands=5")

    async def main():
        server = await loop.create_server(Floor, sock=sock, backlog=4096)
        for _ in range(accept_handles - 1):
            await loop.create_server(Floor, sock=sock.dup(), backlog=4096)
        async with server:
            await server.serve_forever()

    loop.run_until_complete(main())


def cpu_ticks(pid: int) -> tuple[int, int, int]:
    """(utime, stime, minor page faults) of the process; times in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12]), int(fields[7])


def compile_raw(where: str) -> None:
    """Mode rawc: floor_raw.py compiled by Cython (a copy, built in ``where``)."""
    os.makedirs(where)
    shutil.copy(os.path.join(HERE, "floor_raw.py"), where)
    subprocess.run([sys.executable, "-m", "cython", "-3", "floor_raw.py"],
                   cwd=where, check=True)
    import sysconfig
    inc = sysconfig.get_paths()["include"]
    so = "floor_raw" + sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{inc}", "floor_raw.c", "-o", so],
                   cwd=where, check=True)


def print_syscalls(mode: str, path: str, messages: int) -> None:
    """The strace -c table of one run as calls per session (one message each)."""
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls = int(parts[3])
                rows.append((calls, parts[-1]))
    rows.sort(reverse=True)
    total = sum(c for c, _ in rows)
    text = ", ".join(f"{name} {c / messages:.2f}" for c, name in rows if c / messages >= 0.005)
    print(f"{mode:8} system calls per session {total / messages:.2f}: {text}")


def one(mode: str, messages: int, sessions: int, size: int, tmp: str,
        accept_handles: int = 4, syscalls: str | None = None) -> float:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accept
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    pair = socket.socketpair() if mode == "handoff" else None
    pid = os.fork()
    if pid == 0:
        try:
            if pair is not None:
                pair[0].close()
                pair[1].setblocking(False)
            if mode in ("raw", "rawep", "rawc"):
                if mode == "rawc":  # the compiled copy first on the path
                    sys.path.insert(0, os.path.join(tmp, "rawc"))
                    # this module imported the pure floor_raw for its replies:
                    # forget it, or the import below returns it again
                    sys.modules.pop("floor_raw", None)
                import floor_raw
                if mode == "rawc" and not floor_raw.__file__.endswith(".so"):
                    raise SystemExit("rawc: the compiled floor_raw did not load")
                floor_raw.serve(sock, mode != "raw")
            else:
                serve(sock, mode, os.path.join(tmp, "maillog"),
                      pair[1].detach() if pair is not None else None, accept_handles)
        finally:
            os._exit(0)
    sock.close()
    reader = None
    if pair is not None:
        pair[1].close()
        reader = os.fork()
        if reader == 0:
            try:
                while pair[0].recv(1 << 20):
                    pass
            finally:
                os._exit(0)
        pair[0].close()
    try:
        run_source(port, sessions, 200, size)  # warm up
        tracer = None
        if syscalls:
            out = os.path.join(syscalls, f"{mode}.strace")
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                                      stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # strace attached (benchmark only, not a test)
        before = cpu_ticks(pid)
        res = run_source(port, sessions, messages, size)
        after = cpu_ticks(pid)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait()
            print_syscalls(mode, out, messages)
        if res["rc"] != 0 or res["complaints"]:
            print(f"{mode}: smtp-source complained: {res['complaints'][:3]}", file=sys.stderr)
        tick = 1000.0 / os.sysconf("SC_CLK_TCK") / messages
        user, system = (after[0] - before[0]) * tick, (after[1] - before[1]) * tick
        faults = (after[2] - before[2]) / messages
        print(f"{mode:8} user {user:.3f} sys {system:.3f} minor faults {faults:.2f}",
              file=sys.stderr)
        return user + system
    finally:
        os.kill(pid, 15)
        os.waitpid(pid, 0)
        if reader:
            os.kill(reader, 15)
            os.waitpid(reader, 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="bare,logs,handoff")
    ap.add_argument("--accept-handles", type=int, default=4)
    ap.add_argument("--syscalls", metavar="DIR",
                    help="strace -c -f the server during each run (slows it: the CPU "
                    "figures of such runs are not comparable); tables kept in DIR")
    args = ap.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="fp-floor-") as tmp:
        if "rawc" in modes:
            compile_raw(os.path.join(tmp, "rawc"))
        for r in range(args.runs):
            for mode in modes:
                ms = one(mode, args.messages, args.sessions, args.size, tmp,
                         max(1, args.accept_handles), args.syscalls)
                results[mode].append(ms)
                print(f"{mode:8} run {r + 1}: {ms:.3f} CPU-ms/msg", file=sys.stderr)
    print(f"\nserver CPU per message, smtp-source -s {args.sessions}, {args.messages} x "
          f"{args.size} bytes, {args.runs} interleaved runs")
    for mode in modes:
        v = results[mode]
        print(f"{mode:8} {statistics.median(v):.3f} ms [{min(v):.3f}-{max(v):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
