#!/usr/bin/env python3
"""Micro-benchmark: attribute frames, compiled kernel vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_attr.py [--seconds S]

Part 1, the codec alone: a delivery-request-like frame (17 attributes, 3 nested
recipient lists) encoded and decoded per second, and a 64 KiB content frame.

Part 2, codec + UNIX socket: a uvloop server process (fastpost.mail.ipc's
AttrServerProtocol, the one daemons use, echoing each request) and the synchronous
AttrClient in this process:
    round trips/s   one request, wait for its reply, repeat
    pipelined/s     batches of 100 requests in one write, then 100 replies
    MB/s            requests carrying 64 KiB of bytes, echoed back (payload counted once)
Both ends use the same implementation for a row. Medians of 5 rounds.
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time

from fastpost.mail import _attr_c as C
from fastpost.mail import _attr_py as P
from fastpost.mail import attr, ipc
from _timing import rate  # noqa: E402  (this directory is sys.path[0])

REQUEST = {
    "flags": 0, "queue_name": "active", "queue_id": "4X3vqF3RdBz5Yqn", "offset": 420,
    "size": 1024, "nexthop": "mx.example.net", "encoding": "8bit", "sendopts": 0,
    "sender": "sender@example.com", "dsn_envid": "", "dsn_ret": 0,
    "log_client_name": "client.example.org", "log_client_address": "192.0.2.10",
    "log_protocol_name": "ESMTP", "log_helo_name": "client.example.org",
    "rewrite_context": "remote",
    "recipients": [{"orig_rcpt": f"user{i}@example.net", "address": f"user{i}@example.net",
                    "offset": 500 + i * 40, "dsn_notify": 0} for i in range(3)],
}
CONTENT = {"request": "content", "data": os.urandom(65536)}


def use(impl) -> None:
    """Make fastpost.mail.attr (what ipc calls) use impl."""
    attr.encode, attr.encode_many = impl.encode, impl.encode_many
    attr.decode, attr.FrameDecoder = impl.decode, impl.FrameDecoder


def serve(path: str) -> None:
    """Child process: an echo attribute service on a uvloop loop."""
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(
            lambda: ipc.AttrServerProtocol(None, "bench_protocol", lambda req, conn: req), path)
        await server.serve_forever()

    uvloop.run(main())


def socket_rates(impl, seconds: float) -> tuple[float, float, float]:
    use(impl)
    path = os.path.join(tempfile.mkdtemp(prefix="bench-attr-"), "sock")
    pid = os.fork()
    if pid == 0:
        try:
            serve(path)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise RuntimeError("bench server did not start")
            time.sleep(0.01)
        client = ipc.AttrClient(path, "bench_protocol")
        client.connect()
        rtt = rate(lambda: client.request(REQUEST), seconds, batch=50)
        batch = [REQUEST] * 100
        piped = rate(lambda: client.pipeline(batch), seconds, batch=2) * 100
        big = rate(lambda: client.request(CONTENT), seconds, batch=5)
        client.close()
        return rtt, piped, big * len(CONTENT["data"]) / 1e6
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"{'codec alone':32} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, frame in (("request (17 attrs, 3 rcpts)", REQUEST), ("64 KiB content", CONTENT)):
        data = P.encode(frame)
        body = data[4:]
        enc_p = rate(lambda: P.encode(frame), args.seconds, batch=50)
        enc_c = rate(lambda: C.encode(frame), args.seconds, batch=50)
        dec_p = rate(lambda: P.decode(body), args.seconds, batch=50)
        dec_c = rate(lambda: C.decode(body), args.seconds, batch=50)
        print(f"{'encode ' + label:32} {enc_p:12,.0f} {enc_c:12,.0f} {enc_c / enc_p:7.1f}x")
        print(f"{'decode ' + label:32} {dec_p:12,.0f} {dec_c:12,.0f} {dec_c / dec_p:7.1f}x")
    print()
    print(f"{'codec + UNIX socket':32} {'python':>12} {'cython':>12} {'speedup':>8}")
    py = socket_rates(P, args.seconds)
    cy = socket_rates(C, args.seconds)
    for i, label in enumerate(("round trips/s", "pipelined requests/s", "64 KiB payload MB/s")):
        print(f"{label:32} {py[i]:12,.0f} {cy[i]:12,.0f} {cy[i] / py[i]:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
