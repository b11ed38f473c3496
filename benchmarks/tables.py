#!/usr/bin/env python3
"""Lookup-table benchmarks: fastpost's tables next to Debian's C Postfix.

    .venv/bin/python benchmarks/tables.py [--keys N] [--runs R] [--seconds S] [--only NAME]

Measures, on this machine, in one interleaved run:

  build     wall time to build an indexed table of --keys (1,000,000) lines with
            Debian's ``postmap lmdb:`` and with ``fastpost map lmdb:`` from the same
            source file (median of --runs); ratio postmap/fastpost (>1: fastpost faster)
  indexed   in-process lookups/s of Map.get() on that table (random hits, misses)
  cidr      in-process lookups/s on a cidr table of 10,000 prefixes
  regexp    in-process lookups/s on a regexp table of 1,000 patterns (and pcre)
  postmap -q -   for context: keys/s answered by ``postmap -q -`` and
            ``fastpost map -q -`` for the same 100,000 keys (process, stdin and stdout
            included), per table type

Everything runs in a temporary directory that is removed at the end. Needs postfix,
postfix-lmdb and postfix-pcre (./dev bench installs them). No timing assertion
anywhere: this prints numbers for docs/tables.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from fastpost.mail import maps
from fastpost.mail.maps import create_map

PY = sys.executable


def timed(cmd, **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def lookups_per_second(m, probes: list[str], seconds: float) -> float:
    rounds = []
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        end = start + seconds / 3
        get = m.get
        while True:
            for p in probes:
                get(p)
            n += len(probes)
            now = time.perf_counter()
            if now >= end:
                break
        rounds.append(n / (now - start))
    return statistics.median(rounds)


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:52} {value:>18} {note}")


def bench_build_and_indexed(d: str, nkeys: int, runs: int, seconds: float) -> None:
    rnd = random.Random(1)
    src = os.path.join(d, "big")
    with open(src, "w") as fh:
        for i in range(nkeys):
            fh.write(f"user{i}@Domain{i % 1000}.example\tsmtp:[relay{i % 10}.example]:25\n")
    size = os.path.getsize(src) / 1e6
    print(f"\n== indexed table: {nkeys:,} keys ({size:.0f} MB source)")
    # Debian's default lmdb_map_size (16 MiB) is too small for this table: postmap then
    # grows the map mid-build and (3.7.11) stores the keys unfolded. A second config
    # directory gives it a map big enough to build correctly in one go.
    bigcf = os.path.join(d, "bigmap")
    os.mkdir(bigcf)
    with open(os.path.join(bigcf, "main.cf"), "w") as fh:
        fh.write("lmdb_map_size = 1073741824\n")
    theirs, theirs_big, ours = [], [], []
    for _ in range(runs):   # interleaved, fresh copies, page cache warm for all
        for suffix in (".p", ".b", ".f"):
            shutil.copy(src, src + suffix)
        theirs.append(timed(["postmap", f"lmdb:{src}.p"]))
        theirs_big.append(timed(["postmap", "-c", bigcf, f"lmdb:{src}.b"]))
        ours.append(timed([PY, "-m", "fastpost", "map", f"lmdb:{src}.f"]))
    tp, tb, tf = (statistics.median(x) for x in (theirs, theirs_big, ours))
    row("build: postmap lmdb: (default lmdb_map_size)", f"{tp:.2f} s")
    row("build: postmap lmdb: (lmdb_map_size = 1 GiB)", f"{tb:.2f} s")
    row("build: fastpost map lmdb:", f"{tf:.2f} s",
        f"postmap/fastpost = {tp / tf:.2f}x / {tb / tf:.2f}x")
    row("file size: postmap default / 1 GiB map / fastpost",
        f"{os.path.getsize(src + '.p.lmdb') / 1e6:.0f} / "
        f"{os.path.getsize(src + '.b.lmdb') / 1e6:.0f} / "
        f"{os.path.getsize(src + '.f.lmdb') / 1e6:.0f} MB")
    m = create_map(f"lmdb:{src}.f")
    hits = []
    for _ in range(2000):
        i = rnd.randrange(nkeys)
        hits.append(f"USER{i}@domain{i % 1000}.EXAMPLE")
    misses = [f"nobody{i}@nowhere.example" for i in range(2000)]
    assert all(m.get(h) is not None for h in hits[:50])
    h = lookups_per_second(m, hits, seconds)
    row("indexed Map.get, random hits", f"{h:,.0f} /s", f"{1e6 / h:.2f} us each")
    x = lookups_per_second(m, misses, seconds)
    row("indexed Map.get, misses", f"{x:,.0f} /s", f"{1e6 / x:.2f} us each")
    for suffix, label in ((".b", "1 GiB map"), (".p", "default map")):
        pm = create_map(f"lmdb:{src}{suffix}")   # a file C Postfix built, read by fastpost
        found = sum(pm.get(k) is not None for k in hits)
        h2 = lookups_per_second(pm, hits, seconds)
        row(f"Map.get on postmap's .lmdb ({label}), same keys", f"{h2:,.0f} /s",
            f"{100 * found / len(hits):.0f}% of them found")
        pm.close()
    m.close()
    keys = "\n".join(hits * 50) + "\n"
    stdin_rate(d, "lmdb", f"{src}.f", keys)


def stdin_rate(d: str, type_: str, name: str, keys: str) -> None:
    n = keys.count("\n")
    path = os.path.join(d, "keys")
    with open(path, "w") as fh:
        fh.write(keys)
    rates = []
    for cmd in (["postmap", "-q", "-", f"{type_}:{name}"],
                [PY, "-m", "fastpost", "map", "-q", "-", f"{type_}:{name}"]):
        with open(path) as fh:
            t = timed(cmd, stdin=fh)
        rates.append(n / t)
    row(f"{type_}: postmap -q - / fastpost map -q - ({n:,} keys)",
        f"{rates[0]:,.0f} / {rates[1]:,.0f} /s", f"fastpost/postmap = {rates[1] / rates[0]:.2f}x")


def bench_cidr(d: str, seconds: float) -> None:
    rnd = random.Random(2)
    path = os.path.join(d, "big.cidr")
    nets = set()
    while len(nets) < 10_000:
        plen = rnd.choice([16, 20, 24, 24, 24, 28, 32])
        addr = rnd.getrandbits(32) & ~((1 << (32 - plen)) - 1)
        nets.add((addr, plen))
    with open(path, "w") as fh:
        for i, (addr, plen) in enumerate(nets):
            fh.write(f"{ipaddress.IPv4Address(addr)}/{plen}\tREJECT net{i}\n")
    print("\n== cidr table: 10,000 IPv4 prefixes")
    m = create_map(f"cidr:{path}")
    inside = []
    for addr, plen in list(nets)[:1000]:
        inside.append(str(ipaddress.IPv4Address(addr | rnd.getrandbits(32 - plen)
                                                if plen < 32 else addr)))
    random_ips = [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(1000)]
    r = lookups_per_second(m, inside, seconds)
    row("cidr Map.get, addresses inside listed nets", f"{r:,.0f} /s", f"{1e6 / r:.2f} us each")
    r = lookups_per_second(m, random_ips, seconds)
    row("cidr Map.get, random addresses (mostly misses)", f"{r:,.0f} /s",
        f"{1e6 / r:.2f} us each")
    stdin_rate(d, "cidr", path, "\n".join((inside + random_ips) * 50) + "\n")


def bench_regexp(d: str, seconds: float) -> None:
    print("\n== regexp / pcre tables: 1,000 patterns")
    for type_ in ("regexp", "pcre"):
        path = os.path.join(d, f"big.{type_}")
        with open(path, "w") as fh:
            for i in range(500):
                fh.write(f"/^user{i}@example{i}\\.com$/\tOK user{i}\n")
                fh.write(f"/\\.spammer{i}\\.example$/\tREJECT spam{i}\n")
        m = create_map(f"{type_}:{path}")
        first = [f"user{i}@example{i}.com" for i in range(0, 50)]
        last = [f"host.spammer{i}.example" for i in range(450, 500)]
        misses = [f"someone{i}@nowhere.example" for i in range(50)]
        for label, probes in (("early hits", first), ("late hits", last),
                              ("misses (all 1,000 tried)", misses)):
            r = lookups_per_second(m, probes, seconds)
            row(f"{type_} Map.get, {label}", f"{r:,.0f} /s", f"{1e6 / r:.1f} us each")
        stdin_rate(d, type_, path, "\n".join((first + last + misses) * 200) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", choices=["indexed", "cidr", "regexp"])
    args = ap.parse_args()
    if not shutil.which("postmap"):
        print("benchmarks/tables.py: needs Debian's postfix (postmap)", file=sys.stderr)
        return 1
    from fastpost import _accel

    print(f"fastpost tables benchmark ({_accel.describe()}), Python {sys.version.split()[0]}")
    d = tempfile.mkdtemp(prefix="fastpost-bench-tables-")
    try:
        if args.only in (None, "indexed"):
            bench_build_and_indexed(d, args.keys, args.runs, args.seconds)
        if args.only in (None, "cidr"):
            bench_cidr(d, args.seconds)
        if args.only in (None, "regexp"):
            bench_regexp(d, args.seconds)
    finally:
        maps.close_all()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
