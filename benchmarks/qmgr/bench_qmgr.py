#!/usr/bin/env python3
"""qmgr: scheduling decisions per second, and CPU per message through a real qmgr.

    .venv/bin/python benchmarks/qmgr/bench_qmgr.py [--messages N] [--rounds R]
        [--only scheduler|resolver|fastpost|postfix] [--rcpts 1,10] [--workdir /var/tmp]

1. **scheduler** — fastpost.daemons.qmgr.scheduler alone (no I/O): entries queued for
   many messages over many destinations, then started, finished and given feedback one
   by one, as qmgr does. Printed: scheduling decisions (entries started) per second, for
   100,000 one-recipient messages over 1,000 destinations, and for one 10,000-entry
   list interleaved with 10,000 small messages.

   **resolver** — fastpost.mail.resolve.Resolver alone (what trivial-rewrite does per
   request): resolves per second for remote and local addresses, with a texthash
   transport map of 1,000 domains, and the client cache's hit path (resolve_cached).

2. **fastpost** and **postfix** — the same flow through each MTA's real qmgr, with
   every recipient going to the ``discard`` agent: N messages are put on hold (fastpost:
   committed by a forked committer process as cleanup would; Postfix: submitted by
   smtp-source to its smtpd and held by an access rule), released into the deferred
   queue (``super -H ALL`` / ``postsuper -H ALL``), then the queue is flushed
   (``queue -f`` / ``postqueue -f``) and timed until it is empty. Printed: messages/s
   and CPU milliseconds per message of qmgr, of trivial-rewrite and of the discard
   agent (utime+stime from /proc, sampled before the flush and after the queue
   emptied; Postfix's discard processes that exit in between are counted through the
   master's cutime/cstime as "exited"). Postfix needs root and Debian's postfix package.

Each case runs --rounds times (default 3); medians are printed. Numbers move ±20%
between runs on a VM; the two MTAs run interleaved so their ratio is the stable figure.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")


# -- 1. the scheduler alone ----------------------------------------------------------------

def bench_scheduler(messages: int, destinations: int, big: int = 0) -> float:
    from fastpost.daemons.qmgr.scheduler import Entry, Transport, TransportLimits

    t = Transport("smtp", TransportLimits(process_limit=100, dest_concurrency_limit=20))

    class Msg:
        __slots__ = ()

    start = time.perf_counter()
    if big:
        bigmsg = Msg()
        t.add_entries([Entry(bigmsg, [i], t.queue(f"list{i % destinations}.example")) for i in range(big)])
    for i in range(messages):
        t.add_entries([Entry(Msg(), [i], t.queue(f"d{i % destinations}.example"))])
    inflight: list = []
    done = 0
    now = 1.0
    while True:
        entry, _ = t.next_entry(now)
        if entry is not None:
            heapq.heappush(inflight, (done, id(entry), entry))
            if len(inflight) < 100:
                continue
        if not inflight:
            break
        _, _, e = heapq.heappop(inflight)
        t.finished(e)
        e.queue.positive_feedback()
        t.mark_ready(e.queue)
        done += 1
    elapsed = time.perf_counter() - start
    assert done == messages + big, (done, messages, big)
    return done / elapsed


def bench_resolver(n: int = 20000) -> dict:
    from fastpost.mail.config import Config
    from fastpost.mail.resolve import Resolved, Resolver
    from fastpost.mail.rewrite_clnt import _Cache

    d = tempfile.mkdtemp(prefix="fp-resolve-")
    try:
        with open(f"{d}/transport", "w") as fh:
            fh.writelines(f"t{i}.example  relay:[nh{i}.example]\n" for i in range(1000))
        cfg = Config(d, text=f"compatibility_level = 3.6\nmyhostname = h.example\n"
                             f"relayhost = [smart.example]\ntransport_maps = texthash:{d}/transport\n")
        r = Resolver(cfg)
        out = {}
        for label, addrs in (("remote", [f"u{i}@d{i % 500}.example" for i in range(n)]),
                             ("transport map hit", [f"u{i}@t{i % 1000}.example" for i in range(n)]),
                             ("local", [f"u{i}@h.example" for i in range(n)])):
            start = time.perf_counter()
            for a in addrs:
                r.resolve("s@example.org", a)
            out[label] = n / (time.perf_counter() - start)
        cache = _Cache(10000, 60)
        keys = [("resolve", None, f"u{i % 5000}@d.example") for i in range(n)]
        for k in keys[:5000]:
            cache.put(k, Resolved("smtp", "d.example", k[2], 4096))
        start = time.perf_counter()
        for k in keys:
            cache.get(k)
        out["client cache hit"] = n / (time.perf_counter() - start)
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- process CPU -------------------------------------------------------------------------------

def proc_cpu(pid: int) -> tuple[float, float]:
    """(own CPU, reaped children's CPU) in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        f = fh.read().rsplit(b")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def children(pid: int) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat", "rb") as fh:
                    f = fh.read().rsplit(b")", 1)[1].split()
                if int(f[1]) == pid and f[0] != b"Z":
                    out.append(int(e))
            except OSError:
                pass
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_by_daemon(master: int, names: dict) -> dict:
    """CPU seconds of the master's children whose command line starts with a name."""
    out = {k: 0.0 for k in names}
    for pid in children(master):
        cmd = cmdline(pid)
        for key, prefix in names.items():
            if cmd.startswith(prefix):
                try:
                    out[key] += proc_cpu(pid)[0]
                except OSError:
                    pass
    out["exited"] = proc_cpu(master)[1]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timeout waiting for {what}")
        time.sleep(0.05)


# -- 2a. fastpost -------------------------------------------------------------------------------

FP_MASTER = """\
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -    -  trivial-rewrite
bounce    unix  -  -  n  -    0  bounce
defer     unix  -  -  n  -    0  bounce
trace     unix  -  -  n  -    0  bounce
discard   unix  -  -  n  -    -  discard
"""


def run_fastpost(workdir: str, messages: int, rcpts: int) -> dict:
    root = tempfile.mkdtemp(prefix="fp-qmgr-", dir=workdir)
    os.chmod(root, 0o755)
    etc = os.path.join(root, "etc")
    os.makedirs(etc)
    owner = "postfix" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    main = {
        "compatibility_level": "3.6", "queue_directory": f"{root}/spool",
        "data_directory": f"{root}/data", "maillog_file": f"{root}/maillog",
        "maillog_file_prefixes": root, "syslog_name": "fpbench", "mail_owner": owner,
        "setgid_group": "postdrop" if os.geteuid() == 0 else owner,
        "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4",
        "myhostname": "bench.localdomain", "default_transport": "discard",
        "queue_run_delay": "1h", "default_destination_concurrency_limit": "20",
    }
    with open(f"{etc}/main.cf", "w") as fh:
        fh.writelines(f"{k} = {v}\n" for k, v in main.items())
    with open(f"{etc}/master.cf", "w") as fh:
        fh.write(FP_MASTER)
    fp = [sys.executable, "-m", "fastpost", "-c", etc]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    subprocess.run(fp + ["start"], check=True, env=env, capture_output=True)
    try:
        master = int(open(f"{root}/spool/pid/master.pid").read().split()[0])
        subprocess.run(fp + ["flush"], check=True, env=env, capture_output=True)  # qmgr up, idle
        wait_for(lambda: any(cmdline(p).startswith("qmgr") for p in children(master)), 30, "qmgr")
        inject(etc, messages, rcpts)
        subprocess.run(fp + ["super", "-H", "ALL"], check=True, env=env, capture_output=True)
        names = {"qmgr": "qmgr", "trivial-rewrite": "trivial-rewrite", "discard": "discard",
                 "bounce": "bounce"}
        before = cpu_by_daemon(master, names)
        t0 = time.monotonic()
        subprocess.run(fp + ["queue", "-f"], check=True, env=env, capture_output=True)
        sys.path.insert(0, os.path.join(ROOT, "src"))
        from fastpost.mail.queue import QueueSettings, QueueStore

        def empty():
            with QueueStore.open(settings=QueueSettings(f"{root}/spool"), readonly=True) as s:
                c = s.counts()
            return c["incoming"] + c["active"] + c["deferred"] == 0

        wait_for(empty, 600, "an empty queue")
        elapsed = time.monotonic() - t0
        time.sleep(0.3)  # last log lines, last CPU ticks
        after = cpu_by_daemon(master, names)
        log = open(f"{root}/maillog").read()
        assert log.count(": removed") >= messages, "not every message was removed"
        return {"elapsed": elapsed, "cpu": {k: after[k] - before[k] for k in after}}
    finally:
        subprocess.run(fp + ["stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def inject(etc: str, messages: int, rcpts: int) -> None:
    """Commit messages on hold through a committer, in a forked process as the mail owner."""
    from fastpost.mail.config import Config
    # Everything the child needs is imported now: after it drops privileges it may not
    # be able to read the Python installation (root's pyenv, for one).
    import fastpost.mail.queue.builder  # noqa: F401
    import fastpost.mail.queue.committer  # noqa: F401

    cfg = Config(etc)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.chdir(cfg.get("queue_directory"))
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postfix")
                os.setgroups([pw.pw_gid])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            asyncio.run(_inject(cfg, messages, rcpts))
            status = 0
        except BaseException as exc:  # noqa: BLE001 - shown, then the child exits
            print(f"inject: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if status:
        raise RuntimeError("injecting messages failed")


async def _inject(cfg, messages: int, rcpts: int) -> None:
    from fastpost.mail.queue import HOLD, QueueSettings, QueueStore

    store = QueueStore.open(settings=QueueSettings.from_config(cfg, queue_directory="."))
    committer = store.committer("bench")
    body = b"Subject: bench\n\n" + b"x" * 900 + b"\n"

    async def one(i: int):
        b = committer.builder()
        b.time(time.time())
        b.set_sender("sender@example.org")
        for r in range(rcpts):
            b.add_recipient(f"{r}user0@d0.example")  # as smtp-source -r names them
        await b.write(body)
        await committer.commit(b, HOLD)

    for start in range(0, messages, 200):
        await asyncio.gather(*[one(i) for i in range(start, min(messages, start + 200))])
    await committer.close()
    store.close()


# -- 2b. C Postfix --------------------------------------------------------------------------------

PF_MASTER = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
discard   unix  -       -       n       -       -       discard
showq     unix  n       -       n       -       -       showq
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def run_postfix(workdir: str, messages: int, rcpts: int) -> dict:
    root = tempfile.mkdtemp(prefix="pf-qmgr-", dir=workdir)
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
        "default_transport": "discard", "relay_transport": "discard", "queue_run_delay": "1h",
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
        to = " ".join(f"-t user{r}@d{r % 50}.example" for r in range(1))
        subprocess.run(["smtp-source", "-s", "20", "-m", str(messages), "-r", str(rcpts),
                        "-l", "1000", "-f", "sender@example.org", *to.split(),
                        f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=600)

        def held() -> bool:
            return sum(len(fs) for _, _, fs in os.walk(f"{spool}/hold")) >= messages
        wait_for(held, 120, "messages on hold")
        subprocess.run(["postsuper", "-c", etc, "-H", "ALL"], check=True, capture_output=True)
        names = {"qmgr": "qmgr", "trivial-rewrite": "trivial-rewrite", "discard": "discard",
                 "bounce": "bounce"}
        before = cpu_by_daemon(master, names)
        t0 = time.monotonic()
        subprocess.run(["postqueue", "-c", etc, "-f"], check=True, capture_output=True)

        def empty() -> bool:
            return not any(fs for q in ("deferred", "active", "incoming")
                           for _, _, fs in os.walk(f"{spool}/{q}"))
        wait_for(empty, 600, "an empty Postfix queue")
        elapsed = time.monotonic() - t0
        time.sleep(0.3)
        after = cpu_by_daemon(master, names)
        return {"elapsed": elapsed, "cpu": {k: after[k] - before[k] for k in after}}
    finally:
        subprocess.run(["postfix", "-c", etc, "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- main ----------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rcpts", default="1,10")
    ap.add_argument("--only", choices=("scheduler", "resolver", "fastpost", "postfix"))
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "src"))
    raw: dict = {}
    if args.only in (None, "scheduler"):
        print(f"{'scheduler alone':46} {'decisions/s':>12}")
        for label, kw in (("100,000 messages, 1,000 destinations", dict(messages=100_000, destinations=1000)),
                          ("10,000-entry list + 10,000 small messages",
                           dict(messages=10_000, destinations=500, big=10_000))):
            rates = [bench_scheduler(**kw) for _ in range(args.rounds)]
            raw[label] = rates
            print(f"{label:46} {statistics.median(rates):12,.0f}")
    if args.only in (None, "resolver"):
        runs = [bench_resolver() for _ in range(args.rounds)]
        print(f"\n{'resolver alone':46} {'resolves/s':>12}")
        for label in runs[0]:
            raw[f"resolve {label}"] = [r[label] for r in runs]
            print(f"{label:46} {statistics.median(r[label] for r in runs):12,.0f}")
    mtas = [m for m in ("postfix", "fastpost") if args.only in (None, m)]
    if "postfix" in mtas and (os.geteuid() != 0 or not shutil.which("smtp-source")):
        print("postfix: skipped (needs root and Debian's postfix package)")
        mtas.remove("postfix")
    if mtas:
        print()
        print(f"{'through qmgr to discard':38} {'msgs/s':>8} {'qmgr ms/msg':>12} "
              f"{'rewrite':>8} {'discard':>8} {'exited':>8}")
    for rcpts in [int(x) for x in args.rcpts.split(",")]:
        results: dict = {m: [] for m in mtas}
        for _ in range(args.rounds):
            for m in mtas:  # interleaved
                fn = run_postfix if m == "postfix" else run_fastpost
                results[m].append(fn(args.workdir, args.messages, rcpts))
        for m in mtas:
            rs = results[m]
            raw[f"{m} rcpts={rcpts}"] = rs
            med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
            rate = med(lambda r: args.messages / r["elapsed"])
            per = lambda k: med(lambda r: r["cpu"][k] * 1000 / args.messages)  # noqa: E731
            label = f"{m}, {args.messages} msgs x {rcpts} rcpt"
            print(f"{label:38} {rate:8,.0f} {per('qmgr'):12.3f} {per('trivial-rewrite'):8.3f} "
                  f"{per('discard'):8.3f} {per('exited'):8.3f}")
    if args.json:
        print(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
