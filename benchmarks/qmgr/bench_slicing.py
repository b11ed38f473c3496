#!/usr/bin/env python3
"""qmgr recipient slicing: peak memory of qmgr for one message with many recipients.

    .venv/bin/python benchmarks/qmgr/bench_slicing.py [--recipients 50000]
        [--limits 1000,5000,20000,100000]

For each qmgr_message_recipient_limit, a fresh instance (tests/helpers' Instance, the
delivery set-up of tests/delivery/dlv.py with every recipient going to the discard
agent) gets one message with --recipients recipients; printed: seconds from the
trigger until the message is gone, and qmgr's peak resident memory (VmHWM) minus its
resident memory before the message (its Python heap and imports), and qmgr's CPU
time (utime + stime) for the message, read from /proc.
A limit at or above the recipient count means no slicing (every recipient in core).
Needs root when run as the CI does (workers run as postfix); works unprivileged too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "delivery"), str(REPO / "src")]

from dlv import DeliveryInstance  # noqa: E402
from helpers.instance import Instance, children_of  # noqa: E402


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_ms(pid: int) -> float:
    """utime + stime of a process, in ms (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _qmgr_pid(inst: Instance) -> int:
    for pid in children_of(inst.master_pid):
        try:
            if b"qmgr" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    raise RuntimeError("no qmgr process")


def run(limit: int, recipients: int) -> tuple[float, int, int, float]:
    base = tempfile.mkdtemp(prefix="fastpost-slicing-", dir="/var/tmp")
    made = []

    def factory(**kw):
        inst = Instance(base, **kw)
        made.append(inst)
        return inst

    try:
        d = DeliveryInstance(factory, base, main_cf={
            "qmgr_message_recipient_limit": str(limit), "default_transport": "discard:bench"})
        d.inject([{"rcpts": ["warm@x.example"]}])  # qmgr up, imports done
        d.wait(lambda: d.counts()["incoming"] + d.counts()["active"] + d.counts()["deferred"] == 0,
               timeout=60, what="warm-up")
        pid = _qmgr_pid(d.inst)
        before = _status_kb(pid, "VmRSS")
        cpu0 = _cpu_ms(pid)
        start = time.monotonic()
        (qid,) = d.inject([{"rcpts": [f"r{i}@big.example" for i in range(recipients)]}])
        d.wait_gone([qid], timeout=3600)
        took = time.monotonic() - start
        return took, before, _status_kb(pid, "VmHWM"), _cpu_ms(pid) - cpu0
    finally:
        for inst in made:
            inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=50000)
    ap.add_argument("--limits", default="1000,5000,20000,100000")
    args = ap.parse_args()
    print(f"one message, {args.recipients:,} recipients, to the discard agent")
    print(f"{'qmgr_message_recipient_limit':>30} {'seconds':>8} {'qmgr RSS before':>16} "
          f"{'peak':>8} {'growth MiB':>11} {'qmgr CPU s':>11}")
    for limit in (int(x) for x in args.limits.split(",")):
        took, before, peak, cpu = run(limit, args.recipients)
        print(f"{limit:>30,} {took:>8.1f} {before / 1024:>13.1f} MiB {peak / 1024:>5.1f} MiB "
              f"{(peak - before) / 1024:>11.1f} {cpu / 1000:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
