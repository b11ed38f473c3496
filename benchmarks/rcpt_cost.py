#!/usr/bin/env python3
"""Instructions per extra recipient in smtpd and cleanup, counted with callgrind.

    .venv/bin/python benchmarks/rcpt_cost.py [--tree DIR] [--recipients 5]
        [--only engine,smtpd,cleanup] [--jobs 2]

Why: a message to several recipients, each an address the previous RCPT did not name,
pays per recipient what the issue-9 benchmark (one recipient, always the same) never
pays: the address class of each new recipient in smtpd (docs/accept.md, "Session 9:
restriction checks without coroutines": ~65k instructions), and in cleanup a rewrite
cache miss (a trivial-rewrite round trip, the message off the fast path). Instruction
counts do not move with the machine's load, so this is how a change of that cost is
judged here (benchmarks/README.md).

For each case below, the benchmark runs under ``PYTHONHASHSEED=0 valgrind
--tool=callgrind`` at two sizes (N1 = 500 and N2 = 1,500 sessions or messages; the
warm-up of smtpd_session_cpu.py, min(2000, N) sessions, is counted with them: units())
and with 1 and with ``--recipients`` R recipients each; per session or message:
(Ir(N2) - Ir(N1)) / (units(N2) - units(N1)), and per extra recipient the difference of
the two per-session figures divided by R - 1.

  engine          policy_check.py --config default --distinct: the restriction engine
                  alone (RCPT of the benchmark's main.cf: a new address every time,
                  only the domain recurs)
  engine-typical  policy_check.py --config typical --rotate 100: an MX's lists, 100
                  local users in turn
  smtpd           smtpd_session_cpu.py --sink null --distinct: the whole session in
                  one process (the client and cleanup stand-ins cost nothing per RCPT)
  cleanup         cleanup_loop.py --distinct: cleanup's event-loop thread (the
                  trivial-rewrite stand-in answering cache misses runs on it too)
  cleanup-same    cleanup_loop.py: the same R recipients in every message

``--tree DIR`` counts another checkout (its own .venv and src, this file's
benchmarks: DIR/benchmarks must hold the same benchmark scripts). Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

#: name -> (script, arguments, the size option, N1, N2, the thread to count: "" the
#: whole process, else callgrind's "-01"... of --separate-threads)
CASES = {
    "engine": ("policy_check.py", ["--config", "default", "--distinct", "--repeat", "1",
                                   "--warmup", "500"], "--count", 500, 1500, ""),
    "engine-typical": ("policy_check.py", ["--config", "typical", "--rotate", "100",
                                           "--repeat", "1", "--warmup", "500"],
                       "--count", 500, 1500, ""),
    "smtpd": ("smtpd_session_cpu.py", ["--sink", "null", "--distinct", "--repeat", "1",
                                       "--gc", "freeze"], "--sessions", 500, 1500, ""),
    "cleanup": ("cleanup_loop.py", ["--distinct", "--runs", "1", "--index-map-size",
                                    "1073741824"], "--messages", 500, 1500, "-01"),
    "cleanup-same": ("cleanup_loop.py", ["--runs", "1", "--index-map-size", "1073741824"],
                     "--messages", 500, 1500, "-01"),
}


def units(case: str, n: int) -> int:
    """Sessions or messages a run of size n does, its warm-up included: smtpd_session_cpu.py
    warms up with min(2000, n) sessions; the others' warm-ups do not depend on n."""
    return n + min(2000, n) if case == "smtpd" else n


def instructions(out: str, thread: str) -> int:
    """Ir of a callgrind output file (or of one thread's, with --separate-threads)."""
    path = out
    if thread:  # callgrind names the threads' files OUT-01, OUT-02, ...
        path = [p for p in glob.glob(out + "*") if p.endswith(thread)][0]
    with open(path) as fh:
        for line in fh:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {path}")


def count(tree: str, case: str, recipients: int, n: int, tmp: str) -> int:
    script, args, size_opt, _n1, _n2, thread = CASES[case]
    out = os.path.join(tmp, f"{case}-{recipients}-{n}.cg")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           *(["--separate-threads=yes"] if thread else []),
           os.path.join(tree, ".venv", "bin", "python"), os.path.join(tree, "benchmarks", script),
           *args, size_opt, str(n), "--recipients", str(recipients)]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=os.path.join(tree, "src"))
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return instructions(out, thread)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=os.path.dirname(HERE))
    ap.add_argument("--recipients", type=int, default=5)
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    cases = args.only.split(",")
    tree = os.path.abspath(args.tree)
    with tempfile.TemporaryDirectory(prefix="fp-rcpt-cost-") as tmp:
        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for case in cases:
                _s, _a, _o, n1, n2, _t = CASES[case]
                for r in (1, args.recipients):
                    for n in (n1, n2):
                        jobs[case, r, n] = pool.submit(count, tree, case, r, n, tmp)
            ir = {k: f.result() for k, f in jobs.items()}
    print(f"tree {tree}: instructions (callgrind), R = {args.recipients}")
    print(f"{'case':16} {'per unit, 1 rcpt':>17} {f'per unit, {args.recipients} rcpts':>18} "
          f"{'per extra rcpt':>15}")
    for case in cases:
        _s, _a, _o, n1, n2, _t = CASES[case]
        per = {r: (ir[case, r, n2] - ir[case, r, n1]) / (units(case, n2) - units(case, n1))
               for r in (1, args.recipients)}
        extra = (per[args.recipients] - per[1]) / (args.recipients - 1)
        print(f"{case:16} {per[1]:17,.0f} {per[args.recipients]:18,.0f} {extra:15,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
