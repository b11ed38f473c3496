"""A private C Postfix 3.7 for the access-policy differential tests (not a test module).

PolicyPostfix(base, main_cf, services, resolv_conf=None) writes its own main.cf and
master.cf under ``base`` (0755, reachable by Postfix's unprivileged daemons): one
smtpd service per entry of ``services`` (name -> main.cf lines, applied as ``-o``
overrides), every other service as Debian's master.cf has it but without chroot, a
maillog_file, and its own queue and data directories. ``start()`` runs
``postfix -c DIR start``; with ``resolv_conf`` the master runs in a private mount
namespace where that file is bind-mounted over /etc/resolv.conf, so Postfix's
resolver (glibc's, which has no other way to name a server) asks the test's DNS
server and nothing else on the machine notices.

``play(service, lines, source=None)`` sends each line (CR LF added) and returns the
complete reply to it; ``log_since(offset)`` returns smtpd's log lines (tag stripped).

Needs root and Debian's postfix (tests/apt-packages.txt).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


_given: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same twice in this process."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def read_reply(sock: socket.socket, buf: bytearray) -> bytes:
    """Read one complete (possibly multi-line) reply; b"" when the peer closed."""
    out = b""
    while True:
        nl = buf.find(b"\n")
        if nl < 0:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                return out
            buf += chunk
            continue
        line = bytes(buf[: nl + 1])
        del buf[: nl + 1]
        out += line
        if len(line) >= 4 and line[3:4] == b" ":
            return out
        if len(line) < 4:
            return out


def _listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this host (IPv4, from /proc/net/tcp)."""
    ports = set()
    with open("/proc/net/tcp", encoding="ascii") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class PolicyPostfix:
    """One private Postfix with an smtpd service per configuration (module docstring)."""

    def __init__(self, base: str, main_cf: str, services: dict[str, list[str]],
                 resolv_conf: str | None = None, master_extra: str = ""):
        self.base = base
        self.etc = os.path.join(base, "etc")
        self.maillog = os.path.join(base, "maillog")
        self.resolv_conf = resolv_conf
        os.makedirs(self.etc, exist_ok=True)
        for d in ("spool", "data"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        shutil.chown(os.path.join(base, "data"), "postfix")
        self.ports = {name: free_port() for name in services}
        lines = [MASTER_CF.rstrip("\n")]
        for name, cf in services.items():
            opts = "".join(f"\n  -o {{ {line.strip()} }}" for line in cf if line.strip())
            lines.append(f"127.0.0.1:{self.ports[name]}  inet  n  -  n  -  -  smtpd{opts}")
        if master_extra:
            lines.append(master_extra.rstrip("\n"))
        with open(os.path.join(self.etc, "master.cf"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.join(self.etc, "main.cf"), "w", encoding="utf-8") as fh:
            fh.write(main_cf.rstrip("\n") + "\n"
                     f"queue_directory = {base}/spool\ndata_directory = {base}/data\n"
                     f"maillog_file = {self.maillog}\nmaillog_file_prefixes = {base}\n")

    def start(self) -> None:
        cmd = ["postfix", "-c", self.etc, "start"]
        if self.resolv_conf:
            script = (f"mount --bind {self.resolv_conf} /etc/resolv.conf && "
                      f"exec postfix -c {self.etc} start")
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"postfix start failed: {proc.stdout} {proc.stderr}")
        # Wait until the master listens on every port, without connecting: a probe
        # would start an smtpd, and one whose configuration is fatal would log its
        # error then (not in the session that tests it) and get its service
        # throttled, so the real session would see nothing at all.
        deadline = time.monotonic() + 30
        want = set(self.ports.values())
        while True:
            listening = _listening_ports()
            if want <= listening:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Postfix did not start listening")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)

    def reload(self) -> None:
        subprocess.run(["postfix", "-c", self.etc, "reload"], capture_output=True, check=True)

    def play(self, service: str, lines: list[bytes], source: str | None = None,
             timeout: float = 30) -> list[bytes]:
        """Send each line in turn; return the greeting then one reply per line."""
        sock = socket.socket()
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.ports[service]))
        buf = bytearray()
        out = [read_reply(sock, buf)]
        for line in lines:
            if not out[-1]:
                break
            try:
                sock.sendall(line)
            except OSError:
                break
            out.append(read_reply(sock, buf))
        sock.close()
        return out

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log_since(self, offset: int, program: str = "smtpd", *, with_pid: bool = False) -> list:
        """smtpd's log lines after offset (tag stripped; (pid, text) with with_pid)."""
        try:
            with open(self.maillog, encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                text = fh.read()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split(" ", 4)
            if len(parts) < 5:
                continue
            tag, _, rest = parts[4].partition(": ")
            name, _, pid = tag.partition("[")
            if name.endswith("/" + program):
                out.append((pid.rstrip("]"), rest) if with_pid else rest)
        return out

    def session_log(self, offset: int, timeout: float = 20) -> list[str]:
        """The log lines of the one session that ended after offset (its process's)."""
        rx = re.compile(r"^disconnect from |^fatal: ")
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_since(offset, with_pid=True)
            ends = [pid for pid, text in lines if rx.search(text)]
            if ends or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not ends:
            return [text for _, text in lines]
        pid = ends[-1]
        return [text for p, text in lines if p == pid]

    def wait_log(self, offset: int, pattern: str, timeout: float = 20,
                 program: str = "smtpd") -> list[str]:
        """Wait until a line matching ``pattern`` was logged after offset; return all lines."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_since(offset, program)
            if any(rx.search(line) for line in lines):
                return lines
            if time.monotonic() > deadline:
                return lines
            time.sleep(0.05)
