"""A small SMTP load client and sink that track every message by Message-ID.

Postfix counterpart: smtp-source(1) and smtp-sink(1), which cannot say *which* messages
were acknowledged or received; the reliability battery needs exactly that.

- ``PySink``: an asyncio SMTP server in its own thread on 127.0.0.1 (ephemeral port).
  For every message it records the Message-ID of the header section (the first one),
  then answers 250. ``received`` is the list of Message-IDs in arrival order.
- ``send(port, ids, sessions, ...)``: sends one message per Message-ID over ``sessions``
  concurrent connections (one connection per message, as smtp-source does) and returns,
  per Message-ID, the final reply to the end of DATA ("250 ..." when acknowledged), so
  the battery knows exactly which messages the MTA promised to deliver.
- ``converse(host, port, lines, ...)``: a raw conversation (bytes in, replies out) for the
  smuggling and flood checks.

Fails: client-side socket errors are recorded per message as "error: ..." and never
raised; the sink answers 500 to commands it does not know and 421-closes a session
whose line exceeds 1 MB.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

_MSGID = re.compile(rb"^message-id:\s*(<[^>\r\n]*>)", re.I | re.M)


class PySink:
    """Thread-hosted SMTP sink recording Message-IDs of received messages."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.received: list[str] = []
        self.sessions = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        write = writer.write
        try:
            write(b"220 pysink ESMTP\r\n")
            while True:
                line = await reader.readuntil(b"\n")
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    write(b"250-pysink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
                elif cmd in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    write(b"250 2.0.0 Ok\r\n")
                elif cmd == b"DATA":
                    write(b"354 go ahead\r\n")
                    chunks = []
                    while True:
                        piece = await reader.readuntil(b"\n")
                        if piece == b".\r\n":
                            break
                        chunks.append(piece)
                    data = b"".join(chunks)
                    head = data.split(b"\r\n\r\n", 1)[0]
                    m = _MSGID.search(head)
                    with self._lock:
                        self.received.append(m.group(1).decode("ascii", "replace") if m else "")
                    write(b"250 2.0.0 Ok: stored\r\n")
                elif cmd == b"QUIT":
                    write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
                else:
                    write(b"500 5.5.2 unknown command\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port, limit=1 << 20, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def start(self) -> "PySink":
        self._thread = threading.Thread(target=self._run, name="pysink", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for mid in self.received:
                out[mid] = out.get(mid, 0) + 1
            return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def message(msgid: str, size: int = 1024, sender: str = "battery@source.example",
            rcpt: str = "rcpt@example.com") -> bytes:
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: battery\r\n"
            f"Message-ID: {msgid}\r\n\r\n").encode()
    body = (b"X" * 70 + b"\r\n") * max(1, size // 72)
    return head + body


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)


async def _one(host: str, port: int, msgid: str, size: int, helo: str, sender: str, rcpt: str,
               local: str | None, timeout: float) -> str:
    async def talk() -> str:
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(local, 0) if local else None)
        try:
            steps = [None, f"EHLO {helo}\r\n".encode(), f"MAIL FROM:<{sender}>\r\n".encode(),
                     f"RCPT TO:<{rcpt}>\r\n".encode(), b"DATA\r\n"]
            for step in steps:
                if step:
                    writer.write(step)
                reply = await _read_reply(reader)
                if reply[:1] not in (b"2", b"3"):
                    return reply.decode("utf-8", "replace").strip()
            writer.write(message(msgid, size, sender, rcpt) + b".\r\n")
            reply = (await _read_reply(reader)).decode("utf-8", "replace").strip()
            writer.write(b"QUIT\r\n")
            try:
                await asyncio.wait_for(_read_reply(reader), 5)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            return reply
        finally:
            writer.close()
    try:
        return await asyncio.wait_for(talk(), timeout)
    except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
        return f"error: {type(exc).__name__} {exc}"


async def send_async(port: int, ids: list[str], sessions: int, *, size: int = 1024,
                     host: str = "127.0.0.1", helo: str = "client.battery.example",
                     sender: str = "battery@source.example", rcpt: str = "rcpt@example.com",
                     local: str | None = None, timeout: float = 60.0,
                     stop: threading.Event | None = None) -> dict[str, str]:
    results: dict[str, str] = {}
    queue = list(reversed(ids))

    async def worker() -> None:
        while queue and not (stop and stop.is_set()):
            mid = queue.pop()
            results[mid] = await _one(host, port, mid, size, helo, sender, rcpt, local, timeout)

    await asyncio.gather(*(worker() for _ in range(max(1, sessions))))
    return results


def send(port: int, ids: list[str], sessions: int, **kw) -> dict[str, str]:
    """Send one message per Message-ID; {Message-ID: final reply or "error: ..."}."""
    return asyncio.run(send_async(port, ids, sessions, **kw))


def acked(results: dict[str, str]) -> set[str]:
    return {mid for mid, reply in results.items() if reply.startswith("250")}


def converse(port: int, chunks: list[bytes], *, host: str = "127.0.0.1", local: str | None = None,
             timeout: float = 10.0, settle: float = 1.0) -> bytes:
    """Send each chunk (waiting for whatever answer comes), return every byte received."""
    s = socket.create_connection((host, port), timeout=timeout,
                                 source_address=(local, 0) if local else None)
    got = b""
    try:
        s.settimeout(timeout)
        got += s.recv(65536)
        for chunk in chunks:
            s.sendall(chunk)
            end = time.monotonic() + settle
            s.settimeout(settle)
            while time.monotonic() < end:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    break
                if not data:
                    return got
                got += data
    except OSError as exc:
        got += f"\n[socket error: {exc}]".encode()
    finally:
        s.close()
    return got
