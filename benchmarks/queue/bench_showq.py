#!/usr/bin/env python3
"""mailq through the showq service against reading the index directly.

    .venv/bin/python benchmarks/queue/bench_showq.py [--messages 20000] [--rounds 3]

A fresh instance (tests/helpers' Instance, master.cf with showq only) gets --messages
one-recipient messages (committed by a forked committer, as cleanup would). Then
``fastpost queue -p`` and ``queue -j`` are timed as root (direct index reader) and as
``nobody`` with effective group postdrop (through public/showq). Both use Debian's
/usr/bin/python3 with the worktree on PYTHONPATH, so interpreter start-up is the same.
Printed: medians of wall seconds (interpreter start-up included) and messages listed
per second. Needs root (to run as nobody).
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "delivery"), str(REPO / "src")]

from dlv import inject  # noqa: E402
from helpers.instance import Instance  # noqa: E402


def _run(cmd: list[str], env: dict) -> float:
    """Wall seconds of one command (which must succeed)."""
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {proc.stderr.decode()}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the service path runs the command as nobody)")
    base = Path(tempfile.mkdtemp(prefix="fastpost-showq-", dir="/tmp"))
    os.chmod(base, 0o755)
    inst = Instance(base, master_cf="showq unix n - n - - showq\n")
    os.chmod(inst.dir, 0o755)
    os.chmod(inst.etc, 0o755)
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "PYTHONPATH": f"{REPO / 'src'}:{site}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    py = ["/usr/bin/python3", "-m", "fastpost", "-c", str(inst.etc), "queue"]
    nobody = ["setpriv", "--reuid=nobody", "--rgid=nogroup", "--egid=postdrop", "--clear-groups"]
    try:
        inst.start()
        for start in range(0, args.messages, 5000):
            inject(str(inst.etc), [{"rcpts": [f"u{i}@d{i % 100}.example"]}
                                   for i in range(start, min(args.messages, start + 5000))],
                   trigger=False)
        print(f"{args.messages:,} messages; medians of {args.rounds}")
        print(f"{'listing':<34} {'seconds':>8} {'msgs/s':>10}")
        for flag in ("-p", "-j"):
            for who, prefix in (("root, direct", []), ("nobody, through showq", nobody)):
                times = [_run(prefix + py + [flag], env) for _ in range(args.rounds)]
                t = statistics.median(times)
                print(f"{'queue ' + flag + ', ' + who:<34} {t:>8.2f} {args.messages / t:>10,.0f}")
    finally:
        inst.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
