"""The committer's I/O thread answers smtpd itself (CleanupServerProtocol.send_acks).

Real sockets to a real cleanup service (tests/cleanup/ack_service.py: uvloop, the
daemon's classes, a queue store in a tmp dir), spoken to in raw cleanup-protocol
frames: the loop's replies (OPEN's queue ID, refusals) and the I/O thread's 250s
on one connection arrive whole and in order; a client that stops reading (the
server's send buffer shrunk to its minimum: partial sends and EAGAIN) gets every
frame once it reads; a client that disconnects mid-batch leaves no error and no
open descriptor behind; and kill -9 of the cleanup process at each commit step
(before the write, in the middle of it, before the sync, after the thread's
acknowledgements, before the index) loses no message that was acknowledged.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from fastpost.mail import attr
from fastpost.mail import cleanup_proto as P
from fastpost.mail.queue import QueueStore

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import ack_service  # noqa: E402

CONTENT = (b"Received: from client (localhost [127.0.0.1])\r\n\tby mx (fastpost)\r\n"
           b"From: <src@example.org>\r\nTo: <dst@example.net>\r\nSubject: test\r\n\r\n"
           + b"body line\r\n" * 60)
UNKNOWN = 1_000_000  # transaction numbers the client never opened


def message(tid: int) -> list:
    return [{"o": P.OPEN, "t": tid, "f": P.FLAGS_EXTERNAL, "time": 1_700_000_000_000_000,
             "s": "src@example.org", "a": [["log_client_address", "127.0.0.1"]], "ctx": "local"},
            {"o": P.END, "t": tid, "r": [["dst@example.net", "", 0]], "d": CONTENT}]


class Client:
    """A raw cleanup-protocol client on a blocking socket."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.dec = attr.FrameDecoder()
        assert self.read(1) == [{"protocol": P.PROTOCOL}]

    def send(self, frames: list) -> None:
        self.sock.sendall(attr.encode_many(frames))

    def read(self, count: int) -> list:
        """The next ``count`` frames (every byte must be part of a whole frame)."""
        frames = []
        while len(frames) < count:
            frame = self.dec.next_frame()
            if frame is not None:
                frames.append(frame)
                continue
            buf = self.dec.get_buffer(65536)
            n = self.sock.recv_into(buf)
            assert n, f"connection closed after {len(frames)} of {count} frames"
            self.dec.buffer_updated(n)
        return frames

    def read_to_eof(self) -> list:
        frames = []
        while True:
            while (frame := self.dec.next_frame()) is not None:
                frames.append(frame)
            buf = self.dec.get_buffer(65536)
            try:
                n = self.sock.recv_into(buf)
            except ConnectionResetError:
                n = 0
            if not n:
                return frames
            self.dec.buffer_updated(n)

    def close(self):
        self.sock.close()


def check_stream(frames: list, tids: list, unknown: list, aborted: list) -> None:
    """Each message: its queue ID, then its 250 with that ID; the loop's frames in the
    order they were asked for, the 250s in commit order; nothing else."""
    seen: dict = {}
    acks, ids, refusals = [], [], []
    for i, f in enumerate(frames):
        t = f["t"]
        if set(f) == {"t", "id"}:
            assert t not in seen, f
            seen[t] = (i, f["id"])
            ids.append(t)
        elif f.get("c") == 250:
            assert set(f) == {"t", "c", "id"}, f
            assert t in seen and seen[t][1] == f["id"], (f, seen.get(t))
            acks.append(t)
        else:
            assert f.get("c") == 451 and f["x"].startswith("4.3.0"), f
            refusals.append(t)
    assert acks == tids
    assert ids == sorted(tids + aborted)
    assert refusals == unknown


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = ack_service.Service(str(tmp_path_factory.mktemp("ack")))
    warm = Client(svc.path)  # the first message fills the rewrite caches
    warm.send(message(1))
    assert warm.read(2)[1]["c"] == 250
    warm.close()
    yield svc
    svc.close()
    assert not svc.errors


def test_thread_and_loop_writes_keep_order_and_framing(service):
    svc = service.svc
    before_fast, before_direct = svc.fast_messages, svc.acks_direct
    known = service.run(lambda: set(svc.connections))
    c = Client(service.path)
    conn = _newest_connection(service, known)
    tids, unknown, aborted = [], [], []
    tid = 1
    for burst in range(40):
        frames = []
        for _ in range(1 + burst % 4):
            frames += message(tid)
            tids.append(tid)
            tid += 1
        frames.append({"o": P.END, "t": UNKNOWN + burst})  # answered by the loop: 451
        unknown.append(UNKNOWN + burst)
        if burst % 5 == 0:
            frames += [message(tid)[0], {"o": P.ABORT, "t": tid}]  # a queue ID, no 250
            aborted.append(tid)
            tid += 1
        c.send(frames)
    got = c.read(2 * len(tids) + len(unknown) + len(aborted))
    check_stream(got, tids, unknown, aborted)
    # the loop hears of the answered commits without any further traffic (lazy delivery)
    _wait(service, lambda: not conn.states, "the loop did not forget the answered messages")
    c.close()
    assert svc.fast_messages - before_fast == len(tids)
    assert svc.acks_direct > before_direct  # the I/O thread answered


def _newest_connection(service, known: set):
    for _ in range(3000):
        new = service.run(lambda: set(service.svc.connections)) - known
        if new:
            return new.pop()
        time.sleep(0.01)
    raise AssertionError("the connection did not arrive")


def _wait(service, cond, what: str):
    for _ in range(6000):
        if service.run(cond):
            return
        time.sleep(0.01)
    raise AssertionError(what)


def test_client_that_stops_reading_gets_every_frame(service):
    svc = service.svc
    known = service.run(lambda: set(svc.connections))
    c = Client(service.path)
    conn = _newest_connection(service, known)
    # the smallest send buffer: the thread's sends come out partial or EAGAIN
    service.run(lambda: conn.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 1))
    handed, done = svc.acks_handed, svc.messages
    tids = list(range(1, 301))
    for i in range(0, len(tids), 10):
        c.send([f for t in tids[i:i + 10] for f in message(t)])
    _wait(service, lambda: svc.messages - done >= len(tids), "the messages were not committed")
    assert svc.acks_handed > handed  # some answers went through the loop
    got = c.read(2 * len(tids))
    check_stream(got, tids, [], [])
    # after the transport drained, answers go directly again
    direct = svc.acks_direct
    c.send(message(1000))
    check_stream(c.read(2), [1000], [], [])
    c.close()
    assert svc.acks_direct >= direct  # (either way; the stream above is what matters)


def test_client_that_disconnects_mid_batch(service):
    svc = service.svc
    fds = len(os.listdir("/proc/self/fd"))
    known = service.run(lambda: set(svc.connections))
    c = Client(service.path)
    conn = _newest_connection(service, known)
    done = svc.messages
    c.send([f for t in range(1, 101) for f in message(t)])
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    _wait(service, lambda: conn not in svc.connections and conn.wsock is None,
          "the connection was not closed")
    _wait(service, lambda: not svc.committer._busy(), "the commits did not finish")
    assert svc.messages >= done  # what was at its END before the close was queued
    assert len(os.listdir("/proc/self/fd")) <= fds  # no duplicate socket left open
    # the service goes on
    c2 = Client(service.path)
    c2.send(message(7))
    check_stream(c2.read(2), [7], [], [])
    c2.close()
    assert not service.errors


@pytest.mark.parametrize("point", [
    "commit.before_write:4",
    "commit.mid_write:4",
    "commit.before_sync:4",
    "commit.after_ack:4",
    "commit.before_index:4",
])
def test_kill9_loses_nothing_acknowledged(tmp_path, point):
    env = dict(os.environ, FASTPOST_CRASH_AT=point)
    proc = subprocess.Popen([sys.executable, str(HERE / "ack_service.py"), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()[-2000:]
        c = Client(str(tmp_path / "cleanup"))
        c.send(message(1))  # warm-up (the general path)
        acked = {}
        frames = c.read(2)
        tid = 2
        while proc.poll() is None and tid < 2000:
            batch = list(range(tid, tid + 5))
            tid += 5
            try:
                c.send([f for t in batch for f in message(t)])
                frames += c.read(2 * len(batch))
            except (AssertionError, OSError):
                break
        frames += c.read_to_eof()
        c.close()
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked = {f["id"] for f in frames if f.get("c") == 250}
    if point.startswith("commit.after_ack"):
        assert len(acked) >= 4  # the batch acknowledged just before the kill included
    store = QueueStore.open(queue_directory=ack_service.queue_directory(str(tmp_path)))
    try:
        queued = {m.queue_id for m in store.messages()}
    finally:
        store.close()
    assert acked <= queued, sorted(acked - queued)
