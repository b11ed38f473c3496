#!/usr/bin/env python3
"""Accept throughput: fastpost's smtpd next to C Postfix, measured with smtp-source.

    sudo .venv/bin/python benchmarks/smtpd_accept.py [--messages N] [--runs R]
        [--sessions 20,100] [--workers W] [--size BYTES] [--sink file|queue|null]
        [--only fastpost|postfix]

Both servers run on this machine in one interleaved run, each on its own loopback
port, and Postfix's own smtp-source sends N messages of --size bytes (1 KiB), one
connection per message, with -s parallel sessions:

  C Postfix   a private instance (own config, queue and ports; needs root) that
              accepts every message into its queue, durably, and puts it on hold
              (smtpd_data_restrictions = check_client_access static:HOLD), so no
              delivery runs during the measurement.
  fastpost    fastpost.daemons.smtpd.standalone with W worker processes and either
              (--sink file) FileTestSink writing one file per message, fsync()ed
              before the 250, or (--sink queue) QueueSink: the log-structured queue
              store, each worker a committer with group commit (one fdatasync per
              batch) - what smtpd runs under the master until cleanup exists - or
              (--sink null) NullSink: nothing stored, every message "queued" at once,
              i.e. smtpd's own ceiling (the "smtpd alone" row beside
              accept_pipeline.py's whole path; with --only fastpost no Postfix and
              no root are needed).

Printed per scenario: messages/s (median of the runs), server CPU-ms per message
(user+system of every process of that server, including exited children) and the
fastpost/Postfix ratio. Not part of the test suite (no timing assertions there).

Diagnostics: exits 1 with a message when smtp-source or postfix is missing, when not
root, or when smtp-source reports errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on port {port}")
            time.sleep(0.05)


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of root_pid, its live descendants and its reaped children."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        stats[pid] = fields
        children.setdefault(int(fields[1]), []).append(pid)
    total = 0.0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is None:
            continue
        # fields after ")": state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        todo += children.get(pid, [])
    return total / TICK


def smtp_source(port: int, messages: int, sessions: int, size: int) -> float:
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    start = time.perf_counter()
    r = subprocess.run([exe, "-l", str(size), "-m", str(messages), "-s", str(sessions),
                        "-f", "sender@example.org", "-t", "rcpt@example.net",
                        f"127.0.0.1:{port}"], capture_output=True, timeout=600)
    elapsed = time.perf_counter() - start
    if r.returncode != 0 or r.stderr.strip():
        raise SystemExit(f"smtp-source failed: {r.stderr.decode(errors='replace')[:500]}")
    return elapsed


class PostfixInstance:
    """A private C Postfix that holds everything it accepts."""

    def __init__(self, base: str, port: int):
        self.base = base
        self.port = port
        self.etc = os.path.join(base, "etc")
        os.makedirs(self.etc)
        for d in ("spool", "data"):
            os.makedirs(os.path.join(base, d))
        shutil.chown(os.path.join(base, "data"), "postfix")
        with open("/etc/postfix/master.cf", encoding="utf-8") as fh:
            master = fh.read()
        lines = []
        for line in master.splitlines():
            words = line.split()
            if words and not line.startswith((" ", "\t", "#")) and len(words) >= 8:
                if words[0] == "smtp" and words[1] == "inet":
                    words[0] = str(port)
                if words[4] in ("y", "-"):
                    words[4] = "n"  # no chroot (no copied /etc files needed)
                line = "  ".join(words)
            lines.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.join(self.etc, "main.cf"), "w", encoding="utf-8") as fh:
            fh.write(f"""compatibility_level = 3.7
queue_directory = {base}/spool
data_directory = {base}/data
myhostname = pfx.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
alias_maps =
alias_database =
smtpd_data_restrictions = check_client_access static:HOLD
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
syslog_name = pfxbench
""")
        self.master_pid = 0

    def start(self) -> None:
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True, capture_output=True)
        wait_port(self.port)
        with open(os.path.join(self.base, "spool", "pid", "master.pid"), encoding="ascii") as fh:
            self.master_pid = int(fh.read().strip())

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)


class FastpostInstance:
    """fastpost's standalone smtpd with the fsyncing file sink."""

    def __init__(self, base: str, port: int, workers: int, sink: str = "file"):
        self.base = base
        self.port = port
        self.workers = workers
        self.sink = sink
        self.etc = os.path.join(base, "etc")
        os.makedirs(self.etc)
        with open(os.path.join(self.etc, "main.cf"), "w", encoding="utf-8") as fh:
            fh.write(f"""compatibility_level = 3.7
myhostname = fp.bench.test
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
queue_directory = {base}
smtpd_client_connection_count_limit = 0
""")
        self.proc = None

    @property
    def master_pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastpost.daemons.smtpd.standalone", "-c", self.etc,
             "-l", f"127.0.0.1:{self.port}", "-d", os.path.join(self.base, "spool"),
             {"file": "--fsync", "queue": "--queue", "null": "--null"}[self.sink], "--quiet",
             "--workers", str(self.workers)], cwd=ROOT)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def measure(mta, messages: int, sessions: int, size: int) -> tuple[float, float]:
    cpu0 = tree_cpu(mta.master_pid)
    elapsed = smtp_source(mta.port, messages, sessions, size)
    time.sleep(0.5)  # let the last messages' processes finish their accounting
    cpu1 = tree_cpu(mta.master_pid)
    return messages / elapsed, (cpu1 - cpu0) * 1000 / messages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", default="20,100")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--sink", choices=("file", "queue", "null"), default="file",
                    help="fastpost's store: one fsync()ed file per message, the queue "
                         "store (group commit), or none (NullSink: smtpd alone)")
    ap.add_argument("--only", choices=("fastpost", "postfix"), default=None,
                    help="measure one server only")
    args = ap.parse_args()
    with_postfix = args.only != "fastpost"
    with_fastpost = args.only != "postfix"
    if with_postfix and os.geteuid() != 0:
        print("run as root (C Postfix needs it), or use --only fastpost", file=sys.stderr)
        return 1
    for tool in ("postfix", "smtp-source") if with_postfix else ("smtp-source",):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"{tool} is not installed (apt-get install postfix)", file=sys.stderr)
            return 1
    sessions = [int(s) for s in args.sessions.split(",")]
    base = tempfile.mkdtemp(prefix="fp-accept-")
    os.chmod(base, 0o755)  # the postfix user must reach its data_directory
    mtas = []
    if with_postfix:
        mtas.append(("postfix", PostfixInstance(os.path.join(base, "postfix"), free_port())))
    if with_fastpost:
        mtas.append(("fastpost", FastpostInstance(os.path.join(base, "fastpost"), free_port(),
                                                  args.workers, args.sink)))
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    started = []
    try:
        for _, mta in mtas:
            mta.start()
            started.append(mta)
        # Warm up both (process pools, imports, page cache).
        for _, mta in mtas:
            smtp_source(mta.port, 200, 20, args.size)
        for _ in range(args.runs):
            for s in sessions:
                for name, mta in mtas:
                    results.setdefault((name, s), []).append(
                        measure(mta, args.messages, s, args.size))
    finally:
        for mta in reversed(started):
            mta.stop()
    store = {"file": "fsync per message", "queue": "queue store, group commit",
             "null": "null sink (nothing stored)"}[args.sink]
    print(f"\n{args.messages} messages of {args.size} bytes per run, one connection each, "
          f"median of {args.runs} runs; fastpost: {args.workers} workers, {store}")
    print(f"{'scenario':14} {'Postfix msg/s':>14} {'fastpost msg/s':>15} {'ratio':>6} "
          f"{'Postfix CPU-ms':>15} {'fastpost CPU-ms':>16}")
    nan = float("nan")
    for s in sessions:
        row = {}
        for name in ("postfix", "fastpost"):
            runs = results.get((name, s))
            row[name] = ((statistics.median(r for r, _ in runs),
                          statistics.median(c for _, c in runs)) if runs else (nan, nan))
        (p_rate, p_cpu), (f_rate, f_cpu) = row["postfix"], row["fastpost"]

        def num(x, fmt):
            return "-" if x != x else format(x, fmt)  # (nan: that server did not run)

        print(f"{'-s ' + str(s):14} {num(p_rate, ',.0f'):>14} {num(f_rate, ',.0f'):>15} "
              f"{num(f_rate / p_rate, '.2f') + ('x' if p_rate == p_rate else ''):>6} {num(p_cpu, '.2f'):>15} "
              f"{num(f_cpu, '.2f'):>16}")
        if with_fastpost:
            print(f"{'':14} fastpost runs (msgs/s, CPU-ms): " + ", ".join(
                f"{r:,.0f}/{c:.3f}" for r, c in results[("fastpost", s)]))
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
