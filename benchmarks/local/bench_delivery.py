"""Local delivery throughput and CPU: fastpost's local vs Debian's Postfix local.

    .venv/bin/python benchmarks/local/bench_delivery.py [--messages 2000] [--reps 3]

Run as root (real users, delivery as them, a private Postfix). For each target
(``mbox``: the spool directory, root:mail 2775 as Debian's /var/mail; ``maildir``:
home_mailbox = Maildir/; ``alias``: an alias fanning out to two users' mboxes) and
each repetition, interleaved:

* **Postfix**: a private instance (tests/queue/postfix_instance.py) with
  ``defer_transports = local`` receives the messages from ``smtp-source`` (1 KiB, one
  recipient each); then defer_transports is cleared, the instance reloaded and flushed,
  and the clock runs from the first delivered message until the mailboxes hold every
  message (Postfix's qmgr + local, local_destination_concurrency_limit = 2, its
  default);
* **fastpost**: the messages are committed to the queue first (the store's Committer,
  as cleanup will), then delivery requests go to private/local over the real protocol,
  2 at a time (what qmgr would send with the same concurrency limit), until every
  message is delivered (the caller acting as qmgr is part of the measurement).

Figures: deliveries per second (wall clock of the delivery phase) and CPU ms per
delivery: user+system time of the instance's process tree over the phase (master,
live workers, and reaped workers through the master's cutime/cstime), plus, for
fastpost, the benchmark process itself, which stands in for qmgr (Postfix's figure
includes its real qmgr). The machine is shared, so system-wide CPU would not do.
Medians of the repetitions, and the fastpost/Postfix ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from helpers.mailsite import DOMAIN, Site, remove_users  # noqa: E402


HZ = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def tree_cpu(master: int) -> float:
    """CPU seconds of an MTA: its master, every live child, and every reaped child
    (the master's cutime/cstime). Deltas of this are per-instance CPU even on a
    machine other work shares."""
    f = _stat(master)
    total = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                c = _stat(int(entry))
            except OSError:
                continue
            if int(c[1]) == master:
                total += int(c[11]) + int(c[12])
    return total / HZ


def count_messages(paths) -> int:
    n = 0
    for p in paths:
        p = Path(p)
        if p.is_dir():
            new = p / "new"
            n += len(os.listdir(new)) if new.is_dir() else 0
        elif p.exists():
            with open(p, "rb") as fh:
                n += sum(1 for line in fh if line.startswith(b"From "))
    return n


def body(i: int) -> bytes:
    return (b"Subject: bench %d\n\n" % i) + b"".join(b"line %04d of a one kilobyte message....\n"
                                                     % j for j in range(24))


def target_settings(target: str) -> dict:
    return {"home_mailbox": "Maildir/"} if target == "maildir" else {}


def destinations(site: Site, target: str, spool: Path) -> tuple[str, list]:
    if target == "alias":
        return "both", [spool / site.user["a"].pw_name, spool / site.user["b"].pw_name]
    if target == "maildir":
        return site.user["a"].pw_name, [Path(site.user["a"].pw_dir) / "Maildir"]
    return site.user["a"].pw_name, [spool / site.user["a"].pw_name]


def clear(paths) -> None:
    for p in paths:
        subprocess.run(["rm", "-rf", str(p)], check=True)


def run_fastpost(target: str, n: int, conc: int) -> tuple[float, float]:
    with Site(users=("a", "b"), aliases="both: {a}, {b}\n",
              main_cf=target_settings(target)) as site:
        rcpt, paths = destinations(site, target, site.spool)
        clear(paths)
        requests = [site.feed.request("local", site.submit([f"{rcpt}@{DOMAIN}"], body(i)))
                    for i in range(n)]
        site.send(site.user["b"].pw_name)  # warm up: the local worker exists
        clear(paths)
        per_msg = 2 if target == "alias" else 1
        c0, h0, t0 = tree_cpu(site.inst.master_pid), time.process_time(), time.monotonic()

        def worker(chunk):
            client = site.feed.connect("local")
            for req in chunk:
                site.feed.send("local", req, client=client)
            client.close()

        threads = [threading.Thread(target=worker, args=(requests[i::conc],)) for i in range(conc)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        cpu = tree_cpu(site.inst.master_pid) - c0 + time.process_time() - h0
        assert count_messages(paths) == n * per_msg
        return n * per_msg / wall, cpu * 1000 / (n * per_msg)


def run_postfix(target: str, n: int) -> tuple[float, float]:
    spec = importlib.util.spec_from_file_location(
        "postfix_instance", REPO / "tests" / "queue" / "postfix_instance.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    site = Site(users=("a", "b"), aliases="both: {a}, {b}\n")
    try:
        pfx_aliases = site.dir / "pfx-aliases"
        pfx_aliases.write_text(site.aliases.read_text())
        subprocess.run(["postalias", str(pfx_aliases)], check=True)
        root = site.dir / "pfx"
        root.mkdir()
        pfx = mod.PostfixInstance(root, mydestination=DOMAIN, myorigin=DOMAIN,
                                  alias_maps=f"hash:{pfx_aliases}",
                                  local_recipient_maps="", mail_spool_directory=str(site.spool),
                                  defer_transports="local", mailbox_size_limit="0",
                                  **target_settings(target))
        pfx.start()
        try:
            rcpt, paths = destinations(site, target, site.spool)
            clear(paths)
            subprocess.run(["smtp-source", "-s", "10", "-m", str(n), "-l", "1024",
                            "-f", "bench@example.org", "-t", f"{rcpt}@{DOMAIN}",
                            f"127.0.0.1:{pfx.port}"], check=True, capture_output=True)
            deadline = time.monotonic() + 120
            while len(pfx.queue_files("deferred")) < n:
                assert time.monotonic() < deadline, "messages did not reach the queue"
                time.sleep(0.2)
            per_msg = 2 if target == "alias" else 1
            subprocess.run(["postconf", "-c", pfx.etc, "-e", "defer_transports="], check=True)
            subprocess.run(["postfix", "-c", pfx.etc, "reload"], check=True, capture_output=True)
            subprocess.run(["postqueue", "-c", pfx.etc, "-f"], check=True)
            while (first := count_messages(paths)) == 0:  # the clock starts with delivery
                assert time.monotonic() < deadline, open(pfx.maillog).read()[-2000:]
                time.sleep(0.005)
            master = int(open(os.path.join(pfx.spool, "pid", "master.pid")).read().split()[0])
            c0, t0 = tree_cpu(master), time.monotonic()
            while count_messages(paths) < n * per_msg:
                assert time.monotonic() < deadline, (
                    f"{count_messages(paths)} delivered:\n" + open(pfx.maillog).read()[-2000:])
                time.sleep(0.02)
            wall = time.monotonic() - t0
            cpu = tree_cpu(master) - c0
            done = n * per_msg - first
            return done / wall, cpu * 1000 / done
        finally:
            pfx.stop()
    finally:
        site.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--targets", default="mbox,maildir,alias")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (real users, delivery as them, a private Postfix)")
    rows = []
    try:
        for target in args.targets.split(","):
            fp, pf = [], []
            for rep in range(args.reps):
                pf.append(run_postfix(target, args.messages))
                fp.append(run_fastpost(target, args.messages, 2))
                print(f"{target} rep {rep + 1}: postfix {pf[-1][0]:.0f}/s {pf[-1][1]:.2f} ms, "
                      f"fastpost {fp[-1][0]:.0f}/s {fp[-1][1]:.2f} ms", file=sys.stderr)
            rows.append((target, statistics.median(r for r, _ in pf),
                         statistics.median(c for _, c in pf),
                         statistics.median(r for r, _ in fp),
                         statistics.median(c for _, c in fp),
                         statistics.median(f[0] / p[0] for f, p in zip(fp, pf))))
    finally:
        remove_users()
    print(f"| target | Postfix deliveries/s | Postfix CPU ms/delivery | fastpost deliveries/s "
          f"| fastpost CPU ms/delivery | throughput ratio |")
    print("|---|---|---|---|---|---|")
    for t, pr, pc, fr, fc, ratio in rows:
        print(f"| {t} | {pr:.0f} | {pc:.2f} | {fr:.0f} | {fc:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
