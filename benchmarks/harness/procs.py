"""CPU seconds by daemon and memory of one MTA's process tree, read from /proc.

Postfix counterpart: none; this is how the harness answers "which daemon spent the CPU".

An MTA instance is the tree of processes under its master (C Postfix and fastpost alike).
``ProcessMonitor`` samples that tree every ``interval`` seconds from a thread:

- CPU: utime+stime of every process seen, from its first sample (or 0 for processes born
  during the window) to its last one. Processes that exit between two samples lose their
  last, unseen slice; the master's cutime+cstime (the exact total of its reaped children)
  measures that loss, and it is reported as ``"(exited, unsampled)"`` so the total is exact
  for children of the master.
- Memory: the peak over samples of the summed RSS of the tree (and the peak of its
  summed PSS, from smaps_rollup, which counts shared pages once: fairer for a preforking
  MTA), taken every ``rss_every`` samples because smaps_rollup is not free.

Names: ``comm`` from /proc/PID/stat ("smtpd", "cleanup", ...); for a Python process
(comm "python3..." or "fastpost") the daemon name is read from its command line
(``fastpost.daemons.NAME``, ``fastpost/NAME`` or ``fastpost ... NAME``).

Fails: never raises for processes that vanish under it (they are simply gone); a missing
master pid makes ``ProcessMonitor`` watch nothing and say so in ``result()["note"]``.
"""

from __future__ import annotations

import os
import re
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def read_stat(pid: int):
    """Return (comm, ppid, utime+stime ticks, cutime+cstime ticks, rss bytes) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    lpar = data.find(b"(")
    rpar = data.rfind(b")")
    comm = data[lpar + 1:rpar].decode("ascii", "replace")
    f = data[rpar + 2:].split()
    # fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    return comm, int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), int(f[21]) * PAGE



def thread_ids(pid: int) -> list[int]:
    """The thread ids of a process ([] when it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def thread_stats(pid: int) -> dict[int, tuple]:
    """{tid: (comm, user ticks, system ticks, voluntary cs, involuntary cs)} of one
    process's threads, from /proc/PID/task/TID/{stat,status}; threads that vanish
    meanwhile are left out."""
    out = {}
    for tid in thread_ids(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                data = fh.read()
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                status = fh.read()
        except OSError:
            continue
        comm = data[data.find("(") + 1:data.rfind(")")]
        f = data[data.rfind(")") + 2:].split()
        vol = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        invol = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        out[tid] = (comm, int(f[11]), int(f[12]), vol, invol)
    return out

def read_pss(pid: int) -> int:
    """Proportional set size of a process in bytes (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_DAEMON_RE = re.compile(r"fastpost[./](?:daemons[./])?([a-z_-]+)")


def daemon_name(pid: int, comm: str) -> str:
    """The daemon name of a process: comm, or for Python processes its fastpost role."""
    if " " in comm:
        # fastpost workers set their title to their argv ("cleanup -n cleanup -t unix
        # ..."), and comm is its first 15 bytes: the daemon is the first word.
        return comm.split(" ", 1)[0]
    if not (comm.startswith("python") or comm == "fastpost"):
        return comm
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return comm
    text = " ".join(argv)
    m = _DAEMON_RE.search(text.replace("fastpost.cli", "").replace("fastpost/cli", ""))
    if m and m.group(1) not in ("cli", "main"):
        return m.group(1).replace("_", "-")
    for word in argv[1:]:
        if word in ("start", "start-fg", "master"):
            return "master"
    return comm


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def tree(root: int) -> dict[int, tuple]:
    """{pid: stat tuple} of ``root`` and all its descendants."""
    stats = {}
    for pid in all_pids():
        st = read_stat(pid)
        if st is not None:
            stats[pid] = st
    if root not in stats:
        return {}
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(st[1], []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = stats[pid]
        todo.extend(children.get(pid, ()))
    return out


def tree_memory(root: int) -> dict:
    """{"rss": bytes, "pss": bytes, "processes": n} of a process tree now."""
    t = tree(root)
    return {"rss": sum(st[4] for st in t.values()),
            "pss": sum(read_pss(pid) for pid in t),
            "processes": len(t)}


class ProcessMonitor:
    """Sample one MTA's process tree in a thread between ``start()`` and ``stop()``."""

    def __init__(self, root_pid: int | None, interval: float = 0.2, rss_every: int = 5):
        self.root = root_pid
        self.interval = interval
        self.rss_every = rss_every
        self.first: dict[int, int] = {}       # pid -> cpu ticks at first sight
        self.last: dict[int, int] = {}        # pid -> cpu ticks at last sight
        self.names: dict[int, str] = {}
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.root_children0 = 0
        self.root_children1 = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0
        self.t0 = self.t1 = 0.0

    def _sample(self, initial: bool = False) -> None:
        t = tree(self.root) if self.root else {}
        for pid, (comm, _ppid, cpu, ccpu, _rss) in t.items():
            if pid not in self.first:
                self.first[pid] = cpu if initial else 0
                self.names[pid] = daemon_name(pid, comm)
            self.last[pid] = cpu
            if pid == self.root:
                self.root_children1 = ccpu
                if initial:
                    self.root_children0 = ccpu
        rss = sum(st[4] for st in t.values())
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_procs = max(self.peak_procs, len(t))
        if initial or self._n % self.rss_every == 0:
            self.peak_pss = max(self.peak_pss, sum(read_pss(pid) for pid in t))
        self._n += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> "ProcessMonitor":
        self.t0 = time.monotonic()
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._run, name="procmon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        self.t1 = time.monotonic()
        return self.result()

    def result(self) -> dict:
        """{"cpu_by_daemon": {name: seconds}, "cpu_total": s, "peak_rss": B, ...}."""
        by: dict[str, float] = {}
        alive = set(tree(self.root)) if self.root else set()
        exited_seen = 0
        for pid, last in self.last.items():
            used = (last - self.first[pid]) / TICK
            name = self.names[pid]
            by[name] = by.get(name, 0.0) + used
            if pid not in alive:
                exited_seen += last
        reaped = self.root_children1 - self.root_children0
        unsampled = max(0, reaped - exited_seen) / TICK
        if unsampled:
            by["(exited, unsampled)"] = unsampled
        out = {
            "cpu_by_daemon": {k: round(v, 3) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
            "cpu_total": round(sum(by.values()), 3),
            "peak_rss": self.peak_rss,
            "peak_pss": self.peak_pss,
            "peak_processes": self.peak_procs,
            "seconds": round(self.t1 - self.t0, 3),
        }
        if not self.root:
            out["note"] = "no master pid: nothing measured"
        return out


def listener_pid(port: int, host: str = "127.0.0.1") -> int | None:
    """The pid of a process holding a listening TCP socket on ``port`` (None if none)."""
    inodes = set()
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    if f[1].endswith(want) and f[3] == "0A":
                        inodes.add(f[9])
        except OSError:
            continue
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    best = None
    for pid in all_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                        best = pid if best is None else min(best, pid)
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return best
