#!/usr/bin/env python3
"""Micro-benchmark: first-match rule scans, compiled vs pure-Python reference.

    .venv/bin/python benchmarks/kernels/bench_rules.py [--seconds S]

Workload: 1,000 rules (regexp: Python re searches through RuleScan; pcre: PCRE2
patterns through RuleSet, the reference being the ctypes binding), probed with keys
that no rule matches, so every rule is tried. Prints scans/s and the ratio.
"""

import argparse
import re
import sys

from fastpost.mail.maps import _pcre2_c as PC
from fastpost.mail.maps import _pcre2_py as PP
from fastpost.mail.maps import _rules_c as RC
from fastpost.mail.maps import _rules_py as RP
from _timing import rate_over  # noqa: E402  (this directory is sys.path[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    patterns = [rb"^user%d@example%d\.com$" % (i, i) for i in range(500)]
    patterns += [rb"\.spammer%d\.example$" % i for i in range(500)]
    probes = [b"someone%d@nowhere.example" % i for i in range(20)]
    re_prog = [(re.compile(p, re.I).search, False, -1) for p in patterns]
    rows = [("regexp RuleScan, 1,000 misses", rate_over(RP.RuleScan(re_prog).first_match, probes,
                                                   args.seconds),
             rate_over(RC.RuleScan(re_prog).first_match, probes, args.seconds))]
    rows.append(("pcre RuleSet, 1,000 misses",
                 rate_over(PP.RuleSet([(PP.Pattern(p, PP.CASELESS), False, -1) for p in patterns]
                                 ).first_match, probes, args.seconds),
                 rate_over(PC.RuleSet([(PC.Pattern(p, PC.CASELESS), False, -1) for p in patterns]
                                 ).first_match, probes, args.seconds)))
    print(f"{'workload':34} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    for label, py, cy in rows:
        print(f"{label:34} {py:12,.0f} {cy:12,.0f} {cy / py:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
