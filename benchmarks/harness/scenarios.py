"""The benchmark scenarios of issue 10, each runnable against C Postfix and fastpost.

Postfix counterpart: none; the load is Postfix's smtp-source, the next hop its smtp-sink.

    context    fsync rate of small files here; smtp-source -> smtp-sink alone (the ceiling)
    accept     accept to durable queue with delivery held, 1 KiB, -s 1/20/100
    relay      end-to-end relay to smtp-sink, 1 KiB and 100 KiB, -s 20/100
    gateway    relay through restriction lists and large tables (100,000-key hash maps,
               a 2,000-network cidr table, 200 header_checks regexps)
    idle       10,000 concurrent idle sessions: memory of each MTA, time to serve one more
    sendmail   1,000 messages through each one's sendmail command, delivered to smtp-sink
    durability a short traced run: every "250 ... queued as" after its message's fsync

How "held" is made and counted: both MTAs get ``check_client_access static:HOLD`` first in
``smtpd_recipient_restrictions``, so every accepted message goes to the hold queue and no
delivery competes with acceptance; the count is the number of messages in the hold queue
(``postqueue -j`` / ``fastpost queue -j``) after smtp-source has exited, which must equal
the number sent. Relayed messages are counted by smtp-sink's own counter (never
``-M N``), and a run is timed from the first connection to the sink's N-th message.

A scenario is a ``Scenario``: its variants, the fastpost pieces it needs, how to
configure an instance for it and how to run one repetition of one variant on one
instance. ``run_once`` returns a record (a dict) with every raw figure; nothing here
prints except through the ``progress`` callable.

Fails: a repetition that cannot run records ``ok: False`` with ``error``; the run goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import resource
import signal
import subprocess
import tempfile
import time

from . import durability, machine, procs
from .mta import Instance, InstanceError
from .tools import Sink, ToolError, run_source

KIB = 1024


class Scenario:
    name = "?"
    title = "?"
    needs: tuple[str, ...] = ()
    metric = "rate"           # the figure the table compares ("rate": higher is better)
    unit = "msgs/s"
    uses_mta = True
    relay = False             # instances need a sink port

    def variants(self, opts) -> list[dict]:
        raise NotImplementedError

    def main_cf(self, inst: Instance) -> dict[str, str]:
        return {}

    def tables(self, inst: Instance) -> dict[str, str]:
        return {}

    def smtpd_args(self) -> tuple:
        return ()

    def run_once(self, inst: Instance | None, variant: dict, opts, progress) -> dict:
        raise NotImplementedError


def label(variant: dict) -> str:
    parts = []
    if "sessions" in variant:
        parts.append(f"s{variant['sessions']}")
    if "size" in variant:
        size = variant["size"]
        parts.append(f"{size // KIB}KiB" if size >= KIB else f"{size}B")
    for key in ("threads", "idle", "submitters", "what"):
        if key in variant:
            parts.append(f"{key}={variant[key]}" if key != "what" else str(variant[key]))
    return " ".join(parts)


def _cpu(record: dict, mon: dict, messages: int) -> None:
    record["cpu_by_daemon"] = mon["cpu_by_daemon"]
    record["cpu_total"] = mon["cpu_total"]
    record["cpu_s_per_1k"] = round(1000 * mon["cpu_total"] / messages, 3) if messages else None
    record["peak_rss"] = mon["peak_rss"]
    record["peak_pss"] = mon["peak_pss"]
    record["peak_processes"] = mon["peak_processes"]


def _count_msgs(opts, variant) -> int:
    if variant.get("size", KIB) >= 100 * KIB:
        return max(50, opts.messages // 5)
    if variant.get("sessions") == 1:
        return max(50, opts.messages // 4)
    return opts.messages


HOLD = "check_client_access static:HOLD, permit_mynetworks, reject_unauth_destination"


class Context(Scenario):
    name = "context"
    title = "machine context: small-file fsync rate; smtp-source -> smtp-sink alone"
    uses_mta = False

    def variants(self, opts):
        out = [{"what": "fsync", "threads": 1}, {"what": "fsync", "threads": 8}]
        out += [{"what": "source->sink", "sessions": s, "size": KIB} for s in opts.sessions_for("context")]
        return out

    def run_once(self, inst, variant, opts, progress):
        if variant["what"] == "fsync":
            with tempfile.TemporaryDirectory(prefix="fsync-", dir=opts.workdir) as d:
                r = machine.fsync_rate(d, files=opts.fsync_files, threads=variant["threads"])
            return {"ok": True, "messages": r["files"], "seconds": r["seconds"], "rate": r["rate"],
                    "cpu_ms_per_file": r["cpu_ms_per_file"], "unit": "files/s"}
        n = _count_msgs(opts, variant)
        with Sink() as sink:
            t0 = time.monotonic()
            src = run_source(sink.port, variant["sessions"], n, variant["size"])
            done = sink.wait_count(n, timeout=30)
            seconds = time.monotonic() - t0
            rec = {"ok": done and src["rc"] == 0, "messages": n, "seconds": seconds,
                   "rate": n / seconds, "verified": sink.count, "client_cpu": src["cpu"],
                   "sink_cpu": sink.cpu_seconds()}
        if not rec["ok"]:
            rec["error"] = f"sink counted {rec['verified']} of {n}; {src['complaints'][:3]}"
        return rec


class Accept(Scenario):
    name = "accept"
    title = "accept to durable queue, delivery held"
    needs = ("control", "smtpd", "cleanup", "queue", "super")

    def variants(self, opts):
        return [{"sessions": s, "size": KIB} for s in opts.sessions_for("accept")]

    def main_cf(self, inst):
        return {"smtpd_recipient_restrictions": HOLD}

    def run_once(self, inst, variant, opts, progress):
        n = _count_msgs(opts, variant)
        inst.purge()
        mon = procs.ProcessMonitor(inst.master_pid()).start()
        src = run_source(inst.port, variant["sessions"], n, variant["size"])
        res = mon.stop()
        counts = inst.queue_counts()
        held = counts.get("hold", 0)
        rec = {"messages": n, "seconds": src["seconds"], "rate": n / src["seconds"],
               "verified": held, "queue_counts": counts, "client_cpu": src["cpu"]}
        _cpu(rec, res, n)
        rec["ok"] = src["rc"] == 0 and not src["complaints"] and held == n
        if not rec["ok"]:
            rec["error"] = f"held {held} of {n} (queues {counts}); smtp-source rc={src['rc']} {src['complaints'][:3]}"
        inst.purge()
        return rec


class Relay(Scenario):
    name = "relay"
    title = "end-to-end relay to smtp-sink"
    needs = ("control", "smtpd", "cleanup", "qmgr", "smtp", "trivial_rewrite", "queue", "super")
    relay = True

    def variants(self, opts):
        return [{"sessions": s, "size": size} for size in (KIB, 100 * KIB)
                for s in opts.sessions_for("relay")]

    def run_once(self, inst, variant, opts, progress):
        n = _count_msgs(opts, variant)
        return relay_run(inst, n, lambda: run_source(inst.port, variant["sessions"], n, variant["size"],
                                                      **self.source_args()), progress)

    def source_args(self) -> dict:
        return {}


def relay_run(inst: Instance, n: int, load, progress, timeout: float | None = None) -> dict:
    """Run ``load()`` against ``inst`` and time it until smtp-sink has received ``n``."""
    inst.purge()
    with Sink(port=inst.sink_port) as sink:
        mon = procs.ProcessMonitor(inst.master_pid()).start()
        t0 = time.monotonic()
        src = load()
        accept_s = time.monotonic() - t0
        done = sink.wait_count(n, timeout=timeout or max(60.0, n / 20), progress=None)
        seconds = time.monotonic() - t0
        res = mon.stop()
        rec = {"messages": n, "seconds": seconds, "rate": n / seconds, "accept_seconds": accept_s,
               "accept_rate": n / accept_s, "verified": sink.count, "client_cpu": src["cpu"],
               "sink_cpu": sink.cpu_seconds()}
    _cpu(rec, res, n)
    left = inst.queue_counts()
    rec["left_in_queue"] = left
    rec["ok"] = done and src["rc"] == 0 and not src["complaints"] and not left
    if not rec["ok"]:
        rec["error"] = (f"sink counted {rec['verified']} of {n}; left in queue {left}; "
                        f"client rc={src['rc']} {src['complaints'][:3]}")
    inst.purge()
    return rec


class Gateway(Relay):
    name = "gateway"
    title = "gateway: restriction lists and large tables, relay to smtp-sink"
    needs = Relay.needs + ("map",)
    KEYS = 100_000

    def variants(self, opts):
        return [{"sessions": s, "size": KIB} for s in opts.sessions_for("gateway")]

    def main_cf(self, inst):
        t = "@ETC@"
        return {
            "mynetworks": "127.0.0.1/32",
            "relay_domains": f"hash:{t}/relay_domains",
            "relay_recipient_maps": f"hash:{t}/relay_recipients",
            "transport_maps": f"hash:{t}/transport",
            "smtpd_helo_required": "yes",
            "smtpd_client_restrictions": f"check_client_access cidr:{t}/clients.cidr",
            "smtpd_helo_restrictions": "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
            "smtpd_sender_restrictions": f"reject_non_fqdn_sender, check_sender_access hash:{t}/senders",
            "smtpd_recipient_restrictions": (f"reject_non_fqdn_recipient, reject_unlisted_recipient, "
                                             f"check_recipient_access hash:{t}/recipients, "
                                             f"reject_unauth_destination, permit"),
            "header_checks": f"regexp:{t}/header_checks",
        }

    def tables(self, inst):
        n = self.KEYS
        domains = [f"d{i}.example" for i in range(n // 10)] + ["example.com"]
        rng = random.Random(10)
        nets = sorted({f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24" for _ in range(2000)})
        return {
            "relay_domains": "".join(f"{d} OK\n" for d in domains),
            "relay_recipients": "".join(f"user{i}@d{i % (n // 10)}.example OK\n" for i in range(n))
                                + "rcpt@example.com OK\n",
            "transport": "".join(f"d{i}.example smtp:[127.0.0.1]:{inst.sink_port}\n" for i in range(n // 10))
                         + f"example.com smtp:[127.0.0.1]:{inst.sink_port}\n",
            "clients.cidr": "".join(f"{net} REJECT listed network\n" for net in nets),
            "senders": "".join(f"spammer{i}@bad{i % 977}.example REJECT\n" for i in range(n)),
            "recipients": "".join(f"blocked{i}@d{i % (n // 10)}.example REJECT\n" for i in range(n)),
            "header_checks": "".join(f"/^Subject:.*spam-word-{i}\\b/ REJECT spam {i}\n" for i in range(200)),
        }

    def source_args(self):
        return {"helo": "client.bench.example", "sender": "bench@source.example",
                "recipient": "rcpt@example.com"}


class Idle(Scenario):
    name = "idle"
    title = "10,000 concurrent idle sessions: memory, and time to serve one more"
    needs = ("control", "smtpd")
    metric = "pss_mib"
    unit = "MiB PSS"

    def variants(self, opts):
        return [{"idle": opts.idle_sessions}]

    def run_once(self, inst, variant, opts, progress):
        raise_nofile()
        base = inst.memory()
        r = asyncio.run(hold_idle(inst, variant["idle"], opts.probe_timeout, progress))
        r.update({"base_rss": base["rss"], "base_pss": base["pss"],
                  "pss_mib": round(r["pss"] / 2**20, 1), "rss_mib": round(r["rss"] / 2**20, 1),
                  "ok": True, "messages": 0})
        return r


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _session(port: int, banner_timeout: float, held: list, stats: dict, sem) -> None:
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, asyncio.TimeoutError):
            stats["refused"] += 1
            return
        stats["connected"] += 1
    held.append(writer)
    try:
        line = await asyncio.wait_for(reader.readline(), banner_timeout)
        if line.startswith(b"220"):
            stats["bannered"] += 1
    except (OSError, asyncio.TimeoutError):
        pass


async def probe(port: int, timeout: float) -> float | None:
    """Seconds to get a banner, EHLO answer and QUIT answer from a new session (None: not served)."""
    t0 = time.monotonic()
    try:
        async def talk():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            line = await reader.readline()
            if not line.startswith(b"220"):
                return False
            writer.write(b"EHLO probe.example\r\n")
            while True:
                line = await reader.readline()
                if not line.startswith(b"250"):
                    return False
                if line[3:4] == b" ":
                    break
            writer.write(b"QUIT\r\n")
            await reader.readline()
            writer.close()
            return True
        ok = await asyncio.wait_for(talk(), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    return time.monotonic() - t0 if ok else None


async def hold_idle(inst: Instance, n: int, probe_timeout: float, progress) -> dict:
    stats = {"connected": 0, "bannered": 0, "refused": 0}
    held: list = []
    sem = asyncio.Semaphore(500)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(_session(inst.port, 15.0, held, stats, sem)) for _ in range(n)]
    ticks = 0
    while not all(t.done() for t in tasks):
        await asyncio.sleep(1)
        ticks += 1
        if progress and ticks % 10 == 0:
            progress(f"{stats['connected']} connected, {stats['bannered']} bannered, "
                     f"{stats['refused']} refused or timed out")
    setup_s = time.monotonic() - t0
    await asyncio.sleep(2)
    mem = inst.memory()
    probe_s = await probe(inst.port, probe_timeout)
    for w in held:
        w.close()
    await asyncio.sleep(0.5)
    return {"sessions": n, "connected": stats["connected"], "bannered": stats["bannered"],
            "refused": stats["refused"], "setup_seconds": round(setup_s, 2), "rss": mem["rss"],
            "pss": mem["pss"], "processes": mem["processes"],
            "probe_seconds": None if probe_s is None else round(probe_s, 4),
            "probe_timeout": probe_timeout}


class Sendmail(Scenario):
    name = "sendmail"
    title = "local submission: messages through each one's sendmail, delivered to smtp-sink"
    needs = ("control", "sendmail", "pickup", "cleanup", "qmgr", "smtp", "trivial_rewrite", "queue", "super")
    relay = True

    def variants(self, opts):
        return [{"submitters": opts.submitters, "size": KIB}]

    def run_once(self, inst, variant, opts, progress):
        n = opts.sendmail_messages
        body = (b"From: bench@source.example\nTo: rcpt@example.com\nSubject: bench\n\n" +
                (b"x" * 71 + b"\n") * (variant["size"] // 72))
        cmd, env = inst.sendmail_command("bench@source.example", "rcpt@example.com")

        def one(_):
            p = subprocess.run(cmd, input=body, env=env, capture_output=True, timeout=120)
            return p.returncode, p.stderr[-200:]

        def load():
            c0 = os.times()
            with concurrent.futures.ThreadPoolExecutor(variant["submitters"]) as pool:
                results = list(pool.map(one, range(n)))
            c1 = os.times()
            bad = [r for r in results if r[0] != 0]
            return {"rc": 0 if not bad else 1,
                    "complaints": [f"sendmail exit {b[0]}: {b[1].decode('utf-8', 'replace')}" for b in bad[:3]],
                    "cpu": (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)}

        return relay_run(inst, n, load, progress)


class Durability(Scenario):
    name = "durability"
    title = "durability: strace proves each 250 follows its message's fsync"
    needs = ("control", "smtpd", "cleanup", "queue", "super")
    metric = "proven"
    unit = "acks proven"

    def variants(self, opts):
        return [{"sessions": 5, "size": KIB}]

    def main_cf(self, inst):
        return {"smtpd_recipient_restrictions": HOLD}

    def run_once(self, inst, variant, opts, progress):
        n = opts.durability_messages
        return traced_run(inst, n, variant["sessions"], variant["size"], opts.workdir)


def traced_run(inst: Instance, n: int, sessions: int, size: int, workdir: str | None = None) -> dict:
    """A short smtp-source run under strace, checked with ``durability.check``."""
    from .tools import which
    strace = which("strace")
    if strace is None:
        return {"ok": False, "error": "strace not installed (apt-get install strace)", "messages": n}
    inst.purge()
    time.sleep(1)   # let processes spawned by earlier probes settle, so all get attached
    pids = list(procs.tree(inst.master_pid()))
    fd, log = tempfile.mkstemp(prefix="strace-", suffix=".log", dir=workdir)
    os.close(fd)
    st = subprocess.Popen(durability.strace_command(log, pids=pids, strace=strace),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)
    src = run_source(inst.port, sessions, n, size)
    time.sleep(0.5)
    st.send_signal(signal.SIGINT)
    try:
        st.wait(30)
    except subprocess.TimeoutExpired:
        st.kill()
        st.wait()
    report = durability.check_file(log, queue_dir=inst.spool)
    rec = {"messages": n, "durability": report.as_dict(), "summary": report.summary(),
           "proven": sum(1 for v in report.verdicts if v.status == "ok"), "strace_log": log,
           "client_rc": src["rc"]}
    rec["ok"] = report.ok and report.replies == n and src["rc"] == 0
    if not rec["ok"]:
        rec["error"] = (report.summary() if not report.ok else
                        f"traced {report.replies} acknowledgements of {n} sent (attach missed a process?)")
    else:
        os.unlink(log)
        rec.pop("strace_log")
    inst.purge()
    return rec


ALL = [Context(), Accept(), Relay(), Gateway(), Idle(), Sendmail(), Durability()]
BY_NAME = {s.name: s for s in ALL}

__all__ = ["ALL", "BY_NAME", "Scenario", "InstanceError", "ToolError", "label", "traced_run",
           "relay_run", "probe", "raise_nofile"]
