#!/usr/bin/env python3
"""Micro-benchmark: cleanup's StateCore (OPEN + the fast END), compiled vs interpreted.

    .venv/bin/python benchmarks/kernels/bench_statecore.py [--messages N] [--rounds R]

Workload: benchmarks/cleanup_loop.py's in-process cleanup (the real CleanupService,
queue store, committer threads and trivial-rewrite protocol; a stand-in client keeping
20 messages in flight, smtp-source's message) run with CleanupState over the compiled
core (fastpost.daemons.cleanup._statecore_c, production's) and over the same source
interpreted (_statecore_py), alternating, ``--rounds`` rounds of ``--messages`` each.
Prints the loop thread's CPU microseconds per message (median of the rounds) for each
and their ratio. Everything else the loop does per message (frame decoding, the reply
frames, the committer's bookkeeping, the builder, the kernels) is the same in both, so
the ratio understates the core's own speed-up. Measures, never asserts.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvloop  # noqa: E402

import cleanup_loop as CL  # noqa: E402  (benchmarks/cleanup_loop.py)
from fastpost.daemons.cleanup import _statecore_py  # noqa: E402
from fastpost.daemons.cleanup.state import CleanupState  # noqa: E402

PyCoreState = type("PyCoreState", (_statecore_py.StateCore,),
                   {k: v for k, v in vars(CleanupState).items()
                    if k not in ("__dict__", "__weakref__")})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="fp-bench-statecore-", dir="/var/tmp")
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        svc, store, server = CL.make_service(loop, root)
        got = {"cython": [], "python": []}
        for r in range(args.rounds):
            order = [("cython", CleanupState), ("python", PyCoreState)]
            for name, cls in (order if r % 2 == 0 else order[::-1]):
                svc.state_class = cls
                loop_us, _, _ = loop.run_until_complete(CL.run(svc, args.messages, 20, None))
                got[name].append(loop_us)
        c = statistics.median(got["cython"])
        p = statistics.median(got["python"])
        print(f"StateCore (OPEN + fast END, cleanup_loop's workload), loop thread CPU us/msg, "
              f"median of {args.rounds}: python {p:.1f}  cython {c:.1f}  ratio {p / c:.2f}x")
        CL.close_service(loop, svc, store, server)
    finally:
        loop.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
