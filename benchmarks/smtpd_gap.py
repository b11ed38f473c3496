#!/usr/bin/env python3
"""smtpd alone and in the pipeline: where its extra CPU per message goes.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/smtpd_gap.py [--messages 5000]
        [--sessions 20] [--rounds 5] [--modes null,fake,real,pipeline] [--commit-ms 0]
        [--no-perf] [--strace DIR] [--fs journal] [--dir /var/tmp]

Postfix counterpart: none (a fastpost measuring tool; docs/accept.md "Session 9: smtpd
alone and in the pipeline (branch smtpdgap)"). Under smtp-source -s S (1 KiB messages,
one connection each) the same smtpd code runs four ways, one run of each mode per round,
rounds interleaved so that the machine's load falls on every mode alike:

    null      smtpd.standalone with the NullSink: nothing stored, no other process
    fake      smtpd.standalone with the real CleanupSink, talking to a fake cleanup in
              another process (this file, ``--serve-fake``) that answers OPEN with an ID
              and END with 250 as soon as it has read them (no disk, no parsing beyond
              the frames)
    fakewait  fake, but that fake holds the END answers and sends them every ``--commit-ms``
              ms (default 2), as a group commit would: cleanup's waits without its CPU
    real      smtpd.standalone with the CleanupSink, talking to the instance's real
              cleanup (public/cleanup): the pipeline's cleanup and store, but smtpd
              outside the master's skeleton
    pipeline  the instance's own smtpd (master, multi skeleton), as accept_pipeline.py
              --only fastpost runs it

Every standalone smtpd reads the instance's main.cf, serves the listening socket through
4 descriptors and writes its log lines to a file once per loop turn, as the daemon does,
so null/fake/real differ from each other only by the sink, and real from pipeline only
by the skeleton. The instance (qmgr off, as in accept_pipeline.py) is made on --dir,
on a fresh journalled ext4 with ``--fs journal``.

Per message, for the smtpd process (all its threads): CPU user and system ms (from
/proc/PID/stat), minor page faults (the same), voluntary and involuntary context
switches (/proc/PID/task/*/status),
read- and write-class system calls (/proc/PID/io syscr, syscw), and unless --no-perf,
counted by ``perf stat`` tracepoints: epoll_pwait + epoll_wait calls (the loop's turns)
and all system calls (``--by-syscall``: each system call's count too); besides, msgs/s and the CPU per message of the other side (the
fake, or cleanup). Medians and [ranges] over the rounds. ``--cpu-group`` puts each run's smtpd and its
cleanup (or fake) into one cpu cgroup of their own, so that in every mode they share
one scheduling group, as the pipeline's do in the master's session (the kernel's
autogroups otherwise group by session; see the docs). ``--strace DIR``: after the
rounds, one more run of each mode with ``strace -c -f`` on its smtpd, the summary in
DIR/MODE.txt (strace slows smtpd: only the counts of that run mean anything). Each mode is warmed with 300
messages first. Must run as root (the instance's daemons change user). Not part of the
test suite. Fails with a message on stderr when smtp-source reports errors or a daemon
does not start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import accept_pipeline  # noqa: E402
from harness import procs  # noqa: E402
from harness.tools import run_source  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MODES = ("null", "fake", "fakewait", "real", "pipeline")
DEFAULT_MODES = ("null", "fake", "real", "pipeline")
PERF_EVENTS = ("syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_epoll_wait",
               "raw_syscalls:sys_enter")


# -- the fake cleanup ------------------------------------------------------------------

def serve_fake(path: str, commit_ms: float) -> None:
    """A cleanup that answers at once: OPEN -> {t, id}, END -> {t, c 250, id}."""
    import asyncio

    import uvloop

    from fastpost.mail import attr
    from fastpost.mail import cleanup_proto as P

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    counter = [0x100000]
    hello = attr.encode({"protocol": P.PROTOCOL})

    class Conn(asyncio.BufferedProtocol):
        def __init__(self):
            self.decoder = attr.FrameDecoder(attr.DEFAULT_MAX_FRAME, attr.DEFAULT_MAX_DEPTH)
            self.ids: dict[int, str] = {}
            self.held: list[dict] = []
            self.transport = None

        def connection_made(self, transport):
            self.transport = transport
            transport.write(hello)

        def get_buffer(self, sizehint):
            return self.decoder.get_buffer(sizehint)

        def buffer_updated(self, nbytes):
            self.decoder.buffer_updated(nbytes)
            out = []
            while (frame := self.decoder.next_frame()) is not None:
                op = frame.get("o")
                t = frame.get("t")
                if op == P.OPEN:
                    counter[0] += 1
                    qid = f"4F{counter[0]:X}"
                    self.ids[t] = qid
                    out.append({"t": t, "id": qid})
                elif op == P.END:
                    reply = {"t": t, "c": 250, "id": self.ids.pop(t, "")}
                    if commit_ms > 0:
                        if not self.held:
                            loop.call_later(commit_ms / 1000.0, self.commit)
                        self.held.append(reply)
                    else:
                        out.append(reply)
                elif op == P.ABORT:
                    self.ids.pop(t, None)
            if out:
                self.transport.write(attr.encode_many(out))

        def commit(self):
            held, self.held = self.held, []
            if held and self.transport is not None and not self.transport.is_closing():
                self.transport.write(attr.encode_many(held))

        def connection_lost(self, exc):
            self.transport = None

    async def main():
        server = await loop.create_unix_server(Conn, path)
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        await stop
        server.close()

    loop.run_until_complete(main())


# -- measuring -------------------------------------------------------------------------

def counters(pids: list[int]) -> dict:
    """Summed counters of these processes (all threads)."""
    tot = {"user": 0, "sys": 0, "vcs": 0, "ivcs": 0, "syscr": 0, "syscw": 0, "minflt": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            tot["minflt"] += int(f[7])  # minor page faults
            tot["user"] += int(f[11])
            tot["sys"] += int(f[12])
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as fh:
                    for line in fh:
                        if line.startswith("voluntary_ctxt_switches"):
                            tot["vcs"] += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            tot["ivcs"] += int(line.split()[1])
            with open(f"/proc/{pid}/io") as fh:
                for line in fh:
                    k, _, v = line.partition(":")
                    if k in ("syscr", "syscw"):
                        tot[k] += int(v)
        except OSError:
            pass
    return tot


def per_thread(pids: list[int]) -> dict:
    """{(pid, tid): (name, cpu ticks, voluntary cs, involuntary cs)} of these processes."""
    return {(pid, tid): (name, user + system, vol, invol)
            for pid in pids
            for tid, (name, user, system, vol, invol) in procs.thread_stats(pid).items()}


def cpu_ticks(pids: list[int]) -> int:
    n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            n += int(f[11]) + int(f[12])
        except OSError:
            pass
    return n


def start_perf(pids: list[int], out: str, by_syscall: bool = False):
    if not shutil.which("perf"):
        return None
    events = ",".join(PERF_EVENTS) + (",syscalls:sys_enter_*" if by_syscall else "")
    return subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", events,
                             "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(proc, out: str) -> dict:
    if proc is None:
        return {}
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    res = {}
    try:
        with open(out) as fh:
            for line in fh:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[2].startswith(("syscalls:", "raw_syscalls:")):
                    try:
                        res[parts[2]] = int(parts[0])
                    except ValueError:
                        pass
    except OSError:
        pass
    return res


CPU_CGROUP = "/sys/fs/cgroup/cpu"


def join_group(group: str, pids: list[int]) -> None:
    """Move every thread of these processes into the cpu cgroup ``group``."""
    for pid in pids:
        for tid in procs.thread_ids(pid):
            try:
                with open(os.path.join(group, "tasks"), "w") as fh:
                    fh.write(str(tid))
            except OSError as exc:
                if os.path.exists(f"/proc/{pid}/task/{tid}"):
                    print(f"smtpd_gap: thread {tid} of {pid} not moved to {group}: {exc}",
                          file=sys.stderr)


def leave_group(group: str) -> None:
    """Move the group's threads back to the root cpu cgroup and remove the group."""
    try:
        with open(os.path.join(group, "tasks")) as fh:
            tids = fh.read().split()
    except OSError:
        return
    for tid in tids:
        try:
            with open(os.path.join(CPU_CGROUP, "tasks"), "w") as fh:
                fh.write(tid)
        except OSError:
            pass
    try:
        os.rmdir(group)
    except OSError as exc:
        print(f"smtpd_gap: cannot remove {group}: {exc}", file=sys.stderr)


def daemon_pids(master: int, name: str) -> list[int]:
    return [pid for pid, st in procs.tree(master).items()
            if procs.daemon_name(pid, st[0]) == name]


def wait_port_file(path: str, proc, what: str) -> int:
    for _ in range(300):
        if os.path.exists(path):
            with open(path) as fh:
                return int(fh.read())
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES),
                    help=f"some of {','.join(MODES)} (default {','.join(DEFAULT_MODES)})")
    ap.add_argument("--commit-ms", type=float, default=2.0,
                    help="fakewait's fake cleanup sends its END answers every this many ms "
                         "(default 2)")
    ap.add_argument("--by-syscall", action="store_true",
                    help="perf counts every sys_enter tracepoint too: calls per message by name")
    ap.add_argument("--shared-log", action="store_true",
                    help="the standalone smtpds append to the instance's maillog (as its own "
                         "smtpd and cleanup do) instead of a file each")
    ap.add_argument("--setsid", action="store_true",
                    help="start each standalone smtpd in a session of its own (setsid: its own "
                         "scheduler autogroup, as the master's daemons have theirs), not in this "
                         "tool's, which smtp-source shares")
    ap.add_argument("--cpu-group", action="store_true",
                    help="put smtpd and its cleanup (or fake) of each run into one cpu cgroup "
                         f"of their own ({CPU_CGROUP}/fp-smtpd-gap-PID, removed at the end): "
                         "one scheduling group for both in every mode, as the master's "
                         "session gives the pipeline's")
    ap.add_argument("--no-perf", action="store_true", help="no perf stat (no loop-turn counts)")
    ap.add_argument("--strace", metavar="DIR",
                    help="one extra run per mode under strace -c -f; summaries in DIR/MODE.txt")
    ap.add_argument("--serve-fake", help=argparse.SUPPRESS)
    accept_pipeline.add_dir_argument(ap)
    args = ap.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake, args.commit_ms)
        return 0
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            print(f"unknown mode {m!r} (known: {', '.join(MODES)})", file=sys.stderr)
            return 2
    base = accept_pipeline.root_workdir("fp-smtpd-gap-", args.dir,
                                        "the instance's daemons change user", args.fs)
    if base is None:
        return 1
    inst = accept_pipeline.make("fastpost", os.path.join(base, "fastpost"))
    children: dict[str, subprocess.Popen] = {}
    ports: dict[str, int] = {}
    results: dict[str, list[dict]] = {m: [] for m in modes}
    group = None
    try:
        if args.cpu_group:
            group = os.path.join(CPU_CGROUP, f"fp-smtpd-gap-{os.getpid()}")
            os.mkdir(group)
        inst.start()
        master = inst.master_pid()
        py = sys.executable
        fake_socks = {"fake": os.path.join(base, "fake-cleanup"),
                      "fakewait": os.path.join(base, "fake-cleanup-wait")}
        for m, path in fake_socks.items():
            if m in modes:
                children[f"{m}cleanup"] = subprocess.Popen(
                    [py, os.path.abspath(__file__), "--serve-fake", path,
                     "--commit-ms", str(args.commit_ms if m == "fakewait" else 0)],
                    start_new_session=args.setsid)
                for _ in range(200):
                    if os.path.exists(path):
                        break
                    time.sleep(0.05)
        for m in modes:
            if m == "pipeline":
                ports[m] = inst.port
                continue
            sink = {"null": ["--null"], "fake": ["--cleanup", fake_socks["fake"]],
                    "fakewait": ["--cleanup", fake_socks["fakewait"]],
                    "real": ["--cleanup", os.path.join(inst.spool, "public", "cleanup")]}[m]
            pf = os.path.join(base, f"{m}.port")
            os.makedirs(os.path.join(base, f"{m}.spool"))
            children[m] = subprocess.Popen(
                [py, "-m", "fastpost.daemons.smtpd.standalone", "-c", inst.etc,
                 "-l", "127.0.0.1:0", "-d", os.path.join(base, f"{m}.spool"),
                 "--accept-handles", "4",
                 "--maillog", inst.maillog if args.shared_log else os.path.join(base, f"{m}.log"),
                 "--port-file", pf, *sink], start_new_session=args.setsid)
            ports[m] = wait_port_file(pf, children[m], f"standalone smtpd ({m})")
        for m in modes:
            src = run_source(ports[m], args.sessions, 300, 1024)
            if src["rc"] != 0 or src["complaints"]:
                raise RuntimeError(f"warm-up of {m}: {src['complaints'][:3]}")
        for r in range(args.rounds):
            for m in modes:
                if m in ("real", "pipeline"):
                    inst.purge()
                os.sync()
                smtpd = daemon_pids(master, "smtpd") if m == "pipeline" else [children[m].pid]
                other = (daemon_pids(master, "cleanup") if m in ("real", "pipeline") else
                         [children[f"{m}cleanup"].pid] if m.startswith("fake") else [])
                if group is not None:
                    join_group(group, smtpd + other)
                perf_out = os.path.join(base, f"perf-{m}-{r}.csv")
                perf = None if args.no_perf else start_perf(smtpd, perf_out, args.by_syscall)
                if perf is not None:
                    time.sleep(0.3)  # perf attaches
                c0, o0, t0 = counters(smtpd), cpu_ticks(other), per_thread(smtpd)
                la = os.getloadavg()[0]
                src = run_source(ports[m], args.sessions, args.messages, 1024)
                c1, o1, t1 = counters(smtpd), cpu_ticks(other), per_thread(smtpd)
                ev = stop_perf(perf, perf_out)
                if src["rc"] != 0 or src["complaints"]:
                    print(f"round {r + 1} {m}: smtp-source: {src['complaints'][:3]}", file=sys.stderr)
                    continue
                n = args.messages
                row = {k: (c1[k] - c0[k]) / n for k in c0}
                row["user"] *= 1000 / TICK
                row["sys"] *= 1000 / TICK
                row["cpu"] = row["user"] + row["sys"]
                row["other"] = 1000 * (o1 - o0) / TICK / n
                row["rate"] = n / src["seconds"]
                row["load"] = la
                row["procs"] = len(smtpd)
                if r == 0:
                    groups = {}
                    for what, pids in (("smtpd", smtpd), ("other", other), ("tool", [os.getpid()])):
                        for pid in pids[:1]:
                            try:
                                with open(f"/proc/{pid}/autogroup") as fh:
                                    groups[what] = fh.read().split()[0]
                                with open(f"/proc/{pid}/cgroup") as fh:
                                    cpu = [ln.split(":", 2)[2].strip() for ln in fh
                                           if ln.split(":", 2)[1] == "cpu"]
                                if cpu and cpu[0] != "/":  # autogroups apply in the root only
                                    groups[what] = "cgroup " + cpu[0]
                            except (OSError, IndexError):
                                pass
                    print(f"    scheduling groups: {groups}")
                if ev:
                    row["turns"] = (ev.get(PERF_EVENTS[0], 0) + ev.get(PERF_EVENTS[1], 0)) / n
                    row["syscalls"] = ev.get(PERF_EVENTS[2], 0) / n
                results[m].append(row)
                if args.by_syscall and ev:
                    named = sorted(((v / n, k.split("sys_enter_", 1)[1]) for k, v in ev.items()
                                    if k.startswith("syscalls:") and v), reverse=True)
                    row["by_syscall"] = dict((k, v) for v, k in named)
                    print("    " + ", ".join(f"{k} {v:.2f}" for v, k in named if v >= 0.005))
                busy = []
                for key, (name, cpu, v, iv) in sorted(t1.items()):
                    _, cpu0, v0, iv0 = t0.get(key, (name, 0, 0, 0))
                    if cpu > cpu0 or v > v0 or iv > iv0:
                        busy.append((key, name, cpu, v, iv, cpu0, v0, iv0))
                if len(busy) > len(smtpd):  # threads besides the loops worked: say which
                    for key, name, cpu, v, iv, cpu0, v0, iv0 in busy:
                        print(f"    smtpd thread {key[1] - key[0]:+d} ({name}): "
                              f"cpu {1000 * (cpu - cpu0) / TICK / args.messages:.3f} ms/msg, "
                              f"vcs {(v - v0) / args.messages:.2f} ivcs {(iv - iv0) / args.messages:.2f}")
                print(f"round {r + 1} {m:8s} {row['rate']:6,.0f} msgs/s  smtpd cpu {row['cpu']:.3f} "
                      f"(u {row['user']:.3f} s {row['sys']:.3f})  vcs {row['vcs']:.2f} "
                      f"ivcs {row['ivcs']:.2f}  turns {row.get('turns', float('nan')):.2f}  "
                      f"syscalls {row.get('syscalls', float('nan')):.1f}  other {row['other']:.3f}  "
                      f"load {la:.1f}  smtpd processes {len(smtpd)}", flush=True)
        if args.strace:
            os.makedirs(args.strace, exist_ok=True)
            for m in modes:
                if m in ("real", "pipeline"):
                    inst.purge()
                smtpd = daemon_pids(master, "smtpd") if m == "pipeline" else [children[m].pid]
                tracers = [subprocess.Popen(["strace", "-c", "-f", "-o",
                                             os.path.join(args.strace, f"{m}.txt"), "-p", str(pid)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                           for pid in smtpd[:1]]
                time.sleep(1)
                run_source(ports[m], args.sessions, args.messages, 1024)
                for t in tracers:
                    t.send_signal(signal.SIGINT)
                    t.wait(timeout=60)
        print()
        cols = [("rate", "msgs/s", "{:,.0f}"), ("cpu", "CPU ms", "{:.3f}"),
                ("user", "user", "{:.3f}"), ("sys", "sys", "{:.3f}"),
                ("vcs", "vol cs", "{:.2f}"), ("ivcs", "invol cs", "{:.2f}"),
                ("turns", "loop turns", "{:.2f}"), ("syscalls", "syscalls", "{:.1f}"),
                ("syscr", "syscr", "{:.1f}"), ("syscw", "syscw", "{:.1f}"),
                ("minflt", "minor faults", "{:.2f}"),
                ("other", "other ms", "{:.3f}"), ("load", "load", "{:.1f}")]
        print("| mode (runs) | " + " | ".join(c[1] for c in cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for m in modes:
            rows = results[m]
            if not rows:
                continue
            cells = []
            for key, _, fmt in cols:
                vals = [row[key] for row in rows if key in row]
                if not vals:
                    cells.append("–")
                    continue
                cells.append(f"{fmt.format(statistics.median(vals))} "
                             f"[{fmt.format(min(vals))}–{fmt.format(max(vals))}]")
            print(f"| {m} ({len(rows)}) | " + " | ".join(cells) + " |")
    except RuntimeError as exc:
        print(f"smtpd_gap: {exc}", file=sys.stderr)
        return 1
    finally:
        if group is not None:
            leave_group(group)
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in children.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
