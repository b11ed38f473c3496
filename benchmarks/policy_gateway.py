"""Restriction-engine throughput: RCPT decisions per second, fastpost vs C Postfix 3.7.

The smtpd access policy alone (no queue, no delivery): both MTAs get the same gateway
restrictions and tables, and the same sessions from one client process

    smtpd_recipient_restrictions = reject_non_fqdn_recipient,
        check_client_access cidr:clients.cidr        (10,000 prefixes)
        check_sender_access regexp:senders.regexp    (300 expressions)
        check_recipient_access lmdb:recipients       (100,000 keys, built by postmap)
        reject_rbl_client rbl.bench.test             (a local nsd: every 16th client listed)
        permit_mynetworks, reject_unauth_destination

Each session: XCLIENT ADDR=<a new client address> NAME=... HELO=..., EHLO, MAIL FROM,
RCPT TO x R (a mix of accepted, table-refused, relay-refused recipients), RSET, QUIT;
C sessions at once. fastpost runs as ``smtpd.standalone --workers 2`` (the session
layer with the test sink, no cleanup; its log to /dev/null), Postfix as a private
instance (its smtpd processes, cleanup opened at MAIL and aborted at RSET, in_flow_delay
= 0 as no qmgr runs, its log to a file through postlogd). The replies of both are tallied by code and must
agree, so the two did the same work. Every session comes from a new client address
(65,536 of them, every 16th listed), so each costs one uncached RBL query in both MTAs.
Both MTAs run at once; --seconds is split into --rounds windows per MTA, measured
alternately (the order flips each round) after a 2 s warm-up of each.

    .venv/bin/python benchmarks/policy_gateway.py [--seconds 10] [--sessions 20] [--rcpts 10] [--rounds 5]

Needs root (nsd on port 53, Postfix), Debian's postfix and nsd. Prints one line per
MTA (decisions/s and the MTA's CPU ms per decision, from /proc: every process of its
session) and the ratios; absolute numbers move +-20% between runs on this VM (see
shared/reference/testing-here.md), the ratios of interleaved windows are what counts:
their median and range are printed. The rate ratio under load from other processes
mostly measures how the scheduler shares the CPUs (Postfix runs one process per
session, fastpost two workers); CPU per decision is the stable figure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from policy.dnsserver import NsdServer  # noqa: E402
from policy.pfx import PolicyPostfix, free_port  # noqa: E402

ZONE_HEAD = """\
$TTL 300
@   SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@   NS  ns.test.
ns  A   127.0.0.1
"""

BASE = """\
compatibility_level = 3.7
myhostname = mx.bench.test
mydomain = bench.test
mydestination = $myhostname, localhost
mynetworks = 127.0.0.1/32
inet_interfaces = 127.0.0.1
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
relay_domains = relay.bench.test
local_recipient_maps =
"""


def make_tables(d: str) -> None:
    rng = random.Random(7)
    with open(os.path.join(d, "clients.cidr"), "w") as fh:
        nets = sorted({f"172.{16 + rng.randrange(16)}.{rng.randrange(256)}.0/24"
                       for _ in range(12000)})[:10000]
        fh.writelines(f"{n} REJECT listed network\n" for n in nets)
    with open(os.path.join(d, "senders.regexp"), "w") as fh:
        fh.writelines(f"/^spam{i}[a-z]*@bad{i}\\.example$/ REJECT spam {i}\n" for i in range(300))
    with open(os.path.join(d, "recipients"), "w") as fh:
        fh.writelines(f"blocked{i}@relay.bench.test REJECT blocked {i}\n" for i in range(100000))
    subprocess.run(["postmap", f"lmdb:{d}/recipients"], check=True)


def restrictions(d: str) -> str:
    return (f"reject_non_fqdn_recipient, check_client_access cidr:{d}/clients.cidr, "
            f"check_sender_access regexp:{d}/senders.regexp, "
            f"check_recipient_access lmdb:{d}/recipients, reject_rbl_client rbl.bench.test, "
            f"permit_mynetworks, reject_unauth_destination")


def rbl_zone() -> str:
    lines = [ZONE_HEAD]
    for i in range(0, 65536, 16):  # every 16th client of 10.1.x.y is listed
        lines.append(f"{i % 256}.{i // 256}.1.10.rbl A 127.0.0.2\n")
    return "".join(lines)


async def session(port: int, n: int, rcpts: int, tally: collections.Counter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line or line[3:4] != b"-":
                return line

    async def cmd(text: str) -> bytes:
        writer.write(text.encode() + b"\r\n")
        return await reply()

    await reply()
    addr = f"10.1.{(n // 256) % 256}.{n % 256}"  # 65,536 clients: none asked twice in a run
    await cmd(f"XCLIENT ADDR={addr} NAME=c{n}.client.example HELO=c{n}.client.example")
    await cmd(f"EHLO c{n}.client.example")
    await cmd(f"MAIL FROM:<{'spam%d' % (n % 300) if n % 7 == 0 else 'user'}@"
              f"{'bad%d' % (n % 300) if n % 7 == 0 else 'good'}.example>")
    for r in range(rcpts):
        kind = (n + r) % 5
        to = (f"blocked{(n * 31 + r) % 100000}@relay.bench.test" if kind == 0 else
              f"x{r}@elsewhere.example" if kind == 1 else f"ok{r}@relay.bench.test")
        line = await cmd(f"RCPT TO:<{to}>")
        tally[line[:3].decode()] += 1
    await cmd("RSET")
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


_COUNTER = iter(range(10**9))


async def drive(port: int, seconds: float, concurrency: int, rcpts: int):
    tally: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds
    counter = _COUNTER  # one sequence for every drive: no client address comes back

    async def worker():
        while time.monotonic() < deadline:
            await session(port, next(counter), rcpts, tally)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally, time.monotonic() - t0


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system, reaped children included) of every process in a
    session: the MTA's processes, from /proc (stable under load, unlike rates)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            total += sum(int(f) for f in fields[11:15])
    return total / tick


def measure(port: int, args, sid: int, seconds: float) -> tuple[int, float, collections.Counter, float]:
    """One window: RCPT decisions, elapsed seconds, the reply tally, the MTA's CPU seconds."""
    cpu0 = session_cpu(sid)
    tally, elapsed = asyncio.run(drive(port, seconds, args.sessions, args.rcpts))
    return sum(tally.values()), elapsed, tally, session_cpu(sid) - cpu0


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--rcpts", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved measuring windows per MTA (--seconds in all)")
    args = p.parse_args(argv)
    if os.geteuid() != 0 or not shutil.which("postfix"):
        print("needs root and Debian's postfix", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="fp-policy-bench-")
    os.chmod(work, 0o755)
    tables = os.path.join(work, "tables")
    os.makedirs(tables)
    make_tables(tables)
    dns = NsdServer(os.path.join(work, "nsd"), {"bench.test": rbl_zone()})
    dns.start()
    results = {}
    try:
        main_cf = BASE + f"smtpd_recipient_restrictions = {restrictions(tables)}\n"
        # fastpost
        etc = os.path.join(work, "fp")
        os.makedirs(etc)
        with open(os.path.join(etc, "main.cf"), "w") as fh:
            fh.write(main_cf + f"queue_directory = {etc}\nfastpost_dns_servers = {dns.address}\n")
        port = free_port()
        py = sys.executable
        proc = subprocess.Popen([py, "-m", "fastpost.daemons.smtpd.standalone", "-c", etc,
                                 "-l", f"127.0.0.1:{port}", "-d", os.path.join(etc, "spool"),
                                 "--workers", "2"],
                                stdout=subprocess.DEVNULL, start_new_session=True)
        # C Postfix
        # in_flow_delay = 0: no qmgr takes mail out of this instance, so cleanup's flow
        # control tokens never come back and every MAIL would wait up to 1 s for one.
        pfx = PolicyPostfix(os.path.join(work, "pfx"), BASE + "inet_protocols = ipv4\n"
                            "in_flow_delay = 0\n"
                            "default_transport = discard\nrelay_transport = discard\n",
                            {"gw": [f"smtpd_recipient_restrictions = {restrictions(tables)}"]},
                            resolv_conf=dns.resolv_conf)
        try:
            _wait_port(port)
            pfx.start()
            with open(os.path.join(pfx.base, "spool", "pid", "master.pid")) as fh:
                master = int(fh.read().split()[0])
            mtas = {"fastpost": (port, proc.pid), "postfix": (pfx.ports["gw"], os.getsid(master))}
            for p, _ in mtas.values():  # warm-up (tables, caches, processes)
                asyncio.run(drive(p, 2, args.sessions, args.rcpts))
            # Interleaved windows (the order flips each round): load from elsewhere on
            # the machine hits both alike.
            per_round = {name: [] for name in mtas}
            totals = {name: [0, 0.0, collections.Counter(), 0.0] for name in mtas}
            for r in range(args.rounds):
                for name in (list(mtas) if r % 2 == 0 else list(reversed(mtas))):
                    mport, sid = mtas[name]
                    n, elapsed, tally, cpu = measure(mport, args, sid, args.seconds / args.rounds)
                    t = totals[name]
                    t[0] += n
                    t[1] += elapsed
                    t[2].update(tally)
                    t[3] += cpu
                    per_round[name].append((n / elapsed, 1000 * cpu / max(n, 1)))
            for name, (n, elapsed, tally, cpu) in totals.items():
                results[name] = (n / elapsed, tally, 1000 * cpu / max(n, 1))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
            pfx.stop()
    finally:
        dns.stop()
        subprocess.run(["rm", "-rf", work])
    rate_ratios = sorted(a[0] / b[0] for a, b in zip(per_round["fastpost"], per_round["postfix"]))
    cpu_ratios = sorted(a[1] / b[1] for a, b in zip(per_round["fastpost"], per_round["postfix"]))
    for name, (rate, tally, cpu) in results.items():
        print(f"{name:9s} {rate:8.0f} RCPT decisions/s  {cpu:.3f} CPU ms/decision  "
              f"replies {dict(sorted(tally.items()))}")
    fp, pf = results["fastpost"][0], results["postfix"][0]
    same = _shares(results["fastpost"][1]) == _shares(results["postfix"][1])
    print(f"ratio fastpost/postfix {fp / pf:.2f}  CPU per decision "
          f"{results['fastpost'][2] / results['postfix'][2]:.2f}  "
          f"(reply mix {'agrees' if same else 'DIFFERS'})")
    print(f"per round ({args.rounds}): rate ratio median {statistics.median(rate_ratios):.2f} "
          f"range {rate_ratios[0]:.2f}-{rate_ratios[-1]:.2f}; CPU ratio median "
          f"{statistics.median(cpu_ratios):.2f} range {cpu_ratios[0]:.2f}-{cpu_ratios[-1]:.2f}")
    return 0 if same else 1


def _shares(tally: collections.Counter) -> dict:
    total = sum(tally.values()) or 1
    return {k: round(v / total, 2) for k, v in sorted(tally.items())}


def _wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("fastpost smtpd did not start")


if __name__ == "__main__":
    sys.exit(main())
