"""The machine a run was made on, and its small-file fsync rate.

Postfix counterpart: none. Every result file carries ``describe()`` so that figures from
different machines are never compared blindly; ``fsync_rate()`` measures what durable
small writes cost here (create + write 1 KiB + fsync + rename + close, per file), the
floor under any MTA that writes one file per message.

Fails: ``describe()`` never raises (unknown fields are "?"); ``fsync_rate()`` raises
OSError if the directory cannot be written.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time

from . import loopfs


def _first(path: str, key: str) -> str:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _cmd(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def describe(path: str = "/tmp") -> dict:
    """Machine, OS, disk and software versions as a JSON-ready dict."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import fastpost
        fp_version = fastpost.__version__
    except Exception:  # noqa: BLE001 - describe() must not fail
        fp_version = "?"
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    du = shutil.disk_usage(path)
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "os": _os_name(),
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else "?",
        "disk": {"path": path, "device": _cmd("findmnt", "-no", "SOURCE", "--target", path),
                 "fstype": _cmd("findmnt", "-no", "FSTYPE", "--target", path),
                 "what": loopfs.describe(path),
                 "free_gib": round(du.free / 2**30, 1)},
        "python": sys.version.split()[0],
        "postfix": _cmd("/usr/sbin/postconf", "-dh", "mail_version"),
        "fastpost": fp_version,
        "fastpost_commit": _cmd("git", "-C", repo, "rev-parse", "--short", "HEAD"),
        "loadavg_at_start": os.getloadavg(),
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


def fsync_rate(directory: str, files: int = 1000, threads: int = 1, size: int = 1024) -> dict:
    """Durable small files per second: create, write ``size`` bytes, fsync, rename, close."""
    payload = b"x" * size
    per = max(1, files // threads)
    os.makedirs(directory, exist_ok=True)

    def work(t: int) -> None:
        for n in range(per):
            tmp = os.path.join(directory, f"t{t}.{n}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(directory, f"t{t}.{n}"))

    cpu0 = os.times()
    t0 = time.monotonic()
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    seconds = time.monotonic() - t0
    cpu1 = os.times()
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    n = per * threads
    return {"files": n, "threads": threads, "seconds": seconds, "rate": n / seconds,
            "cpu_ms_per_file": 1000 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / n}
