"""A private fastpost instance for tests: config, queue and log in a temp directory.

    from helpers.instance import Instance, free_port

    with Instance(tmp_path, master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\\n",
                  main_cf={"smtpd_banner": "test"}) as inst:
        inst.start()                    # `fastpost start-fg` as a child, waits until up
        sock = inst.connect_inet(port)  # or inst.connect_unix("cleanup")
        ...
        inst.reload()                   # `fastpost reload`, waits for the master's line
    # leaving the block runs `fastpost stop` and makes sure no process is left

Everything lives under ``tmp_path/fp``: ``etc/`` (main.cf, master.cf), ``spool/`` (the
queue directory), ``data/``, and ``maillog`` (every process's log lines). The master
runs with ``tests/`` on PYTHONPATH so master.cf can name test daemons by dotted path
(``testdaemons.echo``). As root the workers run as ``postfix`` (mail_owner) with
setgid_group ``postdrop``; otherwise as the current user.

``conftest.py`` offers it as the ``fastpost_instance`` fixture (a factory).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (bind to port 0, then release)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields and fields[0] != "Z" and int(fields[1]) == pid:
                out.append(int(entry))
    return sorted(out)


def proc_ids(pid: int) -> dict:
    """Real/effective uid and gid and the root directory of a process, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                real, effective, saved, _fs = value.split()
                out[key.lower()] = (int(real), int(effective), int(saved))
            elif key == "Groups":
                out["groups"] = [int(g) for g in value.split()]
    out["root"] = os.readlink(f"/proc/{pid}/root")
    return out


class Instance:
    """One fastpost configuration, queue and master under a temp directory."""

    def __init__(self, tmp_path, *, master_cf: str, main_cf: dict | None = None,
                 name: str = "fp"):
        self.dir = Path(tmp_path) / name
        self.etc = self.dir / "etc"
        self.queue = self.dir / "spool"
        self.data = self.dir / "data"
        self.maillog = self.dir / "maillog"
        self.etc.mkdir(parents=True, exist_ok=True)
        self.root = os.geteuid() == 0
        if self.root:
            owner, group = "postfix", "postdrop"
        else:
            owner = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "maillog_file": str(self.maillog),
            # Postfix refuses a maillog_file outside these (fastpost too, since session 8)
            "maillog_file_prefixes": f"/var, /dev/stdout, {self.dir}",
            "syslog_name": "fptest",
            "mail_owner": owner,
            "setgid_group": group,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "test.localdomain",
            "service_throttle_time": "60s",
            "fastpost_stop_timeout": "10s",
        }
        settings.update(main_cf or {})
        self.write_main_cf(settings)
        self.write_master_cf(master_cf)
        self.proc: subprocess.Popen | None = None
        self.master_pid = 0
        self.stdout_path = self.dir / "stdout"

    # -- configuration ----------------------------------------------------------------

    def write_main_cf(self, settings: dict) -> None:
        self.main_settings = dict(settings)
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        (self.etc / "main.cf").write_text(text)

    def update_main_cf(self, **changes) -> None:
        self.write_main_cf({**self.main_settings, **changes})

    def write_master_cf(self, text: str) -> None:
        (self.etc / "master.cf").write_text(text)

    # -- commands -----------------------------------------------------------------------

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.pop("FASTPOST_CONFIG", None)
        env.pop("MAIL_CONFIG", None)
        return env

    def command(self, *args, timeout: float = 60, check: bool = False):
        """Run ``fastpost -c etc ARGS`` and return the CompletedProcess (text)."""
        proc = subprocess.run([sys.executable, "-m", "fastpost", "-c", str(self.etc), *args],
                              env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"fastpost {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def start(self, timeout: float = 30) -> int:
        """Start ``fastpost start-fg`` as a child process; return the master's pid."""
        out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastpost", "-c", str(self.etc), "start-fg"],
            env=self.env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.master_pid = self.proc.pid
        self.wait_log(r"daemon started -- version", timeout=timeout, proc=self.proc)
        return self.master_pid

    def start_daemon(self) -> subprocess.CompletedProcess:
        """Run ``fastpost start`` (daemonizes); record the master pid when it worked."""
        result = self.command("start")
        if result.returncode == 0:
            self.master_pid = self.running_pid()
        return result

    def running_pid(self) -> int:
        try:
            text = (self.queue / "pid" / "master.pid").read_text().strip()
            return int(text) if text else 0
        except (OSError, ValueError):
            return 0

    def stop(self, timeout: float = 60) -> subprocess.CompletedProcess:
        """``fastpost stop``, then reap the start-fg child."""
        result = self.command("stop", timeout=timeout)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        return result

    def reload(self, timeout: float = 30) -> None:
        """``fastpost reload`` and wait until the master has logged it."""
        before = self.log_text().count("reload -- version")
        self.command("reload", check=True)
        deadline = time.monotonic() + timeout
        while self.log_text().count("reload -- version") <= before:
            if time.monotonic() > deadline:
                raise AssertionError("the master did not log its reload\n" + self.log_text())
            time.sleep(0.02)

    # -- observation ---------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, *, timeout: float = 30, count: int = 1, proc=None) -> str:
        """Wait until pattern (a regex) matches count lines of the mail log; return the log."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if len(rx.findall(text)) >= count:
                return text
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"fastpost exited with {proc.returncode} before "
                                     f"/{pattern}/ appeared:\n{text}\n{self.stdout()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"/{pattern}/ not seen {count} time(s) in the log "
                                     f"within {timeout}s:\n{text}")
            time.sleep(0.02)

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def workers(self) -> list[int]:
        """The master's live worker processes."""
        return children_of(self.master_pid) if self.master_pid else []

    def wait_workers(self, n: int, timeout: float = 30) -> list[int]:
        """Wait until exactly n workers run; return their pids."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers()
            if len(pids) == n:
                return pids
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} worker(s), have {pids}\n{self.log_text()}")
            time.sleep(0.02)

    # -- clients ----------------------------------------------------------------------------

    def endpoint(self, service: str, public: bool = False) -> str:
        return str(self.queue / ("public" if public else "private") / service)

    def connect_unix(self, service: str, public: bool = False, timeout: float = 30):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.endpoint(service, public))
        return sock

    def connect_inet(self, port: int, host: str = "127.0.0.1", timeout: float = 30):
        return socket.create_connection((host, port), timeout=timeout)

    # -- clean-up ------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the master if it runs; kill (by pid) anything it left behind."""
        if self.master_pid and alive(self.master_pid):
            try:
                self.stop(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        leftovers = []
        if self.master_pid:
            leftovers = children_of(self.master_pid)
            if alive(self.master_pid):
                leftovers.append(self.master_pid)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def read_line(sock, limit: int = 4096) -> bytes:
    """Read one newline-terminated line from a blocking socket (without the newline)."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise AssertionError("line too long")
    return bytes(buf).rstrip(b"\n")


def talk(sock, line: str) -> str:
    """Send one line and return the reply line."""
    sock.sendall(line.encode() + b"\n")
    return read_line(sock).decode()
