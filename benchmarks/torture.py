#!/usr/bin/env python3
"""The reliability battery: kill -9 under load, full disk, floods, fuzzing, smuggling,
open relay, TLS; against C Postfix (the battery's own validation) and fastpost.

    ./dev torture [--checks kill9,fulldisk,...] [--mta postfix|fastpost|both] [--short]
                  [--out DIR]

Postfix counterpart: none. Each check builds its own private instance (own config,
queue directory and ports, a Python sink as the next hop that records Message-IDs), runs,
and tears everything down; see benchmarks/harness/battery.py for what each check does
and what passing means. fastpost checks whose pieces do not exist yet are reported
"unavailable" with the missing pieces. The run is bounded: every check has its own
message counts and time limits (--short: seconds each, as in tests/battery/).

Output: a verdict table on stdout and benchmarks/results/torture-<timestamp>/torture.json.

Fails: exit 1 if any check that ran failed (unavailable and skipped checks do not fail
the run), 2 on bad options.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import battery, machine, mta, tools  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="./dev torture", description=__doc__.split("\n\n")[0])
    p.add_argument("--checks", default=",".join(c.name for c in battery.ALL),
                   help="comma-separated, from: " + ", ".join(c.name for c in battery.ALL))
    p.add_argument("--mta", choices=("postfix", "fastpost", "both"), default="both")
    p.add_argument("--short", action="store_true", help="the short version the test suite runs")
    p.add_argument("--out", help="result directory (default benchmarks/results/torture-<timestamp>)")
    p.add_argument("--workdir", default="/var/tmp")
    opts = p.parse_args(argv)
    names = [n.strip() for n in opts.checks.split(",") if n.strip()]
    bad = [n for n in names if n not in battery.BY_NAME]
    if bad:
        p.error(f"unknown check(s): {', '.join(bad)}")
    try:
        tools.ensure_postfix(log=lambda m: print("torture:", m, file=sys.stderr))
    except tools.ToolError as exc:
        print(f"torture: {exc}", file=sys.stderr)
        return 1
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = opts.out or os.path.join(HERE, "results", f"torture-{stamp}")
    os.makedirs(out, exist_ok=True)
    caps = mta.fastpost_capabilities()
    kinds = ["postfix", "fastpost"] if opts.mta == "both" else [opts.mta]
    results = []
    for name in names:
        for kind in kinds:
            print(f"torture: {name} against {kind} ...", file=sys.stderr, flush=True)
            r = battery.run_check(battery.BY_NAME[name], kind, short=opts.short, workdir=opts.workdir,
                                  caps=caps)
            results.append(r)
            print(f"  {r.status.upper():11} {r.seconds:6.1f}s  {r.summary}", file=sys.stderr, flush=True)
    data = {"started": stamp, "machine": machine.describe(opts.workdir), "short": opts.short,
            "fastpost_capabilities": caps, "results": [dataclasses.asdict(r) for r in results]}
    path = os.path.join(out, "torture.json")
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    width = max(len(r.check) for r in results) if results else 5
    print(f"{'check'.ljust(width)} | {'MTA'.ljust(9)} | {'verdict'.ljust(11)} | summary")
    for r in results:
        print(f"{r.check.ljust(width)} | {r.mta.ljust(9)} | {r.status.ljust(11)} | {r.summary}")
    print(f"\nresults: {path}")
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
