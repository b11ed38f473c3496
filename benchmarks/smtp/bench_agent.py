#!/usr/bin/env python3
"""smtp delivery agent: deliveries per second and CPU per message to smtp-sink.

    .venv/bin/python benchmarks/smtp/bench_agent.py [--messages N] [--rounds R]
        [--only agent|relay] [--concurrency C] [--workdir /var/tmp] [--json]

1. **agent** — the agent alone. A private fastpost instance runs only the ``smtp``
   service; N one-recipient 1 KiB messages are committed on hold (so no qmgr takes
   them), and a driver acting as qmgr sends their delivery requests over
   private/smtp, C at a time (default 20: qmgr's default destination concurrency),
   next hop ``[127.0.0.1]:P`` where Postfix's smtp-sink listens. Printed: deliveries/s
   and the agent's CPU ms per message (utime+stime of the smtp worker processes from
   /proc), with connection reuse (the default) and without it
   (smtp_connection_cache_time_limit = 0: a new TCP+SMTP session per message).

2. **relay** — delivery through each MTA's real qmgr and smtp agent, next to C
   Postfix: N messages are put on hold (fastpost: committed as cleanup would;
   Postfix: smtp-source to its smtpd with an access rule HOLD), released, and the
   queue flushed with ``relayhost = [127.0.0.1]:P`` (an smtp-sink); timed until the
   queue is empty. Printed: messages/s and CPU ms per message of qmgr, of the smtp
   processes and of trivial-rewrite. This is the delivery half of the end-to-end
   relay scenario (``./dev bench --scenarios relay``), which needs the accept path.

Each case runs --rounds times (default 3); medians are printed; the MTAs run
interleaved so their ratio is the stable figure. Needs root and Debian's postfix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "qmgr"))

from bench_qmgr import (  # noqa: E402 - shared helpers of the qmgr benchmark
    _connects, children, cmdline, cpu_by_daemon, free_port, inject, proc_cpu, wait_for,
)


class Sink:
    """smtp-sink on a free port (as nobody), counting with -c is not needed: the
    agent's results (fastpost) or the empty queue (both) say every message went."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "-m", "1000",
                                      f"127.0.0.1:{self.port}", "1000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _connects(self.port), 10, "smtp-sink")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)[0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def _fastpost_instance(workdir: str, master_cf: str, extra: dict) -> tuple[str, str, list, dict]:
    root = tempfile.mkdtemp(prefix="fp-smtp-", dir=workdir)
    os.chmod(root, 0o755)
    etc = os.path.join(root, "etc")
    os.makedirs(etc)
    main = {
        "compatibility_level": "3.6", "queue_directory": f"{root}/spool",
        "data_directory": f"{root}/data", "maillog_file": f"{root}/maillog",
        "maillog_file_prefixes": root, "syslog_name": "fpbench", "mail_owner": "postfix", "setgid_group": "postdrop",
        "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4",
        "myhostname": "bench.localdomain", "queue_run_delay": "1h",
        "default_destination_concurrency_limit": "20", **extra,
    }
    with open(f"{etc}/main.cf", "w") as fh:
        fh.writelines(f"{k} = {v}\n" for k, v in main.items())
    with open(f"{etc}/master.cf", "w") as fh:
        fh.write(master_cf)
    fp = [sys.executable, "-m", "fastpost", "-c", etc]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    subprocess.run(fp + ["start"], check=True, env=env, capture_output=True)
    return root, etc, fp, env


# -- 1. the agent alone ------------------------------------------------------------------

async def _drive(qdir: str, ids: list, nexthop: str, concurrency: int) -> dict:
    from fastpost.mail import ipc
    from fastpost.mail.deliver import PROTOCOL, DeliveryRequest, DeliveryResult, Recipient
    from fastpost.mail.queue import QueueSettings, QueueStore
    from fastpost.mail.queue.message import parse

    store = QueueStore.open(settings=QueueSettings(qdir), readonly=True)
    requests = []
    for qid in ids:
        p = parse(store.read(qid))
        now = time.time()
        requests.append(DeliveryRequest(
            qid, "smtp", nexthop, p.sender or "",
            [Recipient(r.offset, r.address) for r in p.recipients], p.arrival, now,
            size=p.size, request_time=now).to_attrs())
    store.close()
    path = ipc.endpoint(qdir, "smtp", ipc.PRIVATE)
    counts = {"sent": 0, "other": 0}
    queue = list(reversed(requests))

    async def worker():
        client = ipc.AsyncAttrClient(path, PROTOCOL, timeout=120)
        try:
            while queue:
                attrs = queue.pop()
                attrs["request_time"] = repr(time.time())
                res = DeliveryResult.from_attrs(await client.request(attrs))
                for r in res.results:
                    counts["sent" if r.status == "sent" else "other"] += 1
        finally:
            await client.aclose() if hasattr(client, "aclose") else client.close()

    t0 = time.monotonic()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    counts["elapsed"] = time.monotonic() - t0
    return counts


def run_agent(workdir: str, messages: int, concurrency: int, reuse: bool) -> dict:
    sink = Sink()
    extra = {} if reuse else {"smtp_connection_cache_time_limit": "0"}
    root, etc, fp, env = _fastpost_instance(
        workdir, "smtp unix - - n - - smtp\n", extra)
    try:
        master = int(open(f"{root}/spool/pid/master.pid").read().split()[0])
        inject(etc, messages, 1)
        names = {"smtp": "smtp"}
        from fastpost.mail.queue import QueueSettings, QueueStore
        with QueueStore.open(settings=QueueSettings(f"{root}/spool"), readonly=True) as s:
            ids = [m.queue_id for m in s.messages()]
        # 20 requests first: the worker exists and has imported everything.
        asyncio.run(_drive(f"{root}/spool", ids[:20], f"[127.0.0.1]:{sink.port}", 5))
        before, sink0 = cpu_by_daemon(master, names), sink.cpu()
        res = asyncio.run(_drive(f"{root}/spool", ids[20:], f"[127.0.0.1]:{sink.port}",
                                 concurrency))
        time.sleep(0.2)
        after = cpu_by_daemon(master, names)
        n = len(ids) - 20
        if res["sent"] != n:
            raise RuntimeError(f"only {res['sent']} of {n} sent ({res})")
        return {"n": n, "elapsed": res["elapsed"],
                "cpu": {k: after[k] - before[k] for k in after}, "sink_cpu": sink.cpu() - sink0,
                "workers": sum(1 for p in children(master) if cmdline(p).startswith("smtp"))}
    finally:
        subprocess.run(fp + ["stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        sink.stop()


# -- 2. relay through qmgr, fastpost and Postfix -------------------------------------------

FP_MASTER = """\
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -    -  trivial-rewrite
bounce    unix  -  -  n  -    0  bounce
defer     unix  -  -  n  -    0  bounce
trace     unix  -  -  n  -    0  bounce
smtp      unix  -  -  n  -    -  smtp
relay     unix  -  -  n  -    -  smtp
"""


def run_fastpost(workdir: str, messages: int) -> dict:
    sink = Sink()
    root, etc, fp, env = _fastpost_instance(workdir, FP_MASTER, {
        "relayhost": f"[127.0.0.1]:{sink.port}", "default_transport": "smtp",
        "relay_transport": "relay"})
    try:
        master = int(open(f"{root}/spool/pid/master.pid").read().split()[0])
        subprocess.run(fp + ["flush"], check=True, env=env, capture_output=True)
        wait_for(lambda: any(cmdline(p).startswith("qmgr") for p in children(master)), 30, "qmgr")
        inject(etc, messages, 1)
        subprocess.run(fp + ["super", "-H", "ALL"], check=True, env=env, capture_output=True)
        names = {"qmgr": "qmgr", "trivial-rewrite": "trivial-rewrite", "smtp": "smtp"}
        before, sink0 = cpu_by_daemon(master, names), sink.cpu()
        t0 = time.monotonic()
        subprocess.run(fp + ["queue", "-f"], check=True, env=env, capture_output=True)
        from fastpost.mail.queue import QueueSettings, QueueStore

        def empty():
            with QueueStore.open(settings=QueueSettings(f"{root}/spool"), readonly=True) as s:
                c = s.counts()
            return c["incoming"] + c["active"] + c["deferred"] == 0

        wait_for(empty, 600, "an empty queue")
        elapsed = time.monotonic() - t0
        time.sleep(0.3)
        after = cpu_by_daemon(master, names)
        log = open(f"{root}/maillog").read()
        sent = log.count("status=sent")
        if sent < messages:
            raise RuntimeError(f"fastpost: only {sent} of {messages} sent")
        return {"elapsed": elapsed, "cpu": {k: after[k] - before[k] for k in after},
                "sink_cpu": sink.cpu() - sink0}
    finally:
        subprocess.run(fp + ["stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        sink.stop()


PF_MASTER = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def run_postfix(workdir: str, messages: int) -> dict:
    sink = Sink()
    root = tempfile.mkdtemp(prefix="pf-smtp-", dir=workdir)
    os.chmod(root, 0o755)
    etc, spool, data = (os.path.join(root, d) for d in ("etc", "spool", "data"))
    for d in (etc, spool, data):
        os.makedirs(d)
    shutil.chown(data, "postfix")
    port = free_port()
    main = {
        "compatibility_level": "3.7", "queue_directory": spool, "data_directory": data,
        "mail_owner": "postfix", "myhostname": "bench.localdomain", "mydomain": "localdomain",
        "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
        "maillog_file": f"{root}/maillog", "maillog_file_prefixes": root, "syslog_name": "pfbench",
        "mydestination": "", "alias_maps": "", "alias_database": "", "local_recipient_maps": "",
        "relayhost": f"[127.0.0.1]:{sink.port}", "default_transport": "smtp",
        "relay_transport": "relay", "queue_run_delay": "1h",
        "smtpd_client_restrictions": "check_client_access inline:{127.0.0.1=HOLD}",
        "default_destination_concurrency_limit": "20",
    }
    with open(f"{etc}/main.cf", "w") as fh:
        fh.writelines(f"{k} = {v}\n" for k, v in main.items())
    with open(f"{root}/maillog", "a"):
        pass
    os.chmod(f"{root}/maillog", 0o666)
    with open(f"{etc}/master.cf", "w") as fh:
        fh.write(PF_MASTER.format(port=f"127.0.0.1:{port}"))
    subprocess.run(["postfix", "-c", etc, "start"], check=True, capture_output=True)
    try:
        wait_for(lambda: _connects(port), 30, "postfix smtpd")
        master = int(open(f"{spool}/pid/master.pid").read().split()[0])
        subprocess.run(["smtp-source", "-s", "20", "-m", str(messages), "-l", "1000",
                        "-f", "sender@example.org", "-t", "user@d0.example",
                        f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=600)
        wait_for(lambda: sum(len(fs) for _, _, fs in os.walk(f"{spool}/hold")) >= messages,
                 120, "messages on hold")
        subprocess.run(["postsuper", "-c", etc, "-H", "ALL"], check=True, capture_output=True)
        names = {"qmgr": "qmgr", "trivial-rewrite": "trivial-rewrite", "smtp": "smtp"}
        before, sink0 = cpu_by_daemon(master, names), sink.cpu()
        t0 = time.monotonic()
        subprocess.run(["postqueue", "-c", etc, "-f"], check=True, capture_output=True)
        wait_for(lambda: not any(fs for q in ("deferred", "active", "incoming")
                                 for _, _, fs in os.walk(f"{spool}/{q}")),
                 600, "an empty Postfix queue")
        elapsed = time.monotonic() - t0
        time.sleep(0.3)
        after = cpu_by_daemon(master, names)
        sent = open(f"{root}/maillog").read().count("status=sent")
        if sent < messages:
            raise RuntimeError(f"postfix: only {sent} of {messages} sent")
        return {"elapsed": elapsed, "cpu": {k: after[k] - before[k] for k in after},
                "sink_cpu": sink.cpu() - sink0}
    finally:
        subprocess.run(["postfix", "-c", etc, "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        sink.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--only", choices=("agent", "relay"))
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("smtp-sink"):
        print("needs root and Debian's postfix package (smtp-sink)")
        return 1
    raw: dict = {}
    if args.only in (None, "agent"):
        print(f"{'smtp agent alone -> smtp-sink':44} {'msgs/s':>8} {'agent ms/msg':>13} "
              f"{'sink ms/msg':>12} {'workers':>8}")
        for reuse in (True, False):
            rs = [run_agent(args.workdir, args.messages + 20, args.concurrency, reuse)
                  for _ in range(args.rounds)]
            raw[f"agent reuse={reuse}"] = rs
            med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
            label = (f"{args.messages} msgs, {args.concurrency} at a time, "
                     f"{'reuse' if reuse else 'no reuse'}")
            print(f"{label:44} {med(lambda r: r['n'] / r['elapsed']):8,.0f} "
                  f"{med(lambda r: (r['cpu']['smtp'] + r['cpu']['exited']) * 1000 / r['n']):13.3f} "
                  f"{med(lambda r: r['sink_cpu'] * 1000 / r['n']):12.3f} "
                  f"{med(lambda r: r['workers']):8.0f}")
    if args.only in (None, "relay"):
        print(f"\n{'through qmgr + smtp -> smtp-sink':44} {'msgs/s':>8} {'qmgr ms/msg':>12} "
              f"{'smtp':>8} {'rewrite':>8} {'exited':>8}")
        results: dict = {"postfix": [], "fastpost": []}
        for _ in range(args.rounds):
            results["postfix"].append(run_postfix(args.workdir, args.messages))
            results["fastpost"].append(run_fastpost(args.workdir, args.messages))
        for m, rs in results.items():
            raw[f"relay {m}"] = rs
            med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
            per = lambda k: med(lambda r: r["cpu"][k] * 1000 / args.messages)  # noqa: E731
            print(f"{m + ', ' + str(args.messages) + ' msgs':44} "
                  f"{med(lambda r: args.messages / r['elapsed']):8,.0f} {per('qmgr'):12.3f} "
                  f"{per('smtp'):8.3f} {per('trivial-rewrite'):8.3f} {per('exited'):8.3f}")
    if args.json:
        print(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
