#!/usr/bin/env python3
"""The smtp agent's per-message work in one process: CPU and instructions per delivery.

    .venv/bin/python benchmarks/smtp/agent_cpu.py [--messages N] [--runs R] [--concurrency C]
        [--profile FILE]
    .venv/bin/python benchmarks/smtp/agent_cpu.py --make-queue DIR --queue-size Q
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=F .venv/bin/python \
        benchmarks/smtp/agent_cpu.py --queue DIR --messages N --runs 1   # N, then 3N

What runs is the agent's own code as its worker runs it, without the process around it:
the Engine (fastpost.daemons.smtp.engine) made as the daemon's post_init makes it (the
settings of a default main.cf, the router, the session cache, the queue store opened
read-only), on a uvloop loop. Each delivery request goes through the protocol codec as
it would over private/smtp (``DeliveryRequest.from_attrs`` of qmgr's attributes, the
result's ``to_attrs``), then ``engine.deliver``: the queue file read from the store,
parsed, its content put in wire form, one SMTP transaction on a cached session to a
Postfix smtp-sink (next hop ``[127.0.0.1]:P``), the status line logged to a maillog
file. C requests are in flight at once (default 20, qmgr's default destination
concurrency), so up to C sessions stay cached, as in the relay benchmark.

The messages (1 KiB, one recipient) are committed first by a forked committer, as
cleanup would (benchmarks/qmgr/bench_qmgr.py's inject), 50 more for a warm-up (every
session opened, everything imported). Printed per run: deliveries/s and CPU
microseconds per delivery (process time of this process, which is only the agent's
work and the driver's few lines). For callgrind, make the queue first (``--make-queue``,
natively: valgrind cannot run the committer's 64 GiB index map) with Q >= 3N + 50
messages, then deliver N and 3N of them from it (``--queue``; every run reads the
same queue and makes requests for all Q): the difference of the totals over 2N is the
instructions per delivery.

Root only (the committer runs as the mail owner, as the agent's worker does).
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench_qmgr import _connects, free_port, inject, wait_for  # noqa: E402


def make_queue(messages: int, root: str | None = None) -> tuple[str, str]:
    if root:
        os.makedirs(root)
    else:
        root = tempfile.mkdtemp(prefix="fp-agentcpu-", dir="/var/tmp")
    os.chmod(root, 0o755)
    etc = os.path.join(root, "etc")
    os.makedirs(etc)
    os.makedirs(os.path.join(root, "spool"))
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(root, "spool"), pw.pw_uid, pw.pw_gid)
    main = {"queue_directory": f"{root}/spool", "data_directory": f"{root}/data",
            "maillog_file": f"{root}/maillog", "mail_owner": "postfix",
            "myhostname": "bench.localdomain", "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4", "smtp_dns_support_level": "disabled",
            # a small index map: valgrind cannot map the default 64 GiB
            "fastpost_queue_index_map_size": str(256 << 20)}
    with open(f"{etc}/main.cf", "w") as fh:
        fh.writelines(f"{k} = {v}\n" for k, v in main.items())
    with open(f"{etc}/master.cf", "w") as fh:
        fh.write("smtp unix - - n - - smtp\n")
    inject(etc, messages, 1)
    return root, etc


async def deliver_all(engine, requests: list, concurrency: int) -> int:
    from fastpost.mail.deliver import DeliveryRequest

    queue = list(reversed(requests))
    sent = 0

    async def worker():
        nonlocal sent
        while queue:
            attrs = queue.pop()
            attrs["request_time"] = repr(time.time())
            result = await engine.deliver(DeliveryRequest.from_attrs(attrs))
            result.to_attrs()
            sent += sum(1 for r in result.results if r.status == "sent")

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--profile", help="write a cProfile of the last run here (pstats file)")
    ap.add_argument("--queue-size", type=int, default=0,
                    help="messages to commit and make requests for (default: what the runs "
                         "use)")
    ap.add_argument("--make-queue", metavar="DIR",
                    help="only commit --queue-size messages into a new instance directory DIR")
    ap.add_argument("--queue", metavar="DIR",
                    help="deliver from DIR (made by --make-queue; read only, kept)")
    opts = ap.parse_args()

    import uvloop

    from fastpost.daemons.smtp import dns
    from fastpost.daemons.smtp.cache import SessionCache
    from fastpost.daemons.smtp.engine import Engine
    from fastpost.daemons.smtp.route import Router
    from fastpost.daemons.smtp.settings import Settings
    from fastpost.mail.config import Config
    from fastpost.mail.deliver import DeliveryRequest, Recipient
    from fastpost.mail.queue import QueueSettings, QueueStore
    from fastpost.mail.queue.message import parse
    from fastpost.util import log

    warm = 50
    if opts.make_queue:
        make_queue(opts.queue_size, opts.make_queue)
        return 0
    if opts.queue:
        root, etc = opts.queue, os.path.join(opts.queue, "etc")
    else:
        root, etc = make_queue(max(opts.queue_size, warm + opts.messages * opts.runs))
    port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _connects(port), 10, "smtp-sink")
        cfg = Config(etc)
        log.init("smtp", maillog_file=os.devnull if opts.queue else f"{root}/maillog",
                 use_syslog=False)
        settings = Settings.from_config(cfg, False)
        store = QueueStore.open(settings=QueueSettings.from_config(cfg), readonly=True)
        lookups = dns.Lookups(settings.dns_servers, timeout=settings.dns_timeout,
                              families=settings.families)
        engine = Engine(settings, Router(settings, lookups, frozenset()), store,
                        SessionCache(settings), resolution=2)
        requests = []
        for m in store.messages():
            p = parse(store.read(m.queue_id))
            now = time.time()
            requests.append(DeliveryRequest(
                m.queue_id, "smtp", f"[127.0.0.1]:{port}", p.sender or "",
                [Recipient(r.offset, r.address) for r in p.recipients], p.arrival, now,
                size=p.size, request_time=now).to_attrs())
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        log.defer_file_writes(loop)  # as the daemon's skeleton does
        loop.run_until_complete(deliver_all(engine, requests[:warm], opts.concurrency))
        rest = requests[warm:]
        results = []
        for run in range(opts.runs):
            batch = rest[run * opts.messages:(run + 1) * opts.messages]
            prof = None
            if opts.profile and run == opts.runs - 1:
                import cProfile

                prof = cProfile.Profile(time.process_time)  # CPU, not wall time
                prof.enable()
            c0, t0 = time.process_time(), time.perf_counter()
            sent = loop.run_until_complete(deliver_all(engine, batch, opts.concurrency))
            c1, t1 = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.disable()
                prof.dump_stats(opts.profile)
            if sent != len(batch):
                raise RuntimeError(f"only {sent} of {len(batch)} sent (see {root}/maillog)")
            results.append(((c1 - c0) * 1e6 / len(batch), len(batch) / (t1 - t0)))
            print(f"run {run + 1}: {len(batch) / (t1 - t0):,.0f} deliveries/s, "
                  f"{(c1 - c0) * 1e6 / len(batch):.1f} CPU us/delivery", file=sys.stderr)
        log.flush()
        store.close()
        cpu = [r[0] for r in results]
        print(f"smtp agent in one process, {opts.messages} deliveries x {opts.runs}, "
              f"concurrency {opts.concurrency}: CPU us/delivery median {statistics.median(cpu):.1f} "
              f"[{min(cpu):.1f}-{max(cpu):.1f}]")
    finally:
        sink.terminate()
        sink.wait()
        if not opts.queue:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
