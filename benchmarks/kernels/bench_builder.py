#!/usr/bin/env python3
"""Micro-count: a message's two builders made and freed, compiled vs interpreted.

    .venv/bin/python benchmarks/kernels/bench_builder.py {mb,qfb} N [--impl c|py]

What cleanup's OPEN does once per message (Committer.builder): a MessageBuilder with
its QueueFileBuilder (``mb``), or a QueueFileBuilder alone (``qfb``), made N times and
dropped at once. For instructions per object, run it under callgrind twice and take
the difference (docs/accept.md, "Session 12: cleanup's OPEN set-up, the builder chain"):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=F1000 \\
        .venv/bin/python benchmarks/kernels/bench_builder.py mb 1000
    (the same with 3000 into F3000; per object (Ir(F3000) - Ir(F1000)) / 2000)

``--impl py`` runs the same source interpreted (fastpost.mail.queue._builder_py), the
builders as they were before they were compiled. The loop's own turn is included.
"""

import argparse
import importlib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["mb", "qfb"])
    ap.add_argument("n", type=int)
    ap.add_argument("--impl", choices=["c", "py"], default="c")
    a = ap.parse_args()
    mod = importlib.import_module(f"fastpost.mail.queue._builder_{a.impl}")
    if a.what == "qfb":
        make = mod.QueueFileBuilder
        for _ in range(a.n):
            b = make(2048)
            b = None
    else:
        make = mod.MessageBuilder
        for _ in range(a.n):
            b = make(None, "ABCDE100000", 2048, 1 << 30)
            b = None


if __name__ == "__main__":
    main()
