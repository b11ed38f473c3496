#!/usr/bin/env python3
"""Side-by-side benchmarks: C Postfix and fastpost, same load, same machine, one run.

    ./dev bench [--quick] [--scenarios accept,relay,...] [--reps N] [--messages N]
                [--sessions 1,20,100] [--idle-sessions N] [--sendmail-messages N]
                [--only postfix|fastpost] [--out DIR] [--keep]

Postfix counterpart: none (the load is Postfix's smtp-source, the next hop its smtp-sink).

Installs Debian's postfix if it is missing, then for each scenario configures a private C
Postfix instance and a private fastpost instance with the same main.cf/master.cf (each
in its own directories, on its own ports), and runs the repetitions interleaved:
Postfix, fastpost, Postfix, fastpost, ... The fastpost/Postfix ratio is taken pair by
pair. fastpost scenarios whose pieces do not exist yet are reported as "not yet
available" with the missing pieces. See benchmarks/README.md for the method and
benchmarks/harness/scenarios.py for each scenario.

Output, in benchmarks/results/<timestamp>/ (or --out): results.json (every raw figure,
the options and the machine), table.txt and table.md, plot.png; the table is printed.

Fails: exit 2 on bad options, 1 when C Postfix cannot be installed or started, or when
--strict is given and any repetition failed; a failing repetition is otherwise recorded
and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import loopfs, machine, mta, report, scenarios, tools  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="./dev bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default="context,accept,relay,gateway,idle,sendmail,durability",
                   help="comma-separated, from: " + ", ".join(s.name for s in scenarios.ALL))
    p.add_argument("--reps", type=int, default=3, help="repetitions per MTA and variant (default 3)")
    p.add_argument("--messages", type=int, default=5000,
                   help="messages per run at -s 20/100 with 1 KiB (default 5000; -s 1 uses a quarter, 100 KiB a fifth)")
    p.add_argument("--sessions", default=None, help="override the session counts, e.g. 20,100")
    p.add_argument("--idle-sessions", type=int, default=10000)
    p.add_argument("--probe-timeout", type=float, default=20.0,
                   help="seconds the extra session of the idle scenario may wait (default 20)")
    p.add_argument("--sendmail-messages", type=int, default=1000)
    p.add_argument("--submitters", type=int, default=4, help="parallel sendmail processes (default 4)")
    p.add_argument("--durability-messages", type=int, default=200)
    p.add_argument("--fsync-files", type=int, default=2000)
    p.add_argument("--only", choices=("postfix", "fastpost"), help="run one MTA only")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 reps, 500 messages, 1,000 idle sessions, 100 via sendmail")
    p.add_argument("--out", help="result directory (default benchmarks/results/<timestamp>)")
    p.add_argument("--workdir", default="/var/tmp",
                   help="where instances keep their queues (a disk, not tmpfs; default /var/tmp)")
    p.add_argument("--fs", choices=("here", "journal"), default="here",
                   help="'journal': run on a fresh journalled ext4 (loop device, no discard) made "
                        "in --workdir and removed afterwards (harness/loopfs.py); 'here': --workdir as it is")
    p.add_argument("--keep", action="store_true", help="keep the instances' directories")
    p.add_argument("--strict", action="store_true", help="exit 1 if any repetition failed")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.reps = min(opts.reps, 2)
        opts.messages = min(opts.messages, 500)
        opts.idle_sessions = min(opts.idle_sessions, 1000)
        opts.sendmail_messages = min(opts.sendmail_messages, 100)
        opts.durability_messages = min(opts.durability_messages, 50)
        opts.fsync_files = min(opts.fsync_files, 300)
        opts.probe_timeout = min(opts.probe_timeout, 5.0)
    names = [n.strip() for n in opts.scenarios.split(",") if n.strip()]
    bad = [n for n in names if n not in scenarios.BY_NAME]
    if bad:
        p.error(f"unknown scenario(s) {', '.join(bad)}")
    opts.names = names
    override = [int(x) for x in opts.sessions.split(",")] if opts.sessions else None
    defaults = {"accept": [1, 20, 100], "relay": [20, 100], "gateway": [20, 100],
                "context": [1, 20, 100]}
    if opts.quick:
        defaults = {"accept": [1, 20], "relay": [20], "gateway": [20], "context": [20]}
    opts.sessions_for = lambda name: override or defaults.get(name, [20])
    return opts


class Progress:
    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()

    def step(self, what: str) -> None:
        self.done += 1
        el = time.monotonic() - self.t0
        print(f"[{self.done}/{self.total} {el:6.0f}s] {what}", file=sys.stderr, flush=True)

    def note(self, what: str) -> None:
        print(f"    {what}", file=sys.stderr, flush=True)


def headline(rec: dict, sc) -> str:
    if not rec.get("ok"):
        return "FAILED: " + str(rec.get("error", rec.get("unavailable", "?")))[:200]
    if sc.metric == "rate":
        extra = f", CPU {rec['cpu_s_per_1k']:.2f} s/1k" if rec.get("cpu_s_per_1k") else ""
        return f"{rec['rate']:,.0f} {rec.get('unit', sc.unit)}{extra}"
    if sc.name == "idle":
        served = "not served" if rec["probe_seconds"] is None else f"{rec['probe_seconds']:.3f} s"
        return f"{rec['bannered']}/{rec['sessions']} bannered, PSS {rec['pss_mib']} MiB, one more: {served}"
    return f"{rec.get(sc.metric)} {sc.unit}"


def main(argv=None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = opts.out or os.path.join(HERE, "results", stamp)
    os.makedirs(out, exist_ok=True)
    os.makedirs(opts.workdir, exist_ok=True)
    if os.geteuid() != 0:
        print("bench: C Postfix instances need root (postfix -c DIR start); run as root", file=sys.stderr)
        return 1
    try:
        tools.ensure_postfix(log=lambda m: print("bench:", m, file=sys.stderr))
    except tools.ToolError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if opts.fs == "journal":
        try:
            opts.workdir = loopfs.journalled_ext4(opts.workdir)
        except RuntimeError as exc:
            print(f"bench: cannot make the journalled file system: {exc}", file=sys.stderr)
            return 1
    caps = mta.fastpost_capabilities()
    desc = machine.describe(opts.workdir)
    if desc["disk"]["fstype"] == "tmpfs":
        print(f"bench: warning: {opts.workdir} is tmpfs: fsync is free there, durable figures are meaningless",
              file=sys.stderr)
    kinds = [k for k in ("postfix", "fastpost") if opts.only in (None, k)]
    data = {"started": stamp, "machine": desc, "fastpost_capabilities": caps,
            "options": {k: v for k, v in vars(opts).items() if k != "sessions_for"},
            "records": []}
    json_path = os.path.join(out, "results.json")

    plan = []
    for name in opts.names:
        sc = scenarios.BY_NAME[name]
        for variant in sc.variants(opts):
            for rep in range(opts.reps if sc.name != "durability" else 1):
                plan += [(sc, variant, rep, k) for k in (kinds if sc.uses_mta else ["none"])]
    prog = Progress(len(plan))
    print(f"bench: {len(plan)} runs into {out}", file=sys.stderr)
    print(f"bench: fastpost has: {', '.join(k for k, v in caps.items() if v) or 'nothing yet'}",
          file=sys.stderr)

    failures = 0
    for name in opts.names:
        sc = scenarios.BY_NAME[name]
        insts: dict[str, mta.Instance | None] = {}
        unavailable: dict[str, list[str] | str] = {}
        roots = []
        if sc.uses_mta:
            for kind in kinds:
                lack = mta.missing(caps, sc.needs) if kind == "fastpost" else []
                if lack:
                    unavailable[kind] = lack
                    continue
                root = tempfile.mkdtemp(prefix=f"fpb-{name[:8]}-{kind[:2]}-", dir=opts.workdir)
                roots.append(root)
                inst = mta.make(kind, root, sink_port=tools.free_port() if sc.relay else None)
                try:
                    inst.configure(sc.main_cf(inst), sc.tables(inst), sc.smtpd_args())
                    inst.start()
                    insts[kind] = inst
                except (mta.InstanceError, tools.ToolError, OSError) as exc:
                    unavailable[kind] = f"could not start: {exc}"
                    prog.note(f"{kind}: {unavailable[kind][:400]}")
                    if kind == "postfix":
                        failures += 1
        try:
            for sc2, variant, rep, kind in [p for p in plan if p[0] is sc]:
                what = f"{sc.name} {scenarios.label(variant)} {report.LABEL[kind]} rep {rep + 1}"
                rec = {"scenario": sc.name, "variant": scenarios.label(variant), "mta": kind,
                       "rep": rep, "metric": sc.metric, "unit": sc.unit, "params": variant}
                if kind in unavailable:
                    why = unavailable[kind]
                    rec.update({"ok": False, "unavailable": why if isinstance(why, list) else None,
                                "error": why if isinstance(why, str) else "not yet available"})
                else:
                    t0 = time.monotonic()
                    try:
                        rec.update(sc.run_once(insts.get(kind), variant, opts, prog.note))
                    except Exception as exc:  # noqa: BLE001 - one failed run must not end the whole run
                        rec.update({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                    "traceback": traceback.format_exc()[-2000:]})
                    rec["wall"] = round(time.monotonic() - t0, 2)
                    if not rec.get("ok"):
                        failures += 1
                data["records"].append(rec)
                report.write_json(json_path, data)
                prog.step(f"{what}: {headline(rec, sc)}")
        finally:
            for inst in insts.values():
                if inst:
                    inst.stop()
            if not opts.keep:
                for root in roots:
                    shutil.rmtree(root, ignore_errors=True)

    rows = report.groups(data["records"])
    data["summary"] = rows_for_json(rows)
    data["finished"] = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    report.write_json(json_path, data)
    text = report.table(rows)
    with open(os.path.join(out, "table.txt"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(report.markdown(rows) + "\n")
    why = report.plot(rows, os.path.join(out, "plot.png"),
                      f"fastpost vs C Postfix {desc['postfix']} on {desc['cpus']} CPUs, {stamp}")
    print(text)
    print(f"\nresults: {json_path}" + (f"\nplot: {os.path.join(out, 'plot.png')}" if why is None
                                      else f"\nplot not written: {why}"))
    return 1 if (opts.strict and failures) else 0


def rows_for_json(rows):
    out = []
    for row in rows:
        r = {k: v for k, v in row.items() if k != "runs"}
        out.append(r)
    return out


if __name__ == "__main__":
    sys.exit(main())
