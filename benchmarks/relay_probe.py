#!/usr/bin/env python3
"""Per-message reference cycles along the relay path, daemon by daemon.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/relay_cycles.py \
        [--messages N] [--sessions 20] [--dir /var/tmp]

A private fastpost instance (the benchmark harness's relay configuration: smtpd,
cleanup, qmgr, trivial-rewrite, the smtp agent, relayhost = a Postfix smtp-sink) is
started by this script's wrapper around ``fastpost start``: the cyclic garbage collector
is off (``gc.disable()``) and ``gc.DEBUG_SAVEALL`` is set before the master forks, so
every worker inherits both. Each worker also runs a small probe thread (started where
the master's fork hands over to the worker) that, when asked through a file, runs
``gc.collect()`` and writes how many unreachable objects ``gc.garbage`` holds, by type.

smtp-source sends N messages (one connection each, 1 KiB), the sink counts them, every
worker is probed; then 2N more, probed again. A daemon whose unreachable objects grow
with the messages (after N against after 3N) has a per-message reference cycle; start-up
garbage stays constant. Printed per daemon: unreachable objects after N and after 3N,
per message, and the types that grew. The method is glue9's (docs/accept.md, "Session 9:
the cleanup-sink glue"), applied to the whole relay path.

Root only (the instance runs as the harness runs it). Fails loudly when a worker does
not answer its probe within 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import mta, tools  # noqa: E402

#: The wrapper the instance is started with (its own interpreter, then fastpost's CLI).
WRAPPER = r'''
import cProfile, gc, json, os, sys, threading, time, collections
PROBE = os.environ["RELAY_PROBE_DIR"]
MODE = os.environ["RELAY_PROBE_MODE"]
if MODE == "cycles":
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)

_loop = [None]
_prof = [None]

_pool_prof = [None]  # one profile for every executor thread's work items (store threads)

def _snapshot(tag):
    """On the worker's loop thread: dump the profiles so far, start new ones (the
    executor threads are idle then: the probe comes after the sink counted everything)."""
    prof = _prof[0]
    prof.disable()
    prof.dump_stats(os.path.join(PROBE, f"{tag}-{os.getpid()}.prof"))
    if _pool_prof[0] is not None:
        _pool_prof[0].dump_stats(os.path.join(PROBE, f"{tag}-{os.getpid()}-threads.prof"))
    _pool_prof[0] = cProfile.Profile(time.thread_time)
    _prof[0] = cProfile.Profile(time.thread_time)
    _prof[0].enable()

def _profiled_run(self, _run=None):
    prof = _pool_prof[0]
    if prof is None:
        return _run(self)
    return prof.runcall(_run, self)

def _probe_loop():
    me = os.getpid()
    req = os.path.join(PROBE, "ask")
    done = set()
    while True:
        time.sleep(0.2)
        try:
            with open(req) as fh:
                tag = fh.read().strip()
        except OSError:
            continue
        if not tag or tag in done:
            continue
        done.add(tag)
        if _prof[0] is not None and _loop[0] is not None:
            _loop[0].call_soon_threadsafe(_snapshot, tag)
        gc.collect()
        kinds = collections.Counter(type(o).__name__ for o in gc.garbage)
        try:
            comm = open(f"/proc/{me}/cmdline", "rb").read().split(b"\0")[0].decode()
        except OSError:
            comm = "?"
        out = {"pid": me, "daemon": comm.split()[0] if comm else "?", "tag": tag,
               "garbage": len(gc.garbage), "types": dict(kinds.most_common(25)),
               "enabled": gc.isenabled(), "debug": gc.get_debug(), "counts": gc.get_count(),
               "stats": [s["collections"] for s in gc.get_stats()]}
        path = os.path.join(PROBE, f"{tag}-{me}.json")
        with open(path + ".tmp", "w") as fh:
            json.dump(out, fh)
        os.rename(path + ".tmp", path)

import uvloop
from fastpost.server import lifecycle
_reset = lifecycle.reset_signals_for_child
_new_loop = uvloop.new_event_loop

def _reset_and_probe():
    _reset()
    threading.Thread(target=_probe_loop, daemon=True).start()
    if MODE == "cprofile":
        import concurrent.futures.thread as cft
        import functools
        cft._WorkItem.run = functools.partialmethod(_profiled_run, _run=cft._WorkItem.run)
        _pool_prof[0] = cProfile.Profile(time.thread_time)
        _prof[0] = cProfile.Profile(time.thread_time)
        _prof[0].enable()

def _remember_loop():
    _loop[0] = _new_loop()
    return _loop[0]

lifecycle.reset_signals_for_child = _reset_and_probe
uvloop.new_event_loop = _remember_loop
from fastpost.cli.main import main
sys.exit(main(["fastpost"] + sys.argv[1:]))
'''


class ProbedInstance(mta.FastpostInstance):
    """fastpost started through WRAPPER (only ``start``; every other verb as usual)."""

    wrapper = ""

    def command(self, verb: str, *args: str) -> list[str]:
        if verb == "start":
            return [sys.executable, self.wrapper, "-c", self.etc, verb, *args]
        return super().command(verb, *args)


def probe(probe_dir: str, tag: str, pids: list[int], timeout: float = 10.0) -> dict[int, dict]:
    with open(os.path.join(probe_dir, "ask.tmp"), "w") as fh:
        fh.write(tag)
    os.rename(os.path.join(probe_dir, "ask.tmp"), os.path.join(probe_dir, "ask"))
    deadline = time.monotonic() + timeout
    got: dict[int, dict] = {}
    while time.monotonic() < deadline and len(got) < len(pids):
        for pid in pids:
            path = os.path.join(probe_dir, f"{tag}-{pid}.json")
            if pid not in got and os.path.exists(path):
                with open(path) as fh:
                    got[pid] = json.load(fh)
        time.sleep(0.1)
    missing = [p for p in pids if p not in got]
    if missing:
        raise RuntimeError(f"no probe answer from pids {missing}")
    return got


def workers(master: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == master:
                out.append(int(name))
    return sorted(out)


def print_cycles(rows: dict, n: int, sessions: int) -> None:
    print(f"unreachable objects (gc off, DEBUG_SAVEALL) after 50 warm-up messages, then +{n} "
          f"and +{2 * n} more ({sessions} sessions, 1 KiB, relay to smtp-sink):")
    print(f"{'daemon':18} {'pid':>7} {'warm':>7} {'N':>7} {'3N':>7} {'per msg':>8}  grown types")
    for (daemon, pid), by in sorted(rows.items()):
        if not {"n", "3n"} <= by.keys():
            continue  # a worker that started between the probes
        a, b = by["n"]["garbage"], by["3n"]["garbage"]
        grown = {k: v - by["n"]["types"].get(k, 0) for k, v in by["3n"]["types"].items()
                 if v > by["n"]["types"].get(k, 0)}
        grown_s = ", ".join(f"{k} +{v}" for k, v in sorted(grown.items(), key=lambda kv: -kv[1])[:6])
        print(f"{daemon:18} {pid:7} {by.get('warm', {}).get('garbage', '-'):>7} {a:7} {b:7} "
              f"{(b - a) / (2 * n):8.2f}  {grown_s}")
        last = by["3n"]
        print(f"{'':18} gc enabled={last['enabled']} debug={last['debug']} "
              f"collections by generation {last['stats']}")
    print("(every probe itself leaves ~32 objects: a constant, not a per-message growth)")


def print_profiles(probe_dir: str, rows: dict, n: int, daemons: list[str], top: int) -> None:
    import pstats

    for (daemon, pid), by in sorted(rows.items()):
        if daemon not in daemons:
            continue
        for suffix, what in (("", "event loop thread"), ("-threads", "executor threads")):
            path = os.path.join(probe_dir, f"n-{pid}{suffix}.prof")
            if os.path.exists(path) and os.path.getsize(path) > 0:
                _print_profile(pstats.Stats(path), f"{daemon} (pid {pid}), {what}", n, top)


def _print_profile(st, title: str, n: int, top: int) -> None:
    """One pstats profile: calls and CPU per message, the top functions."""
    calls = sum(v[1] for v in st.stats.values())
    tt = sum(v[2] for v in st.stats.values())
    print(f"== {title}: {calls / n:,.0f} Python-visible calls per message, "
          f"{1000 * tt / n:.3f} ms/msg under cProfile")
    rows_ = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    print(f"   {'calls/msg':>9} {'own us/msg':>10} {'incl us/msg':>11}  function")
    for (fn, line, name), (cc, nc, tt_, ct, _callers) in rows_:
        where = fn.split("/src/")[-1] if "/src/" in fn else fn.split("/lib/")[-1]
        print(f"   {nc / n:9.2f} {1e6 * tt_ / n:10.1f} {1e6 * ct / n:11.1f}  {name} ({where}:{line})")
    st2 = sorted(st.stats.items(), key=lambda kv: -kv[1][3])
    print("   by inclusive time (fastpost functions):")
    shown = 0
    for (fn, line, name), (cc, nc, tt_, ct, _callers) in st2:
        if "fastpost" not in fn:
            continue
        where = fn.split("/src/")[-1]
        print(f"   {nc / n:9.2f} {1e6 * tt_ / n:10.1f} {1e6 * ct / n:11.1f}  {name} ({where}:{line})")
        shown += 1
        if shown >= top:
            break


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("cycles", "cprofile"), default="cycles")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--daemons", default="qmgr,smtp,trivial-rewrite",
                   help="--mode cprofile: the daemons whose profile is printed")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--dir", default="/var/tmp")
    opts = p.parse_args()
    base = tempfile.mkdtemp(prefix="relay-probe-", dir=opts.dir)
    probe_dir = os.path.join(base, "probe")
    os.makedirs(probe_dir)
    os.chmod(base, 0o755)
    os.chmod(probe_dir, 0o777)  # workers run as mail_owner
    wrapper = os.path.join(base, "wrapper.py")
    with open(wrapper, "w") as fh:
        fh.write(WRAPPER)
    os.environ["RELAY_PROBE_DIR"] = probe_dir
    os.environ["RELAY_PROBE_MODE"] = opts.mode
    sink_port = tools.free_port()
    inst = ProbedInstance(os.path.join(base, "fp"), sink_port=sink_port, name="bench-probe")
    inst.wrapper = wrapper
    inst.configure()
    rows: dict = {}
    steps = ((("warm", 50), ("n", opts.messages), ("3n", 2 * opts.messages)) if opts.mode == "cycles"
             else (("warm", 200), ("n", opts.messages)))
    try:
        with tools.Sink(port=sink_port) as sink:
            inst.start()
            sent = 0
            for step, n in steps:
                src = tools.run_source(inst.port, opts.sessions, n, 1024)
                sent += n
                if not sink.wait_count(sent, timeout=max(60.0, n / 20)):
                    raise RuntimeError(f"sink counted {sink.count} of {sent}; rc={src['rc']}")
                time.sleep(1.0)  # let the removals and log lines finish
                pids = workers(inst.master_pid())
                for pid, ans in probe(probe_dir, step, pids).items():
                    rows.setdefault((ans["daemon"], pid), {})[step] = ans
        if opts.mode == "cycles":
            print_cycles(rows, opts.messages, opts.sessions)
        else:
            time.sleep(0.5)  # the last dumps
            print_profiles(probe_dir, rows, opts.messages, opts.daemons.split(","), opts.top)
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
