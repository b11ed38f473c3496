"""Postfix's smtp-sink as a test peer: started on a free loopback port, stopped at the end.

    with Sink("-r", "rcpt") as sink:        # extra smtp-sink options
        sink.port, sink.messages()                   # dumped messages (-D), in order

Runs as ``nobody`` (smtp-sink refuses root); the dump file lives in a 1777 directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from helpers.instance import free_port


def _free_port(host: str) -> int:
    if ":" not in host:
        return free_port(host)
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Sink:
    def __init__(self, *options: str, lmtp: bool = False, host: str = "127.0.0.1",
                 port: int | None = None):
        path = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        # smtp-sink writes its dump as nobody: a directory of its own that nobody can
        # reach (pytest's tmp_path is private to root).
        self.dir = Path(tempfile.mkdtemp(prefix="smtp-sink-", dir="/tmp"))
        os.chmod(self.dir, 0o1777)
        self.dump = self.dir / f"dump-{time.monotonic_ns()}"
        self.host = host
        self.port = port or _free_port(host)
        args = [path, "-u", "nobody", "-D", str(self.dump), "-h", "sink.test"]
        if lmtp:
            args.append("-L")
        where = f"[{host}]" if ":" in host else host
        args += list(options) + [f"{where}:{self.port}", "100"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host, self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"smtp-sink did not start: {self.proc.stderr.read()!r}")
                time.sleep(0.05)

    @property
    def nexthop(self) -> str:
        host = f"ipv6:{self.host}" if ":" in self.host else self.host
        return f"[{host}]:{self.port}"

    def text(self) -> str:
        try:
            return self.dump.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def messages(self) -> list[str]:
        """Dumped transactions (each starts with its X-Client-Addr: header)."""
        parts = self.text().split("X-Client-Addr: ")
        return ["X-Client-Addr: " + p for p in parts[1:]]

    def wait(self, count: int = 1, timeout: float = 30) -> list[str]:
        """The dumped transactions, once there are at least ``count`` (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
