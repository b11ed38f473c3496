#!/usr/bin/env python3
"""Micro-benchmark: indexed-table key kernel and PCRE2 binding, compiled vs reference.

    .venv/bin/python benchmarks/kernels/bench_indexed.py [--seconds S]

Workload: lookups through IndexedReader (fold, NUL-terminate, get, decode) against a
dict of 10,000 keys standing in for the LMDB transaction (so only the kernel's own
work is measured), half hits and half misses, ASCII keys like e-mail addresses;
and encode_key alone on an ASCII and a non-ASCII key. Also the PCRE2 binding
(Cython vs ctypes) matching one pattern. Medians of 5 rounds.
"""

import argparse
import sys

from fastpost.mail.maps import _indexed_c as C
from fastpost.mail.maps import _indexed_py as P
from fastpost.mail.maps import _pcre2_c as PC
from fastpost.mail.maps import _pcre2_py as PP
from _timing import rate_over  # noqa: E402  (this directory is sys.path[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    keys = [f"User{i}@Example{i % 97}.COM" for i in range(10_000)]
    table = {P.encode_key(k, True, True): P.encode_value(f"OK {i}", True)
             for i, k in enumerate(keys)}
    probes = keys[:500] + [f"nobody{i}@nowhere.test" for i in range(500)]
    print(f"{'workload':34} {'python/s':>12} {'cython/s':>12} {'speedup':>8}")
    rows = []
    rp = P.IndexedReader(table.get, True, P.NUL_WITH)
    rc = C.IndexedReader(table.get, True, C.NUL_WITH)
    rows.append(("lookup (fold+get+decode)", rate_over(rp.lookup, probes, args.seconds),
                 rate_over(rc.lookup, probes, args.seconds)))
    ascii_keys = ["Some.User+Tag@Example.COM"]
    rows.append(("encode_key ASCII", rate_over(lambda k: P.encode_key(k, True, True), ascii_keys,
                                          args.seconds),
                 rate_over(lambda k: C.encode_key(k, True, True), ascii_keys, args.seconds)))
    utf = ["Jürgen.Straße@Bücher.Example"]
    rows.append(("encode_key UTF-8", rate_over(lambda k: P.encode_key(k, True, True), utf,
                                          args.seconds),
                 rate_over(lambda k: C.encode_key(k, True, True), utf, args.seconds)))
    pat_p = PP.Pattern(rb"^(.+)@(example\d+)\.com$", PP.CASELESS)
    pat_c = PC.Pattern(rb"^(.+)@(example\d+)\.com$", PC.CASELESS)
    subjects = [k.encode() for k in probes[:100]]
    rows.append(("pcre2 match (ctypes vs cython)", rate_over(pat_p.match, subjects, args.seconds),
                 rate_over(pat_c.match, subjects, args.seconds)))
    for label, py, cy in rows:
        print(f"{label:34} {py:12,.0f} {cy:12,.0f} {cy / py:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
