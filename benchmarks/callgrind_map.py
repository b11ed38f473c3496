#!/usr/bin/env python3
"""Instructions per session by area, from two callgrind runs of different length.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=S.out \\
        .venv/bin/python benchmarks/smtpd_session_cpu.py --sink null --sessions 300 --repeat 1
    (the same with --sessions 1300 into B.out)
    python3 benchmarks/callgrind_map.py S.out B.out [--per 2000] [--top 25]
        [--inclusive REGEX ...]

Why: a whole-run profile mixes the interpreter's start-up and imports with the sessions.
The difference of two runs that differ only in their number of sessions is the
sessions' own cost; divided by the number of extra sessions (``--per``; 2,000 for
smtpd_session_cpu.py's 300 and 1,300, whose warm-up doubles each run) it is per
session. Prints that total, then the exclusive instructions by shared object, by kind
of work (the interpreter's eval loop and calls, attribute and dict lookups, allocation,
str/bytes/int objects, fastpost's compiled kernels, uvloop, libc), the top functions,
and with ``--inclusive`` the inclusive cost of the functions whose names match (for
instance compiled entry points such as ``SessionCore_.*_on_rcpt$``).

Reads the files through ``callgrind_annotate`` (valgrind's); fails with its error if
that is missing or a file is not a callgrind output. Inclusive costs of functions that
call each other through the loop (callbacks, tasks) overlap: they are not a partition.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys

# Kinds of work, matched in order against "file:function [object]"; the first wins.
KINDS = [
    ("fastpost compiled kernels (own code, Cython helpers)", r"_c\.cpython[^\]]*\]$"),
    ("uvloop", r"/loop\.cpython[^\]]*\]$"),
    ("libc (memcpy, memset, memcmp ...)", r"libc\.so"),
    ("bytecode interpreter (eval loop, frames, calls)",
     r"_PyEval|initialize_locals|_PyFrame|Vectorcall|_Py_CheckFunctionResult|PopFrame"
     r"|_PyObject_Call|PyObject_Call|method_vectorcall|_PyFunction|cfunction|slot_tp_init"
     r"|type_call|_PyStack|frame"),
    ("attribute / method / dict lookup",
     r"_PyType_Lookup|GetAttr|SetAttr|unicodekeys|_Py_dict_lookup|GetMethod"
     r"|GetInstanceAttribute|member_get|PyMember|PyDict_GetItem|dict_subscript|lookdict"
     r"|find_name_in_mro|insertdict|PyDict_SetItem|_PyDict|dict_"),
    ("allocation, reference counts, deallocation, GC",
     r"_PyObject_Free|_PyObject_Malloc|dealloc|_alloc|_Py_NewReference|_PyObject_GC"
     r"|PyObject_GC|GenericAlloc|object_new|_Py_Dealloc|PyMem|gc_"),
    ("str / bytes / int / tuple / list objects",
     r"Unicode|unicode|bytes|Bytes|Long|long_|bytearray|tuple|Tuple|list|List"
     r"|memoryview|PyNumber|siphash|hash"),
]

LINE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+(.*)$")


def load(path: str, inclusive: bool) -> dict[str, int]:
    """Function -> instructions of one callgrind output (exclusive or inclusive)."""
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100",
         f"--inclusive={'yes' if inclusive else 'no'}", path],
        capture_output=True, text=True, check=True).stdout
    costs: dict[str, int] = collections.Counter()
    for line in out.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            costs[m.group(2)] += int(m.group(1).replace(",", ""))
    return costs


def per_session(small: str, big: str, per: float, inclusive: bool) -> dict[str, float]:
    a, b = load(small, inclusive), load(big, inclusive)
    return {k: (b.get(k, 0) - a.get(k, 0)) / per for k in set(a) | set(b)}


def split(key: str) -> tuple[str, str]:
    """(function, shared object's file name) of an annotate line's name."""
    m = re.match(r"(?:.*:)?(\S+) \[(.*)\]$", key)
    return (m.group(1), m.group(2).rsplit("/", 1)[-1]) if m else (key, "?")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("small")
    ap.add_argument("big")
    ap.add_argument("--per", type=float, default=2000.0,
                    help="sessions in big minus sessions in small (default 2000)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--inclusive", nargs="*", default=[], metavar="REGEX")
    args = ap.parse_args()
    excl = per_session(args.small, args.big, args.per, False)
    total = sum(excl.values())
    print(f"instructions per session: {total:,.0f}")
    by_obj: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    for key, v in excl.items():
        obj = split(key)[1]
        by_obj["? (code inlined from headers)" if obj == "?" else obj] += v
        kind = next((name for name, pat in KINDS if re.search(pat, key)), "rest")
        by_kind[kind] += v
    print("\nby shared object (exclusive):")
    for obj, v in by_obj.most_common(12):
        print(f"  {v:10,.0f} {100 * v / total:5.1f} %  {obj}")
    print("\nby kind of work (exclusive):")
    for kind in [k for k, _ in KINDS] + ["rest"]:
        print(f"  {by_kind[kind]:10,.0f} {100 * by_kind[kind] / total:5.1f} %  {kind}")
    print(f"\ntop {args.top} functions (exclusive):")
    for key, v in sorted(excl.items(), key=lambda kv: -kv[1])[:args.top]:
        fn, obj = split(key)
        print(f"  {v:10,.0f} {100 * v / total:5.1f} %  {fn}  [{obj}]")
    if args.inclusive:
        incl = per_session(args.small, args.big, args.per, True)
        print("\ninclusive (overlapping):")
        for key, v in sorted(incl.items(), key=lambda kv: -kv[1]):
            fn = split(key)[0]
            inlined = re.search(r"\.h:", key) or fn.startswith("__pyx_pf_")
            if "'" not in fn and not inlined and any(re.search(p, fn) for p in args.inclusive):
                print(f"  {v:10,.0f} {100 * v / total:5.1f} %  {fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
