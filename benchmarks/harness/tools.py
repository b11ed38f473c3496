"""Postfix's load tools (smtp-source, smtp-sink), free ports, installing Debian's Postfix.

Postfix counterpart: smtp-source(1) and smtp-sink(1) themselves; this module only drives
them.

- ``Sink`` runs ``smtp-sink -c`` (as root with ``-u nobody``) and follows its running
  counter ("sess=.. quit=.. mesg=N") from its stdout. The count of delivered messages is
  that counter, never ``-M N``: smtp-sink exits *before* acknowledging the N-th message,
  so the sender defers it (shared/reference/testing-here.md).
- ``run_source`` runs one ``smtp-source`` load and returns its wall time, exit status and
  complaints; smtp-source prints nothing on success, so any warning line is a failure the
  caller reports.
- ``ensure_postfix`` installs Debian's postfix non-interactively (preseeded "Local only";
  the package scripts start no daemon here) when ``postfix`` is missing.

Fails: ``ToolError`` with the command line and its output when a tool cannot be started
or installed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time

SBIN = "/usr/sbin"


class ToolError(RuntimeError):
    """A load tool or package could not be run or installed."""


def which(name: str) -> str | None:
    path = shutil.which(name)
    if path is None and os.path.exists(os.path.join(SBIN, name)):
        path = os.path.join(SBIN, name)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that is free now (bind to 0, read it, close)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_postfix(log=print) -> None:
    """Install Debian's postfix (and its tools) if ``postfix`` or ``smtp-source`` is missing."""
    if which("postfix") and which("smtp-source") and which("smtp-sink"):
        return
    if os.geteuid() != 0:
        raise ToolError("postfix is not installed and this is not root: "
                        "apt-get install postfix (answer 'Local only')")
    log("installing Debian's postfix (non-interactive, 'Local only')")
    for line in ("postfix postfix/main_mailer_type select Local only",
                 "postfix postfix/mailname string fastpost-bench.localdomain"):
        subprocess.run(["debconf-set-selections"], input=line.encode(), check=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postfix"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise ToolError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> bool:
    """True once something accepts TCP connections on host:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Sink:
    """``smtp-sink -c`` on 127.0.0.1:PORT, with its delivered-message counter."""

    _COUNT = re.compile(rb"mesg=(\d+)")

    def __init__(self, port: int | None = None, backlog: int = 1024, extra: tuple = ()):
        self.port = port or free_port()
        self.backlog = backlog
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.count = 0
        self._tail = b""
        self._reader: threading.Thread | None = None
        self.cpu0 = 0

    def start(self) -> "Sink":
        exe = which("smtp-sink")
        if exe is None:
            raise ToolError("smtp-sink not found (Debian package postfix)")
        cmd = [exe, "-c"] + (["-u", "nobody"] if os.geteuid() == 0 else []) + self.extra
        cmd += [f"127.0.0.1:{self.port}", str(self.backlog)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, name="sink-reader", daemon=True)
        self._reader.start()
        if not wait_port(self.port, timeout=10):
            self.stop()
            raise ToolError(f"smtp-sink did not listen on port {self.port}: {self._tail[-300:]!r}")
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            data = self._tail + chunk
            found = self._COUNT.findall(data)
            if found:
                self.count = int(found[-1])
            self._tail = data[-200:]

    def wait_count(self, n: int, timeout: float, progress=None) -> bool:
        """Wait until ``n`` messages were delivered; False on timeout."""
        end = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > end or (self.proc and self.proc.poll() is not None):
                return False
            if progress:
                progress(self.count)
            time.sleep(0.01)
        return True

    def cpu_seconds(self) -> float:
        from .procs import TICK, read_stat
        st = read_stat(self.proc.pid) if self.proc else None
        return st[2] / TICK if st else 0.0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader:
            self._reader.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_source(port: int, sessions: int, messages: int, size: int, *,
               sender: str = "bench@source.example", recipient: str = "rcpt@example.com",
               helo: str | None = None, extra: tuple = (), timeout: float = 900) -> dict:
    """Run smtp-source once; {"seconds", "rc", "complaints", "cpu"}.

    One new connection per message (smtp-source's default), as in the baseline of
    shared/reference/testing-here.md.
    """
    exe = which("smtp-source")
    if exe is None:
        raise ToolError("smtp-source not found (Debian package postfix)")
    cmd = [exe, "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", sender, "-t", recipient]
    if helo:
        cmd += ["-M", helo]
    cmd += list(extra) + [f"127.0.0.1:{port}"]
    ru0 = os.times()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        rc, out = proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        rc, out = -1, f"timed out after {timeout} s: {exc}"
    seconds = time.monotonic() - t0
    ru1 = os.times()
    complaints = [line for line in out.splitlines() if line.strip()]
    return {"seconds": seconds, "rc": rc, "complaints": complaints[:20],
            "cpu": (ru1.children_user + ru1.children_system) - (ru0.children_user + ru0.children_system),
            "command": " ".join(cmd)}
