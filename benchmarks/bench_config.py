#!/usr/bin/env python3
"""Benchmark: reading the configuration, and `fastpost conf` against `postconf`.

    .venv/bin/python benchmarks/bench_config.py [--rounds N]

Measures, on the ISP gateway configuration of tests/postconf/corpus (a realistic
main.cf with restriction lists and a 38-line master.cf):

1. in one process: Config() construction (read and parse main.cf), a first read of
   300 typed parameters (expansion and conversion), and a cached typed read;
2. a daemon's cold start as a new process: import, parameter table, Config, 300 typed
   reads (what every fastpost daemon does before serving);
3. whole commands as processes, side by side with Debian's C postconf:
   ``-n`` (main.cf settings), no argument (all ~1,000 parameters), ``-Mf``.

Prints medians of --rounds runs and the fastpost/postconf ratio of wall-clock time.
Never a test: timings vary with the machine's load (docs/configuration.md has the
figures measured when it was written).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "postconf" / "corpus" / "isp-gateway"

COLD_START = """
import time
t = time.perf_counter()
from fastpost.mail import params
from fastpost.mail.config import Config
cfg = Config({dir!r})
names = [n for n, p in params.table().items() if p.supported and p.kind != 'maps'][:300]
for n in names:
    cfg.typed(n)
print((time.perf_counter() - t) * 1e3)
"""


def median_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from fastpost.mail import params
    from fastpost.mail.config import Config

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-config-"))
    try:
        conf = work / "conf"
        shutil.copytree(CASE, conf)
        past = time.time() - 60  # postconf waits for files younger than ~2 s
        for f in conf.iterdir():
            os.utime(f, (past, past))
        names = [n for n, p in params.table().items() if p.supported and p.kind != "maps"][:300]

        def construct():
            Config(str(conf))

        def typed_all():
            cfg = Config(str(conf))
            for n in names:
                cfg.typed(n)

        cfg = Config(str(conf))
        cfg.get_int("smtpd_recipient_limit")
        n = 100_000
        start = time.perf_counter()
        for _ in range(n):
            cfg.get_int("smtpd_recipient_limit")
        cached_us = (time.perf_counter() - start) / n * 1e6

        print(f"in-process (median of {args.rounds})")
        print(f"  Config() construction          {median_ms(construct, args.rounds) * 1e3:8.1f} us")
        print(f"  Config() + 300 typed reads      {median_ms(typed_all, args.rounds):8.2f} ms")
        print(f"  cached get_int                  {cached_us:8.2f} us")

        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # as an installed package: .pyc
        code = COLD_START.format(dir=str(conf))
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        inner = []

        def cold():
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True).stdout
            inner.append(float(out))

        wall = median_ms(cold, args.rounds)
        print(f"cold start of a process: imports + table + Config + 300 typed reads "
              f"{statistics.median(inner):.1f} ms inside, {wall:.1f} ms wall (interpreter included)")

        postconf = shutil.which("postconf") or "/usr/sbin/postconf"
        have_postconf = os.path.exists(postconf)
        print(f"\n{'command':<22}{'fastpost conf':>15}{'postconf':>12}{'ratio':>8}")
        for flags in (["-n"], [], ["-Mf"]):
            fp = median_ms(lambda: subprocess.run(
                [sys.executable, "-m", "fastpost", "conf", "-c", str(conf), *flags],
                env=env, capture_output=True, check=True), args.rounds)
            if have_postconf:
                pc = median_ms(lambda: subprocess.run(
                    [postconf, "-c", str(conf), *flags], capture_output=True, check=True),
                    args.rounds)
                print(f"{' '.join(flags) or '(none)':<22}{fp:>12.1f} ms{pc:>9.1f} ms{fp / pc:>8.1f}")
            else:
                print(f"{' '.join(flags) or '(none)':<22}{fp:>12.1f} ms{'-':>12}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
