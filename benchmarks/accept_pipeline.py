#!/usr/bin/env python3
"""Durable accept through smtpd and cleanup, next to C Postfix, without an access policy.

    sudo .venv/bin/python benchmarks/accept_pipeline.py [--messages N] [--runs R]
        [--sessions 20,100] [--size BYTES] [--recipients N] [--only fastpost|postfix]
        [--profile DIR] [--dir DIR] [--fs here|journal]

What `./dev bench --scenarios accept` measures, with one difference: instead of
holding each message (``check_client_access static:HOLD``, which needs the access
policy's restrictions) both MTAs run *without a qmgr service*, so every accepted
message stays in the incoming queue and nothing competes with acceptance. The rest is
the harness's (benchmarks/harness/): the same main.cf and master.cf for both (from
mta.py, minus qmgr), smtp-source with one connection per 1 KiB message, interleaved
runs, CPU of every process of each MTA's tree, and the count checked afterwards
(``postqueue -j`` / ``fastpost queue -j``: N messages in incoming).

Postfix's cleanup then logs ``warning: unable to look up public/qmgr`` once per
message (one failed connect: a few microseconds); fastpost's cleanup warns once a
minute.

``--profile DIR`` runs py-spy (if installed) on fastpost's smtpd and cleanup workers
during the last run and writes flame graphs (SVG) there, or raw stacks (text, one
line per stack) with ``PROFILE_RAW=1`` in the environment; ``PROFILE_NATIVE=1`` adds the
compiled (Cython, C) frames (py-spy --native, which stops the process per sample).
``--syscalls DIR`` instead counts the system calls of fastpost's smtpd worker(s) in the
last run (``strace -c``, summary per worker in DIR; strace slows the worker, so that
run's rate and CPU mean nothing).

$ACCEPT_FASTPOST_SMTPD_O ("name=value ...") adds ``-o`` settings to fastpost's smtpd line
(e.g. ``fastpost_multi_client_limit=10`` for two smtpd processes at -s 20).

``--recipients N`` sends N recipients per message (smtp-source ``-r N``: ``1rcpt@example.com``
... ``Nrcpt@example.com``, the same N in every message), the real-mail case where each
RCPT names an address the previous one did not (docs/accept.md, "Session 10: a new
recipient's cost"); the default is one recipient, the issue-9 benchmark.

Each run's line ends with smtp-source's own CPU ms per message (the load generator
shares the machine's CPUs with the MTA) and, for fastpost, the voluntary/involuntary
context switches per message of its smtpd and cleanup workers (all threads) and the
number of smtpd's adaptive scheduling changes (FASTPOST_SCHED_ADAPT, util/threadprio.py:
its maillog lines) during the run, with their rate per second. Prints a table: msgs/s
median [min-max], CPU-ms per message by daemon, and the
fastpost/Postfix ratio pair by pair. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import loopfs, mta, procs  # noqa: E402
from harness.tools import run_source  # noqa: E402


def make(kind: str, root: str):
    inst = mta.make(kind, root)
    inst.services = [s for s in mta.SERVICES if s[0] != "qmgr"]
    # Without qmgr, Postfix's in_flow_delay would wait a second for flow tokens at
    # every message (qmgr hands them out); fastpost has no such throttle.
    inst.configure({"in_flow_delay": "0s"}, smtpd_args=fastpost_smtpd_options(kind))
    return inst


def start_warm(inst, sessions: int) -> None:
    """Start ``inst``, send it 300 warm-up messages at ``sessions``, empty its queue and let
    the file system settle (the start of the step-by-step tools: committer_gil.py,
    dot_steps.py)."""
    inst.start()
    run_source(inst.port, sessions, 300, 1024)
    inst.purge()
    os.sync()
    time.sleep(0.5)


def fastpost_smtpd_options(kind: str) -> tuple:
    """``-o`` settings for fastpost's smtpd line from $ACCEPT_FASTPOST_SMTPD_O
    ("name=value name=value"; an environment variable so that ab_pairs.sh can give each
    side its own, e.g. ``x=TREE:ACCEPT_FASTPOST_SMTPD_O=fastpost_multi_client_limit=10``)."""
    if kind != "fastpost":
        return ()
    return tuple(os.environ.get("ACCEPT_FASTPOST_SMTPD_O", "").split())


def add_dir_argument(ap: argparse.ArgumentParser) -> None:
    """--dir and --fs: the file system the instances (queues included) are made on."""
    ap.add_argument("--dir", default="/var/tmp",
                    help="where the instances (queues included) are made (default /var/tmp; "
                         "docs/accept.md, \"Session 7: the file system under the benchmark\")")
    ap.add_argument("--fs", choices=("here", "journal"), default="here",
                    help="'journal': make a fresh journalled ext4 (loop device, no discard) "
                         "in --dir for this run and remove it afterwards "
                         "(benchmarks/harness/loopfs.py); 'here' (default): --dir as it is")


def root_workdir(prefix: str, directory: str, why: str, fs: str = "here") -> str | None:
    """A new directory for private instances under ``directory`` (on a fresh journalled
    ext4 made there when ``fs`` is "journal"), readable by their daemons' users; None
    (and the reason on stderr) when not run as root. Prints which file system it is."""
    if os.geteuid() != 0:
        print(f"run as root ({why})", file=sys.stderr)
        return None
    if fs == "journal":
        try:
            directory = loopfs.journalled_ext4(directory)
        except RuntimeError as exc:
            print(f"cannot make the journalled file system: {exc}", file=sys.stderr)
            return None
    print(f"file system under the instances: {loopfs.describe(directory)}", file=sys.stderr)
    base = tempfile.mkdtemp(prefix=prefix, dir=directory)
    os.chmod(base, 0o755)  # mail_owner must reach the instances
    return base


def one_run(inst, sessions: int, messages: int, size: int, profile: str | None = None,
            syscalls: str | None = None, recipients: int = 1) -> dict:
    inst.purge()
    # The purge (and the other MTA's run before it) left dirty pages and a journal to
    # write back: flush them before the clock starts, so that no run pays for another's.
    os.sync()
    cs0 = switches(inst)
    log0 = os.path.getsize(inst.maillog) if inst.kind == "fastpost" else 0
    mon = procs.ProcessMonitor(inst.master_pid()).start()
    spies = []
    if profile:
        spies = start_pyspy(inst, profile, sessions)
    if syscalls:
        spies = start_strace(inst, syscalls, sessions)
    src = run_source(inst.port, sessions, messages, size, extra=rcpt_options(recipients))
    res = mon.stop()
    cs1 = switches(inst)
    cs = {name: tuple(b - a for a, b in zip(cs0[name], cs1[name])) for name in cs0 if name in cs1}
    sched = policy_changes(inst, log0)
    for p in spies:
        if syscalls:
            p.send_signal(2)  # strace -c prints its summary when interrupted
        p.wait(timeout=60)
    counts = inst.queue_counts()
    incoming = counts.get("incoming", 0)
    ok = src["rc"] == 0 and not src["complaints"] and incoming == messages
    return {"rate": messages / src["seconds"], "ok": ok, "counts": counts,
            "complaints": src["complaints"][:3], "cpu": res["cpu_by_daemon"],
            "cpu_total": res["cpu_total"], "client_cpu": src["cpu"], "switches": cs,
            "sched": sched, "seconds": src["seconds"]}


def policy_changes(inst, offset: int) -> int | None:
    """smtpd's adaptive scheduling changes logged since ``offset`` in the maillog
    (util/threadprio.py BusySwitch: one line per change); None for C Postfix."""
    if inst.kind != "fastpost":
        return None
    with open(inst.maillog, "rb") as f:
        f.seek(offset)
        text = f.read()
    return text.count(b": SCHED_BATCH at ") + text.count(b": SCHED_OTHER at ")


def switches(inst) -> dict[str, tuple[int, int]]:
    """{daemon: (voluntary, involuntary context switches)} summed over the threads of
    fastpost's smtpd and cleanup workers ({} for C Postfix, whose smtpd processes come
    and go during a run)."""
    out: dict[str, tuple[int, int]] = {}
    if inst.kind != "fastpost":
        return out
    for pid, (comm, *_rest) in procs.tree(inst.master_pid()).items():
        name = procs.daemon_name(pid, comm)
        if name in ("smtpd", "cleanup"):
            stats = procs.thread_stats(pid).values()
            v, i = out.get(name, (0, 0))
            out[name] = (v + sum(t[3] for t in stats), i + sum(t[4] for t in stats))
    return out


def rcpt_options(recipients: int) -> tuple:
    """smtp-source's options for ``recipients`` per message (none for the default one)."""
    return ("-r", str(recipients)) if recipients > 1 else ()


def start_pyspy(inst, out: str, sessions: int) -> list:
    exe = shutil.which("py-spy")
    if exe is None:
        print("py-spy not installed: no profile", file=sys.stderr)
        return []
    os.makedirs(out, exist_ok=True)
    tree = procs.tree(inst.master_pid())
    spies = []
    # fastpost's workers are forked on the first connection: make sure they exist
    for pid, (comm, ppid, *_rest) in tree.items():
        name = procs.daemon_name(pid, comm)
        if name in ("smtpd", "cleanup"):
            raw = os.environ.get("PROFILE_RAW") == "1"  # stacks as text, for scripts
            path = os.path.join(out, f"{name}-{pid}-s{sessions}.{'txt' if raw else 'svg'}")
            # PROFILE_NATIVE=1: Cython/C frames too (py-spy must stop the process for
            # each sample then: --native and --nonblocking exclude each other)
            native = os.environ.get("PROFILE_NATIVE") == "1"
            spies.append(subprocess.Popen([exe, "record", "-p", str(pid), "-o", path, "-d", "8",
                                           "-r", "200",
                                           *(["--native"] if native else ["--nonblocking"]),
                                           *(["-f", "raw"] if raw else [])],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def start_strace(inst, out: str, sessions: int) -> list:
    exe = shutil.which("strace")
    if exe is None:
        print("strace not installed: no system call counts", file=sys.stderr)
        return []
    os.makedirs(out, exist_ok=True)
    tracers = []
    for pid, (comm, ppid, *_rest) in procs.tree(inst.master_pid()).items():
        if procs.daemon_name(pid, comm) == "smtpd":
            path = os.path.join(out, f"smtpd-{pid}-s{sessions}.txt")
            tracers.append(subprocess.Popen([exe, "-c", "-o", path, "-p", str(pid)],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
    time.sleep(0.5)  # attached before the load starts
    return tracers


def fmt_cpu(cpu: dict, messages: int) -> str:
    parts = sorted(cpu.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {1000 * sec / messages:.2f}" for name, sec in parts if sec > 0.005)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", default="20,100")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--recipients", type=int, default=1,
                    help="recipients per message (smtp-source -r; default 1)")
    ap.add_argument("--only", choices=("fastpost", "postfix"))
    ap.add_argument("--profile", help="directory for py-spy flame graphs of the last run")
    ap.add_argument("--syscalls", help="directory for strace -c counts of smtpd in the last run")
    ap.add_argument("--keep", action="store_true")
    add_dir_argument(ap)
    args = ap.parse_args()
    base = root_workdir("fp-accept-", args.dir, "private Postfix instances need it", args.fs)
    if base is None:
        return 1
    kinds = [k for k in ("postfix", "fastpost") if args.only in (None, k)]
    insts = {k: make(k, os.path.join(base, k)) for k in kinds}
    results: dict = {}
    try:
        for inst in insts.values():
            inst.start()
        for sessions in [int(s) for s in args.sessions.split(",")]:
            for kind, inst in insts.items():  # warm up: workers forked, caches filled
                run_source(inst.port, sessions, 200, args.size,
                           extra=rcpt_options(args.recipients))
            for r in range(args.runs):
                for kind, inst in insts.items():
                    prof = args.profile if (args.profile and kind == "fastpost"
                                            and r == args.runs - 1) else None
                    sc = args.syscalls if (args.syscalls and kind == "fastpost"
                                           and r == args.runs - 1) else None
                    res = one_run(inst, sessions, args.messages, args.size, prof, sc,
                                  args.recipients)
                    results.setdefault((kind, sessions), []).append(res)
                    print(f"{kind:8} -s {sessions:<3} run {r + 1}: {res['rate']:8,.0f} msgs/s "
                          f"{'ok' if res['ok'] else 'FAILED ' + str(res['counts']) + str(res['complaints'])}"
                          f"  cpu-ms/msg {1000 * res['cpu_total'] / args.messages:.2f} "
                          f"({fmt_cpu(res['cpu'], args.messages)}) "
                          f"smtp-source {1000 * res['client_cpu'] / args.messages:.3f}"
                          + "".join(f" {name} cs {v / args.messages:.2f}/{i / args.messages:.2f}"
                                    for name, (v, i) in sorted(res["switches"].items()))
                          + (f" sched-changes {res['sched']} ({res['sched'] / res['seconds']:.2f}/s)"
                             if res["sched"] is not None else ""),
                          file=sys.stderr)
    finally:
        for inst in insts.values():
            inst.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\naccept to durable queue (incoming, no qmgr), {args.size} bytes, "
          f"{args.recipients} recipient(s) per message, "
          f"{args.messages} messages x {args.runs} runs, one connection per message")
    print(f"{'sessions':>8} {'C Postfix msgs/s':>22} {'fastpost msgs/s':>22} {'ratio':>14} "
          f"{'CPU-ms/msg P':>12} {'CPU-ms/msg f':>12}")
    for sessions in [int(s) for s in args.sessions.split(",")]:
        row = [f"{sessions:>8}"]
        rates = {}
        for kind in ("postfix", "fastpost"):
            runs = results.get((kind, sessions), [])
            rates[kind] = [r["rate"] for r in runs]
            if runs:
                row.append(f"{statistics.median(rates[kind]):9,.0f} [{min(rates[kind]):,.0f}-{max(rates[kind]):,.0f}]")
            else:
                row.append(f"{'-':>22}")
        if rates.get("postfix") and rates.get("fastpost"):
            ratios = [f / p for f, p in zip(rates["fastpost"], rates["postfix"])]
            row.append(f"{statistics.median(ratios):5.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
        else:
            row.append(f"{'-':>14}")
        for kind in ("postfix", "fastpost"):
            runs = results.get((kind, sessions), [])
            cpu = statistics.median([1000 * r["cpu_total"] / args.messages for r in runs]) if runs else 0
            row.append(f"{cpu:12.2f}")
        print(" ".join(row))
    bad = [k for k, runs in results.items() if not all(r["ok"] for r in runs)]
    if bad:
        print(f"runs that failed their count: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
