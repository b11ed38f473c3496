#!/usr/bin/env python3
"""Per-stage latency of one SMTP session while smtp-source loads the MTA.

    sudo .venv/bin/python benchmarks/accept_latency.py [--sessions 20] [--probes 300]
        [--only fastpost|postfix] [--messages N]

The accept-path diagnosis (docs/accept.md, "Performance"): where does a session's time
go? Each MTA (configured as by accept_pipeline.py: the harness's main.cf/master.cf
without qmgr) is loaded by smtp-source at ``--sessions`` concurrent sessions, one
connection per 1 KiB message, while one probe client (blocking sockets, one session
at a time) times every step of its own sessions:

    connect -> banner, EHLO -> 250, MAIL -> 250, RCPT -> 250, DATA -> 354,
    content + "." -> 250 (the commit), QUIT -> 221

and prints the median and 90th percentile of each step in milliseconds, plus the
load's rate. The probe's steps are what every smtp-source session goes through, so
their sum is the session's latency under that load; msgs/s ~ sessions / latency.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from accept_pipeline import add_dir_argument, make, root_workdir  # noqa: E402
from harness.tools import run_source  # noqa: E402

STEPS = ("banner", "ehlo", "mail", "rcpt", "data", "dot", "quit")


def _reply(sock: socket.socket, buf: bytearray) -> bytes:
    """Read one (possibly multi-line) reply; return its last line."""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        line, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        if len(line) < 4 or line[3:4] != b"-":
            return line


def probe(port: int, n: int) -> dict[str, float]:
    """One session; the milliseconds of every step."""
    body = (b"From: probe@example.com\r\nTo: probe@example.com\r\nSubject: probe " + str(n).encode()
            + b"\r\n\r\n" + b"x" * 70 + b"\r\n") * 1 + b"y" * 900 + b"\r\n.\r\n"
    out: dict[str, float] = {}
    buf = bytearray()
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        _reply(sock, buf)
        t1 = time.perf_counter()
        out["banner"] = t1 - t0
        for step, cmd, want in (("ehlo", b"EHLO probe.example\r\n", b"250"),
                                ("mail", b"MAIL FROM:<probe@example.com>\r\n", b"250"),
                                ("rcpt", b"RCPT TO:<probe@example.com>\r\n", b"250"),
                                ("data", b"DATA\r\n", b"354"),
                                ("dot", body, b"250"),
                                ("quit", b"QUIT\r\n", b"221")):
            t0 = time.perf_counter()
            sock.sendall(cmd)
            line = _reply(sock, buf)
            out[step] = time.perf_counter() - t0
            if not line.startswith(want):
                raise RuntimeError(f"{step}: {line!r}")
    finally:
        sock.close()
    return {k: v * 1000 for k, v in out.items()}


def measure(inst, sessions: int, messages: int, probes: int) -> tuple[list, dict]:
    inst.purge()
    run_source(inst.port, sessions, 200, 1024)  # warm up
    inst.purge()
    result: dict = {}

    def load():
        result.update(run_source(inst.port, sessions, messages, 1024))

    th = threading.Thread(target=load)
    th.start()
    time.sleep(0.5)
    samples = []
    while th.is_alive() and len(samples) < probes:
        try:
            samples.append(probe(inst.port, len(samples)))
        except (OSError, RuntimeError) as exc:
            print(f"probe failed: {exc}", file=sys.stderr)
        time.sleep(0.005)
    th.join()
    return samples, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=8000)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--only", choices=("fastpost", "postfix"))
    add_dir_argument(ap)
    args = ap.parse_args()
    base = root_workdir("fp-latency-", args.dir, "private Postfix instances need it", args.fs)
    if base is None:
        return 1
    kinds = [k for k in ("postfix", "fastpost") if args.only in (None, k)]
    try:
        for kind in kinds:
            inst = make(kind, os.path.join(base, kind))
            inst.start()
            try:
                samples, load = measure(inst, args.sessions, args.messages, args.probes)
            finally:
                inst.stop()
            rate = args.messages / load["seconds"] if load.get("seconds") else 0
            print(f"\n{kind}: load -s {args.sessions}, {rate:,.0f} msgs/s; {len(samples)} probe sessions")
            print(f"{'step':>8} {'median ms':>10} {'p90 ms':>8}")
            total_med = 0.0
            for step in STEPS:
                vals = sorted(s[step] for s in samples)
                if not vals:
                    continue
                med = statistics.median(vals)
                total_med += med
                print(f"{step:>8} {med:10.2f} {vals[int(0.9 * (len(vals) - 1))]:8.2f}")
            print(f"{'sum':>8} {total_med:10.2f}   (sessions / sum = {1000 * args.sessions / total_med:,.0f} msgs/s)"
                  if total_med else "")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
