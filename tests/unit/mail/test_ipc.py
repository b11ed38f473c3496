"""The IPC client library against real servers.

Most tests talk to ``testdaemons.attr_echo`` (an attr_service on the multi skeleton)
run by a real master; the protocol-violation tests use a small server in the test that
sends exactly the bytes under test.
"""

import asyncio
import os
import signal
import socket
import threading

import pytest

from fastpost.mail import attr, ipc


@pytest.fixture
def echo_service(fastpost_instance):
    inst = fastpost_instance(master_cf="echo unix - - n - - testdaemons.attr_echo\n")
    inst.start()
    return inst


def test_sync_request_pipeline_and_greeting(echo_service):
    path = echo_service.endpoint("echo")
    with ipc.AttrClient(path, "echo_protocol") as client:
        hello = client.connect()
        assert hello["protocol"] == "echo_protocol" and hello["pid"] > 0
        reply = client.request({"request": "x", "n": 5, "rcpt": [{"address": "a@b"}]})
        assert reply == {"request": "x", "n": 5, "rcpt": [{"address": "a@b"}], "pid": hello["pid"]}
        # Pipelined: replies come back in request order, even when earlier ones are slower.
        reqs = [{"request": "sleep", "seconds": 50 - 10 * i, "i": i} for i in range(5)]
        replies = client.pipeline(reqs)
        assert [r["i"] for r in replies] == [0, 1, 2, 3, 4]


def test_sync_client_reconnects_after_the_server_went_away(echo_service):
    path = echo_service.endpoint("echo")
    client = ipc.AttrClient(path, "echo_protocol")
    first = client.request({"request": "x"})["pid"]
    os.kill(first, signal.SIGKILL)
    echo_service.wait_log(rf"pid {first} killed by signal 9")
    # The persistent connection is dead; the next request reconnects and is answered.
    second = client.request({"request": "y"})["pid"]
    assert second != first
    # Without retry, a dead connection is an error that names the endpoint.
    os.kill(second, signal.SIGKILL)
    echo_service.wait_log(rf"pid {second} killed by signal 9")
    with pytest.raises(ipc.IPCClosed, match=path):
        client.request({"request": "z"}, retry=False)
    client.close()


def test_sync_client_idle_connection_is_replaced(echo_service):
    path = echo_service.endpoint("echo")
    client = ipc.AttrClient(path, "echo_protocol", idle=0.0)
    client.request({"request": "a"})
    sock = client._sock
    client.request({"request": "b"})
    assert client._sock is not sock  # older than ipc_idle: not reused
    client.close()


def test_sync_timeout_and_wrong_protocol(echo_service):
    path = echo_service.endpoint("echo")
    with ipc.AttrClient(path, "echo_protocol", timeout=0.2) as client:
        with pytest.raises(ipc.IPCTimeout, match="no reply within 0.2s"):
            client.request({"request": "sleep", "seconds": 2000})
        assert not client.connected  # a timed-out stream is never reused
    with pytest.raises(ipc.IPCProtocolError, match="unexpected protocol 'echo_protocol'"):
        ipc.AttrClient(path, "cleanup_protocol").connect()
    with pytest.raises(ipc.IPCConnectError, match="No such file or directory"):
        ipc.AttrClient(echo_service.endpoint("nothing"), "x").connect()


def test_async_client_concurrent_requests_share_one_connection(echo_service):
    path = echo_service.endpoint("echo")

    async def main():
        client = ipc.AsyncAttrClient(path, "echo_protocol")
        hello = await client.connect()
        replies = await asyncio.gather(*(
            client.request({"request": "sleep", "seconds": (7 * i) % 30, "i": i})
            for i in range(50)))
        assert [r["i"] for r in replies] == list(range(50))
        assert {r["pid"] for r in replies} == {hello["pid"]}
        batch = await client.pipeline([{"i": i} for i in range(100)])
        assert [r["i"] for r in batch] == list(range(100))
        client.close()
        with pytest.raises(ipc.IPCTimeout):
            fast = ipc.AsyncAttrClient(path, "echo_protocol", timeout=0.1)
            await fast.request({"request": "sleep", "seconds": 1000})
        # After a server restart the next request reconnects.
        os.kill(hello["pid"], signal.SIGKILL)
        await asyncio.sleep(0.2)
        again = await client.request({"request": "after"})
        assert again["pid"] != hello["pid"]
        client.close()

    asyncio.run(main())


def test_async_idle_close_lets_the_server_retire(echo_service):
    path = echo_service.endpoint("echo")

    async def main():
        client = ipc.AsyncAttrClient(path, "echo_protocol", idle=0.05)
        await client.request({"request": "a"})
        proto = client._proto
        await asyncio.sleep(0.3)
        assert proto.closed and client._proto is None
        await client.request({"request": "b"})
        client.close()

    asyncio.run(main())


class RawServer:
    """A UNIX stream server that sends fixed bytes to each client and reads what comes."""

    def __init__(self, path, payload: bytes, close: bool = True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(5)
        self.payload = payload
        self.close_after = close
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(self.payload)
            if self.close_after:
                conn.close()

    def stop(self):
        self.sock.close()


@pytest.mark.parametrize("payload,error,message", [
    (b"\0\0\0\x03\x01pz", ipc.IPCProtocolError, "malformed reply: bad attribute value type"),
    (b"\xff\xff\xff\xff", ipc.IPCProtocolError, "exceeds the limit"),
    (b"\0\0\0\x10partial", ipc.IPCClosed, "in the middle of a reply (11 bytes)"),
    (b"", ipc.IPCClosed, "connection closed by server"),
    (attr.encode({"protocol": "other"}), ipc.IPCProtocolError, "unexpected protocol 'other'"),
])
def test_protocol_violations_are_clear_errors(tmp_path, payload, error, message):
    path = str(tmp_path / "bad")
    server = RawServer(path, payload)
    try:
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
            ipc.AttrClient(path, "p", max_frame=1 << 16).connect()

        async def main():
            await ipc.AsyncAttrClient(path, "p", max_frame=1 << 16).connect()

        with pytest.raises(error):
            asyncio.run(main())
    finally:
        server.stop()


def test_trigger_to_a_missing_endpoint_names_it(tmp_path):
    with pytest.raises(ipc.IPCConnectError, match="no such service endpoint"):
        ipc.mail_trigger(str(tmp_path), "qmgr", ipc.QMGR_FLUSH)
    assert ipc.endpoint("/q", "cleanup", ipc.PUBLIC) == "/q/public/cleanup"
    with pytest.raises(ValueError):
        ipc.endpoint("/q", "x", "secret")


def test_triggers_to_stream_dgram_and_fifo(tmp_path):
    got = []
    stream_path, dgram_path, fifo_path = (str(tmp_path / n) for n in ("s", "d", "f"))
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(stream_path)
    stream.listen(1)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(dgram_path)
    os.mkfifo(fifo_path)
    fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK)
    try:
        ipc.trigger(stream_path, b"W")
        conn, _ = stream.accept()
        got.append(conn.recv(10))
        ipc.trigger(dgram_path, b"D")
        got.append(dgram.recv(10))
        ipc.trigger(fifo_path, b"F")
        got.append(os.read(fifo, 10))

        async def main():
            await ipc.async_trigger(stream_path, b"A")
            conn2, _ = stream.accept()
            got.append(conn2.recv(10))
            await ipc.async_trigger(dgram_path, b"I")
            got.append(dgram.recv(10))

        asyncio.run(main())
        assert got == [b"W", b"D", b"F", b"A", b"I"]
    finally:
        stream.close()
        dgram.close()
        os.close(fifo)
