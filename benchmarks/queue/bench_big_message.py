"""Peak memory of the queue tools on one message with very many recipients.

Builds a queue holding one message with --recipients recipients (100,000 by default;
a tenth of them deferred with a defer log entry each, as qmgr leaves them) and a few
small messages, then runs `fastpost queue -j`, `queue -p`, `super -h ALL --recipient`
and `cat -q` as child processes and reports each one's peak RSS and peak anonymous
memory (sampled every 10 ms; RSS also counts the index pages mapped while reading).

    .venv/bin/python benchmarks/queue/bench_big_message.py [--recipients N]
        [--src DIR ...]     # run the commands with another source tree first on
                            # PYTHONPATH (e.g. an export of an older commit: before/after)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fastpost.mail.config import Config  # noqa: E402
from fastpost.mail.queue import DEFERRED, QueueStore  # noqa: E402
from fastpost.mail.queue import index as ix  # noqa: E402

CHILD = (
    "import sys, threading, time\n"
    "peak = [0]\n"
    "def anon():\n"
    "    with open('/proc/self/status') as fh:\n"
    "        for line in fh:\n"
    "            if line.startswith('RssAnon:'):\n"
    "                return int(line.split()[1])\n"
    "    return 0\n"
    "def sample():\n"
    "    while True:\n"
    "        peak[0] = max(peak[0], anon())\n"
    "        time.sleep(0.01)\n"
    "threading.Thread(target=sample, daemon=True).start()\n"
    "from fastpost.cli.main import main\n"
    "rc = main(['fastpost'] + sys.argv[1:])\n"
    "peak[0] = max(peak[0], anon())\n"
    "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "sys.stderr.write('MAXRSS %d %d\\n' % (hwm, peak[0]))\n"
    "sys.exit(rc)\n"
)


def run_child(src: str | None, cfg: str, *args: str):
    """Run fastpost in a child; return (seconds, peak RSS MiB, peak anon MiB, what it said)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "-c", cfg, *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    hwm = anon = 0.0
    said = ""
    for line in proc.stderr.splitlines():
        if line.startswith("MAXRSS "):
            hwm, anon = (int(x) / 1024 for x in line.split()[1:3])
        else:
            said = line
    if proc.returncode:
        raise SystemExit(f"fastpost {' '.join(args)} failed: {proc.stderr[-500:]}")
    return elapsed, hwm, anon, said or f"{len(proc.stdout):,} bytes out"


async def build(store: QueueStore, n: int) -> str:
    c = store.committer("bench")
    try:
        for i in range(3):
            b = c.builder()
            b.time(time.time())
            b.set_sender(f"small{i}@example.org")
            b.add_recipient(f"x{i}@small.example", f"x{i}@small.example")
            await b.write(b"Subject: small\r\n\r\nbody\r\n")
            await c.commit(b)
        b = c.builder()
        b.time(time.time())
        b.set_sender("list@example.org")
        for i in range(n):
            a = f"member{i}@d{i % 50}.example"
            b.add_recipient(a, a)
        await b.write(b"Subject: to a big list\r\n\r\n" + b"body line\r\n" * 50)
        return await c.commit(b)
    finally:
        await c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--src", action="append", default=[],
                    help="another source tree to measure first (PYTHONPATH), repeatable")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="fastpost-bigmsg-")
    cfg_dir = os.path.join(base, "etc")
    os.mkdir(cfg_dir)
    with open(os.path.join(cfg_dir, "main.cf"), "w") as fh:
        fh.write(f"queue_directory = {base}/queue\nmaillog_file = {base}/maillog\n"
                 f"maillog_file_prefixes = {base}\n")
    try:
        store = QueueStore.open(cfg=Config(cfg_dir))
        t0 = time.perf_counter()
        qid = asyncio.run(build(store, args.recipients))
        rcpts = store.recipients(qid)
        deferred = rcpts[: len(rcpts) // 10]
        for k in range(0, len(deferred), 5000):
            with store.edit() as ed:
                part = deferred[k : k + 5000]
                ed.mark_recipients(qid, [r.offset for r in part], ix.RCPT_DEFERRED)
                for r in part:
                    ed.append_log(qid, "defer", f"recipient={r.address}\noffset={r.offset}\n"
                                  f"status=4.4.1\nreason=connect to {r.domain}: Connection "
                                  "refused\n".encode())
        with store.edit() as ed:
            ed.set_state(qid, DEFERRED, next_retry=time.time() + 3600)
        del rcpts, deferred
        store.close()
        print(f"queue: {qid} with {args.recipients:,} recipients ({args.recipients // 10:,} "
              f"deferred with a log entry each) + 3 small messages, built in "
              f"{time.perf_counter() - t0:.1f} s")
        last = f"member{args.recipients - 1}@d{(args.recipients - 1) % 50}.example"
        # each group runs whole per tree (-h then -H: every tree finds the same queue)
        groups = [[("queue", "-j")], [("queue", "-p")],
                  [("super", "-h", "ALL", "--recipient", last), ("super", "-H", "ALL")],
                  [("cat", "-q", qid)]]
        trees = [*args.src, None]
        print(f"{'tree':<10} {'command':<52} {'seconds':>8} {'peak RSS':>9} {'anon peak':>10}  result (MiB)")
        for group in groups:
            for tree in trees:
                for cmd in group:
                    secs, hwm, anon, said = run_child(tree, cfg_dir, *cmd)
                    name = "this" if tree is None else os.path.basename(tree.rstrip("/")) or tree
                    text = " ".join(cmd)
                    text = text if len(text) <= 52 else text[:49] + "..."
                    print(f"{name:<10} {text:<52} {secs:>8.2f} {hwm:>9.0f} {anon:>10.0f}  {said}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
