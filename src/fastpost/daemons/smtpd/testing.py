"""Test support: a real smtpd on loopback in a background thread, and transcripts.

Postfix counterpart: none (Postfix's smtpd tests use stand-alone mode, smtpd -S).

SmtpdThread starts an SmtpdService with its own event loop (uvloop or asyncio) in a
daemon thread, listening on 127.0.0.1 on an ephemeral port, with a FileTestSink in a
temporary directory and the log lines captured in memory. Blocking clients (smtplib,
swaks, raw sockets) talk to it from the test thread: the real protocol over real
sockets.

    with SmtpdThread(tmp_path, main_cf="mynetworks = 127.0.0.1/32") as srv:
        smtplib.SMTP("127.0.0.1", srv.port)...
        srv.sink.messages(); srv.log_lines()

run_transcript() plays a client script against it and returns the exact bytes the
server sent after each step, waiting (without sleeps or timing guesses) until the
session has read every byte sent and has nothing more to say: the session counts
bytes in and out, and the client reads exactly what was written.

Diagnostics: TimeoutError when the server does not settle within ``timeout``
seconds (a hung session is a test failure, not a hang).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import threading
import time

from fastpost.daemons.smtpd.service import SmtpdService
from fastpost.daemons.smtpd.testsink import FileTestSink
from fastpost.mail.config import Config
from fastpost.util import log

__all__ = ["SmtpdThread", "CapturedLog", "run_transcript", "parse_script", "render", "escape"]

#: main.cf lines every test server starts from (then the test's own lines).
BASE_MAIN_CF = """\
compatibility_level = 3.7
myhostname = mx.fastpost.test
mydomain = fastpost.test
mydestination = $myhostname, localhost
mynetworks = 127.0.0.1/32
smtpd_peername_lookup = no
local_recipient_maps =
alias_maps =
"""


class CapturedLog(io.TextIOBase):
    """A thread-safe text stream that keeps log lines (without time and host)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        with self._lock:
            for line in text.splitlines():
                # "Mmm dd hh:mm:ss host tag[pid]: text" -> "tag: text"
                parts = line.split(" ", 4)
                if len(parts) == 5:
                    tag, _, rest = parts[4].partition(": ")
                    tag = tag.split("[", 1)[0]
                    self.lines.append(f"{tag}: {rest}")
                else:
                    self.lines.append(line)
        return len(text)

    def flush(self) -> None:
        pass

    def take(self) -> list[str]:
        """Return and forget the lines captured so far."""
        with self._lock:
            out, self.lines = self.lines, []
        return out


class SmtpdThread:
    """A real smtpd in a background thread (module docstring)."""

    def __init__(self, directory, main_cf: str = "", *, loop: str = "uvloop",
                 policy=None, authenticator=None, sink=None, fsync: bool = False,
                 overrides: dict[str, str] | None = None, wrappermode: bool = False):
        self.directory = str(directory)
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, "main.cf"), "w", encoding="utf-8") as fh:
            fh.write(BASE_MAIN_CF + f"queue_directory = {self.directory}\n" + main_cf + "\n")
        self.config = Config(self.directory, overrides or {})
        self.loop_kind = loop
        self.sink = sink or FileTestSink(os.path.join(self.directory, "spool"), fsync=fsync)
        self.policy = policy
        self.authenticator = authenticator
        self.log = CapturedLog()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.service: SmtpdService | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server = None

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> "SmtpdThread":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start the loop thread and wait until the server listens."""
        log.init("smtpd", syslog_name="fastpost", use_syslog=False, stream=self.log)
        self._thread = threading.Thread(target=self._main, name="smtpd-test", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("smtpd test server did not start")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        if self.loop_kind == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            self.service = SmtpdService.from_config(
                self.config, sink=self.sink, policy=self.policy,
                authenticator=self.authenticator, loop=loop)
            self._server = loop.run_until_complete(self.service.listen("127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        """Close every session and the server, stop the loop thread."""
        if self.loop is None or self._thread is None:
            return

        async def shutdown():
            self._server.close()
            await self.service.close()
            await asyncio.sleep(0)
            self.loop.stop()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self._thread.join(30)
        self._thread = None

    def call(self, func, *args, timeout: float = 30):
        """Run func(*args) on the loop thread and return its result."""
        async def wrapper():
            return func(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def log_lines(self) -> list[str]:
        """Return the log lines so far (``fastpost/smtpd: text``) and forget them."""
        return self.log.take()

    def sessions(self) -> int:
        """Return the number of live sessions."""
        return self.call(lambda: len(self.service.sessions))

    def wait_sessions(self, count: int = 0, timeout: float = 30) -> None:
        """Wait until at most ``count`` sessions are alive."""
        deadline = time.monotonic() + timeout
        while self.sessions() > count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sessions did not end ({self.sessions()} alive)")
            time.sleep(0.01)

    # -- settling -----------------------------------------------------------------

    def settle(self, session, sent: int, timeout: float = 30) -> tuple[int, bool]:
        """Wait until ``session`` read ``sent`` bytes and stopped; return (bytes out, closed)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.call(lambda: (session.bytes_in, session.waiting, session._busy,
                                       session.transport is None or session._closed,
                                       session.bytes_out, session.conn is not None))
            bytes_in, waiting, busy, closed, bytes_out, greeted = state
            if closed or (greeted and bytes_in >= sent and waiting and not busy):
                return bytes_out, closed
            if time.monotonic() > deadline:
                raise TimeoutError(f"session did not settle: {state}")
            time.sleep(0.002)


def _read_exactly(sock: socket.socket, want: int, have: bytes, closed: bool) -> bytes:
    sock.settimeout(10)
    data = have
    while len(data) < want:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    if closed:
        # Drain whatever is left (nothing, normally) until EOF.
        sock.settimeout(2)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (OSError, socket.timeout):
            pass
    return data


def run_transcript(srv: SmtpdThread, steps: list[bytes], *, source: str | None = None,
                   half_close: bool = False):
    """Play ``steps`` against srv; return [(client bytes, server bytes, log lines)].

    The first entry has empty client bytes (the greeting). With ``half_close`` the
    client shuts its sending side after the last step.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        sock.bind((source, 0))
    srv.log_lines()
    sock.connect(("127.0.0.1", srv.port))
    deadline = time.monotonic() + 10
    session = None
    while session is None or srv.call(lambda: session.conn is None and not session._closed):
        session = srv.call(lambda: srv.service.last_session)
        if time.monotonic() > deadline:
            raise TimeoutError("no session")
        time.sleep(0.002)
    out = []
    received = b""
    sent = 0
    total_out, closed = srv.settle(session, 0)
    got = _read_exactly(sock, total_out, b"", closed)
    out.append((b"", got, srv.log_lines()))
    received = got
    for i, step in enumerate(steps):
        if closed:
            break
        try:
            sock.sendall(step)
        except OSError:
            break
        sent += len(step)
        if half_close and i == len(steps) - 1:
            sock.shutdown(socket.SHUT_WR)
        total_out, closed = srv.settle(session, sent)
        data = _read_exactly(sock, total_out - len(received), b"",
                             closed or (half_close and i == len(steps) - 1))
        out.append((step, data, srv.log_lines()))
        received += data
    sock.close()
    srv.wait_sessions(0)
    if out:
        step, data, lines = out[-1]
        out[-1] = (step, data, lines + srv.log_lines())
    return out


# ---------------------------------------------------------------- transcript files

_DATE = re.compile(rb"\w{3}, \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4} \([^)]*\)")


def escape(data: bytes) -> str:
    """Return bytes as printable text: \\r \\n \\t \\\\ and \\xHH escapes."""
    out = []
    for b in data:
        if b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def lines_of(data: bytes) -> list[bytes]:
    """Split after each LF, keeping it, for one transcript line per protocol line."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def parse_script(path):
    """Return (main.cf text, steps, options) of a transcript script (.in file)."""
    main_cf, steps, opts = [], [], {"client": None, "halfclose": False, "messages": False}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("%main.cf "):
            main_cf.append(raw[len("%main.cf "):])
        elif raw.startswith("%client "):
            opts["client"] = raw.split(None, 1)[1].strip()
        elif raw.strip() == "%halfclose":
            opts["halfclose"] = True
        elif raw.strip() == "%messages":
            opts["messages"] = True
        elif raw.startswith("> "):
            # Test scripts are our own files: a step is a Python bytes expression,
            # evaluated without builtins.
            value = eval(raw[2:], {"__builtins__": {}}, {})  # noqa: S307
            if not isinstance(value, bytes):
                raise ValueError(f"{path.name}: step is not bytes: {raw}")
            steps.append(value)
        elif raw.strip() and not raw.startswith("#"):
            raise ValueError(f"{path.name}: cannot parse line: {raw}")
    return "\n".join(main_cf), steps, opts


def render(result, messages) -> str:
    """Return the transcript text (.ref format) of run_transcript() output."""
    out = []
    for client, server, logs in result:
        for line in lines_of(client):
            out.append("C: " + escape(line))
        for line in lines_of(server):
            out.append("S: " + escape(line))
        for line in logs:
            out.append("L: " + line)
    for meta, content in messages:
        rcpts = ",".join(r["address"] for r in meta["recipients"])
        out.append(f"M: from=<{meta['sender']}> to=<{rcpts}> size={len(content)}")
        for line in lines_of(_DATE.sub(b"DATE", content)):
            out.append("M| " + escape(line))
    return "\n".join(out) + "\n"
