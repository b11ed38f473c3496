"""The reliability battery: checks that an MTA keeps its promises under abuse.

Postfix counterpart: none. Every check runs against a private instance of C Postfix (to
validate the battery itself: Postfix is the reference that must pass, or fail for a known
reason) and against fastpost once the pieces it needs exist.

    kill9      SIGKILL random smtpd/cleanup/qmgr/smtp workers (and the master, then start
               it again) while messages flow to a sink; every message acknowledged with
               250 must reach the sink (Message-ID match); duplicates are counted
    fulldisk   the queue on a small tmpfs filled while clients send: only 250 or 4xx
               replies, nothing acknowledged is lost, no corrupt queue file, accepting
               again once space returns
    floods     slowloris clients, a burst of connections, an oversized line and an
               oversized message, all from attacker addresses: a legitimate client from
               127.0.0.1 is still served, the MTA still runs, its memory is reported
    fuzz       hypothesis on fastpost's parsers (harness/fuzz.py) and random SMTP lines
               on the wire: only defined errors, the server keeps answering
    smuggling  every known end-of-DATA variant with a second message inside the first:
               the second never becomes a message of its own
    openrelay  nmap's smtp-open-relay script from 127.0.0.2 with mynetworks 127.0.0.1/32:
               no open relay (and the same script must find the deliberately open
               configuration open: the check's own control)
    tls        sslyze --starttls smtp: no protocol before TLS 1.2, no weak cipher suite

``short=True`` is the version the test suite runs (tests/battery/), bounded to seconds per
check; ``./dev torture`` runs the long one. Each check returns a ``Result``.

Fails: a check that cannot run here (no root for a tmpfs, a tool missing) returns
status "skip" with the reason; a fastpost that lacks pieces returns "unavailable" with
the missing pieces; a broken instance returns "fail" with the error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import mta, procs, smtp
from .tools import free_port, which


@dataclasses.dataclass
class Result:
    check: str
    mta: str
    status: str                 # pass | fail | skip | unavailable
    summary: str
    details: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


#: settings every battery instance gets: retries come quickly, so a killed delivery
#: is retried within the check's time
FAST_RETRY = {"minimal_backoff_time": "2s", "maximal_backoff_time": "4s", "queue_run_delay": "2s"}


class Check:
    name = "?"
    #: "sink": something that delivers to the battery's sink (smtp, or pipe standing in)
    needs: tuple[str, ...] = ("control", "smtpd", "cleanup", "qmgr", "sink", "trivial_rewrite",
                              "queue", "super")
    root_only = False
    #: what C Postfix 3.7 (Debian's defaults) is known to do here, and why if "fail"
    postfix_expect = "pass"
    postfix_why = ""

    def main_cf(self) -> dict[str, str]:
        return {}

    def run(self, inst: mta.Instance, sink: smtp.PySink, short: bool) -> Result:
        raise NotImplementedError

    def prepare(self, root: str) -> str | None:
        """Hook before configure (e.g. mount a tmpfs); returns a skip reason or None."""
        return None

    def cleanup(self, root: str) -> None:
        pass


def drain(inst: mta.Instance, sink: smtp.PySink, want: set[str], timeout: float) -> None:
    """Flush the queue until every wanted Message-ID reached the sink or the queue is empty."""
    end = time.monotonic() + timeout
    last_flush = 0.0
    while time.monotonic() < end:
        got = set(sink.counts())
        if want <= got:
            return
        if time.monotonic() - last_flush > 3:
            inst.flush()
            last_flush = time.monotonic()
        time.sleep(0.3)


def loss_report(results: dict[str, str], sink: smtp.PySink) -> dict:
    ok = smtp.acked(results)
    counts = sink.counts()
    lost = sorted(ok - set(counts))
    dups = {m: c for m, c in counts.items() if c > 1}
    return {"sent": len(results), "acknowledged": len(ok), "delivered_unique": len(set(counts) & set(results)),
            "lost": len(lost), "lost_ids": lost[:20], "duplicated": len(dups),
            "unacked_but_delivered": len((set(counts) & set(results)) - ok),
            "replies": _reply_hist(results), "refusals": _refusals(results)}


def _refusals(results: dict[str, str], top: int = 8) -> dict[str, int]:
    """The most frequent texts of what was not acknowledged (for the report)."""
    hist: dict[str, int] = {}
    for r in results.values():
        if not r.startswith("250"):
            key = r[:80]
            hist[key] = hist.get(key, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: -kv[1])[:top])


def _reply_hist(results: dict[str, str]) -> dict[str, int]:
    hist: dict[str, int] = {}
    for r in results.values():
        key = r[:3] if r[:3].isdigit() else r.split(":")[0][:40]
        hist[key] = hist.get(key, 0) + 1
    return hist


class Kill9(Check):
    name = "kill9"
    VICTIMS = ("smtpd", "cleanup", "qmgr", "smtp", "pipe", "trivial-rewrite")

    def run(self, inst, sink, short):
        n = 300 if short else 5000
        master_kills = 1 if short else 4
        ids = [f"<k9.{i}.{os.getpid()}@battery>" for i in range(n)]
        stop = threading.Event()
        kills: dict[str, int] = {}
        restarts = []

        def killer():
            rng = random.Random(9)
            every = 0.15 if short else 0.1
            m_at = {int((k + 1) * (n / (master_kills + 1))) for k in range(master_kills)}
            m_done = 0
            while not stop.wait(every):
                pid = inst.master_pid(quiet=True)
                if pid is None:
                    continue
                done_now = len(smtp_results)
                if m_done < master_kills and done_now >= sorted(m_at)[m_done]:
                    m_done += 1
                    os.kill(pid, signal.SIGKILL)
                    kills["master"] = kills.get("master", 0) + 1
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 60 and not stop.is_set():
                        time.sleep(0.5)
                        try:
                            inst.start(timeout=20)
                            restarts.append(round(time.monotonic() - t0, 2))
                            break
                        except mta.InstanceError:
                            continue
                    continue
                victims = [(p, st) for p, st in procs.tree(pid).items()
                           if p != pid and procs.daemon_name(p, st[0]) in self.VICTIMS]
                if victims:
                    p, st = rng.choice(victims)
                    try:
                        os.kill(p, signal.SIGKILL)
                        name = procs.daemon_name(p, st[0])
                        kills[name] = kills.get(name, 0) + 1
                    except ProcessLookupError:
                        pass

        smtp_results: dict[str, str] = {}
        th = threading.Thread(target=killer, daemon=True)
        th.start()
        try:
            import asyncio

            # results are filled in place so the killer can pace the master kills
            async def go_inplace():
                queue = list(reversed(ids))

                async def worker():
                    while queue:
                        mid = queue.pop()
                        smtp_results[mid] = (await smtp.send_async(inst.port, [mid], 1, timeout=30))[mid]
                        if "ConnectionRefused" in smtp_results[mid]:
                            # the master is down (killed, restarting): without a pause
                            # the workers burn thousands of messages in a second
                            await asyncio.sleep(0.05)
                await asyncio.gather(*(worker() for _ in range(10)))
            asyncio.run(go_inplace())
        finally:
            stop.set()
            th.join(90)
        if inst.master_pid(quiet=True) is None:
            inst.start()
        want = smtp.acked(smtp_results)
        drain(inst, sink, want, timeout=60 if short else 300)
        rep = loss_report(smtp_results, sink)
        rep.update({"kills": kills, "master_restart_seconds": restarts,
                    "left_in_queue": _safe_counts(inst), "corrupt_files": _corrupt(inst)})
        ok = rep["lost"] == 0 and rep["acknowledged"] > 0 and not rep["corrupt_files"]
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      f"{rep['acknowledged']}/{n} acknowledged, {rep['lost']} lost, {rep['duplicated']} "
                      f"duplicated; kills {kills}", rep)


def _safe_counts(inst) -> dict:
    try:
        return inst.queue_counts()
    except mta.InstanceError as exc:
        return {"error": str(exc)[:200]}


def _corrupt(inst) -> int:
    d = os.path.join(inst.spool, "corrupt")
    n = 0
    for _dir, _subs, files in os.walk(d):
        n += len(files)
    counts = _safe_counts(inst)
    return n + counts.get("corrupt", 0)


class FullDisk(Check):
    name = "fulldisk"
    root_only = True
    SIZE_MB = 48

    def prepare(self, root):
        if os.geteuid() != 0:
            return "needs root to mount a tmpfs"
        spool = os.path.join(root, "spool")
        os.makedirs(spool, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE_MB}m,mode=755", "tmpfs", spool],
                           capture_output=True, text=True)
        if p.returncode:
            return f"cannot mount a tmpfs here: {p.stderr.strip()}"
        return None

    def cleanup(self, root):
        subprocess.run(["umount", "-l", os.path.join(root, "spool")], capture_output=True)

    def run(self, inst, sink, short):
        n1 = 200 if short else 2000
        filler = os.path.join(inst.spool, "filler")
        stop = threading.Event()

        def fill():
            block = b"\0" * (256 * 1024)
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while not stop.is_set():
                    try:
                        os.write(fd, block)
                    except OSError:
                        time.sleep(0.05)
            finally:
                os.close(fd)

        ids1 = [f"<fd1.{i}.{os.getpid()}@battery>" for i in range(n1)]
        th = threading.Thread(target=fill, daemon=True)
        th.start()
        time.sleep(0.5)
        res1 = smtp.send(inst.port, ids1, 5, size=4096, timeout=30)
        stop.set()
        th.join(5)
        st = os.statvfs(inst.spool)
        free_when_full = st.f_bavail * st.f_frsize
        full_ids = [f"<fdf.{i}.{os.getpid()}@battery>" for i in range(20)]
        res_full = smtp.send(inst.port, full_ids, 2, size=4096, timeout=30)
        os.unlink(filler)
        time.sleep(1)
        ids2 = [f"<fd2.{i}.{os.getpid()}@battery>" for i in range(50)]
        res2 = smtp.send(inst.port, ids2, 5, size=4096, timeout=30)
        allres = {**res1, **res_full, **res2}
        drain(inst, sink, smtp.acked(allres), timeout=60)
        rep = loss_report(allres, sink)
        bad = {mid: r for mid, r in allres.items() if not (r.startswith("250") or r[:1] == "4")}
        rep.update({"free_bytes_when_full": free_when_full, "while_full": _reply_hist(res_full),
                    "after_space_returned": _reply_hist(res2), "not_250_or_4xx": dict(list(bad.items())[:5]),
                    "corrupt_files": _corrupt(inst), "left_in_queue": _safe_counts(inst)})
        full_4xx = all(r[:1] == "4" for r in res_full.values())
        resumed = len(smtp.acked(res2)) == len(ids2)
        ok = rep["lost"] == 0 and not bad and not rep["corrupt_files"] and full_4xx and resumed
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      f"while full: {_reply_hist(res_full)}; after: {len(smtp.acked(res2))}/{len(ids2)} "
                      f"accepted; {rep['lost']} lost; {len(bad)} replies neither 250 nor 4xx; "
                      f"{rep['corrupt_files']} corrupt", rep)


class Floods(Check):
    name = "floods"

    def main_cf(self):
        return {"mynetworks": "127.0.0.1/32", "message_size_limit": "1048576", "relay_domains": "example.com",
                "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}

    def run(self, inst, sink, short):
        import asyncio
        slow_n = 300 if short else 3000
        burst_n = 300 if short else 3000
        hold_s = 8 if short else 40
        mem0 = inst.memory()
        peak = {"pss": 0, "rss": 0}
        stop = threading.Event()

        def sample():
            while not stop.wait(0.5):
                m = inst.memory()
                peak["pss"] = max(peak["pss"], m["pss"])
                peak["rss"] = max(peak["rss"], m["rss"])

        async def slowloris():
            writers = []

            async def one(i):
                try:
                    r, w = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", inst.port, local_addr=("127.0.0.2", 0)), 10)
                    writers.append(w)
                    for ch in b"EHLO slow.example.org":
                        if w.is_closing() or r.at_eof():
                            break
                        w.write(bytes([ch]))
                        await asyncio.sleep(1.0)
                except (OSError, asyncio.TimeoutError):
                    pass
            tasks = [asyncio.create_task(one(i)) for i in range(slow_n)]
            await asyncio.sleep(hold_s)
            for t in tasks:
                t.cancel()
            for w in writers:
                w.close()
            return len(writers)

        async def burst():
            ok = 0

            async def one():
                nonlocal ok
                try:
                    r, w = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", inst.port, local_addr=("127.0.0.3", 0)), 10)
                    ok += 1
                    w.close()
                except (OSError, asyncio.TimeoutError):
                    pass
            await asyncio.gather(*(one() for _ in range(burst_n)))
            return ok

        def oversized():
            line = smtp.converse(inst.port, [b"EHLO " + b"x" * (1 << 20) + b"\r\n", b"QUIT\r\n"],
                                 local="127.0.0.4", settle=2)
            big = smtp.message("<big@battery>", size=2 << 20)
            msg = smtp.converse(inst.port, [b"EHLO big.example.org\r\n", b"MAIL FROM:<a@big.example.org>\r\n",
                                            b"RCPT TO:<rcpt@example.com>\r\n", b"DATA\r\n", big + b".\r\n",
                                            b"QUIT\r\n"], local="127.0.0.4", settle=2)
            return line.decode("utf-8", "replace")[-300:], msg.decode("utf-8", "replace")[-300:]

        legit = {}

        async def scenario():
            slow = asyncio.create_task(slowloris())
            await asyncio.sleep(2)
            b = await burst()
            over = await asyncio.to_thread(oversized)
            t0 = time.monotonic()
            ids = [f"<legit.{i}.{os.getpid()}@battery>" for i in range(5)]
            legit.update(await smtp.send_async(inst.port, ids, 1, timeout=60))
            legit_s = time.monotonic() - t0
            held = await slow
            return held, b, over, legit_s

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            held, b, over, legit_s = asyncio.run(scenario())
        finally:
            stop.set()
            th.join(5)
        alive = inst.master_pid(quiet=True) is not None
        after = smtp.send(inst.port, [f"<after.{os.getpid()}@battery>"], 1, timeout=60)
        rep = {"slowloris_connected": held, "burst_connected": b, "oversized_line_reply": over[0],
               "oversized_message_reply": over[1], "legit": _reply_hist(legit),
               "legit_seconds": round(legit_s, 2), "master_alive": alive, "after": _reply_hist(after),
               "pss_before_mib": round(mem0["pss"] / 2**20, 1), "pss_peak_mib": round(peak["pss"] / 2**20, 1),
               "rss_peak_mib": round(peak["rss"] / 2**20, 1)}
        big_rejected = "552" in over[1] or "5.3.4" in over[1]
        ok = (all(r.startswith("250") for r in legit.values()) and alive and
              all(r.startswith("250") for r in after.values()) and big_rejected)
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      f"legit {_reply_hist(legit)} in {legit_s:.1f} s with {held} slowloris and a burst of "
                      f"{b}; oversized message {'rejected' if big_rejected else 'NOT rejected'}; "
                      f"PSS {rep['pss_before_mib']} -> peak {rep['pss_peak_mib']} MiB", rep)


class Fuzz(Check):
    name = "fuzz"
    needs = ("control", "smtpd")

    def run(self, inst, sink, short):
        from . import fuzz
        rng = random.Random(4)
        lines = fuzz.wire_inputs(rng, 24 if short else 1000)
        replies = []
        bad = []
        for chunk in lines:
            got = smtp.converse(inst.port, [b"EHLO fuzz.example.org\r\n", chunk, b"NOOP\r\n"],
                                timeout=5, settle=0.1)
            replies.append(got)
            for line in got.split(b"\r\n"):
                if line and not (line[:3].isdigit() or line.startswith(b"[socket error")):
                    bad.append(line[:100])
        alive = inst.master_pid(quiet=True) is not None
        after = smtp.send(inst.port, [f"<after-fuzz.{os.getpid()}@battery>"], 1, timeout=30)
        kernel = fuzz.run_targets(examples=100 if short else 5000)
        k_fail = {k: v for k, v in kernel.items() if v["status"] == "fail"}
        ok = not bad and alive and smtp.acked(after) and not k_fail
        rep = {"wire_inputs": len(lines), "non_reply_lines": [b.decode("latin-1") for b in bad[:5]],
               "master_alive": alive, "after": _reply_hist(after), "kernels": kernel}
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      f"{len(lines)} wire inputs, {len(bad)} non-reply lines, alive={alive}; parsers: "
                      + ", ".join(f"{k} {v['status']}" for k, v in kernel.items()), rep)


SMUGGLING_VARIANTS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CRLF.CR": b"\r\n.\r",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRCRLF.CRCRLF": b"\r\r\n.\r\r\n",
    "CRLF.NUL.CRLF": b"\r\n.\0\r\n",
    "LF.CR.LF": b"\n.\r\n",
    "CRLF.LFCRLF": b"\r\n.\n\r\n",
}


class Smuggling(Check):
    """Default configuration; the client is outside mynetworks (127.0.0.2)."""

    name = "smuggling"
    postfix_expect = "fail"
    postfix_why = ("Postfix 3.7 defaults to smtpd_forbid_bare_newline = no: a bare-LF end of DATA "
                   "ends the message (smuggling-hardened sets it to yes)")

    def main_cf(self):
        return {"mynetworks": "127.0.0.1/32", "relay_domains": "example.com"}

    def run(self, inst, sink, short):
        found = {}
        tag = os.getpid()
        for name, eod in SMUGGLING_VARIANTS.items():
            first, second = f"<first.{name}.{tag}@battery>", f"<smuggled.{name}.{tag}@battery>"
            payload = (f"From: <a@source.example>\r\nTo: <rcpt@example.com>\r\nMessage-ID: {first}\r\n"
                       f"Subject: first\r\n\r\nhello").encode()
            payload += eod + (f"MAIL FROM:<evil@source.example>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n"
                              f"From: <evil@source.example>\r\nMessage-ID: {second}\r\nSubject: smuggled\r\n\r\n"
                              f"smuggled").encode() + b"\r\n.\r\n"
            got = smtp.converse(inst.port, [b"EHLO smuggler.example.org\r\n",
                                            b"MAIL FROM:<a@source.example>\r\nRCPT TO:<rcpt@example.com>\r\n"
                                            b"DATA\r\n", payload, b"QUIT\r\n"],
                                settle=0.3 if short else 1.0, local="127.0.0.2")
            found[name] = {"first": first, "second": second,
                           "queued_replies": got.count(b"queued as") + got.count(b"250 2.0.0 Ok: stored"),
                           "transcript": got.decode("utf-8", "replace")[-400:]}
        want = {v["first"] for v in found.values()}
        drain(inst, sink, want, timeout=20 if short else 60)
        counts = sink.counts()
        smuggled = [n for n, v in found.items() if v["second"] in counts]
        for n, v in found.items():
            v["first_delivered"] = v["first"] in counts
            v["second_delivered_as_message"] = v["second"] in counts
        ok = not smuggled
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      ("no variant smuggled a second message" if ok else
                       f"smuggled with {', '.join(smuggled)}") +
                      f" ({sum(v['first_delivered'] for v in found.values())}/{len(found)} first messages delivered)",
                      {"variants": found, "smuggled": smuggled})


class SmugglingHardened(Smuggling):
    """The same with Postfix's answer to smuggling switched on (the check's control)."""

    name = "smuggling-hardened"
    postfix_expect = "pass"
    postfix_why = ""

    def main_cf(self):
        return {**super().main_cf(), "smtpd_forbid_bare_newline": "yes"}


class OpenRelay(Check):
    name = "openrelay"
    needs = ("control", "smtpd", "trivial_rewrite")

    def main_cf(self):
        return {"mynetworks": "127.0.0.1/32", "relay_domains": "", "mydestination": "localhost"}

    @staticmethod
    def nmap(port: int) -> tuple[str, str]:
        exe = which("nmap")
        p = subprocess.run([exe, "-n", "-Pn", "-S", "127.0.0.2", "-e", "lo", "-p", str(port),
                            "--script", "+smtp-open-relay", "--script-args",
                            "smtp-open-relay.domain=battery.example,smtp-open-relay.from=relaytest@battery.example",
                            "127.0.0.1"], capture_output=True, text=True, timeout=120)
        out = p.stdout + p.stderr
        if "Server is an open relay" in out:
            return "open", out
        if "doesn't seem to be an open relay" in out or "not an open relay" in out.lower():
            return "closed", out
        return "unknown", out

    def run(self, inst, sink, short):
        if which("nmap") is None:
            return Result(self.name, inst.kind, "skip", "nmap not installed (apt-get install nmap)")
        verdict, out = self.nmap(inst.port)
        swaks = which("swaks")
        sw = None
        if swaks:
            p = subprocess.run([swaks, "-s", "127.0.0.1", "-p", str(inst.port), "--local-interface", "127.0.0.2",
                                "-t", "victim@elsewhere.example", "-f", "spam@elsewhere.example",
                                "--timeout", "20"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=60)
            sw = p.returncode
        tail = "\n".join(line for line in out.splitlines() if "relay" in line.lower())[:600]
        ok = verdict == "closed" and sw in (None, 24)
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      f"nmap: {verdict}; swaks from 127.0.0.2 to an outside domain: exit {sw} "
                      f"(24 = recipient refused)", {"nmap": tail, "swaks_exit": sw})


class OpenRelayControl(OpenRelay):
    """The control of ``openrelay``: a deliberately open configuration must be found open."""

    name = "openrelay-control"

    def main_cf(self):
        return {"mynetworks": "127.0.0.0/8", "relay_domains": "", "mydestination": "localhost"}

    def run(self, inst, sink, short):
        if which("nmap") is None:
            return Result(self.name, inst.kind, "skip", "nmap not installed (apt-get install nmap)")
        verdict, out = self.nmap(inst.port)
        ok = verdict == "open"
        return Result(self.name, inst.kind, "pass" if ok else "fail",
                      f"deliberately open (mynetworks 127.0.0.0/8): nmap says {verdict}",
                      {"nmap": out[-600:]})


WEAK_MARKERS = ("NULL", "EXPORT", "RC4", "DES", "MD5", "anon", "ADH", "AECDH", "IDEA", "SEED", "PSK")


class Tls(Check):
    name = "tls"
    needs = ("control", "smtpd")
    postfix_expect = "fail"
    postfix_why = ("Postfix 3.7's opportunistic-TLS defaults accept TLS 1.0/1.1 "
                   "(smtpd_tls_protocols = !SSLv2, !SSLv3) and anonymous DH suites "
                   "(smtpd_tls_ciphers = medium); tls-hardened is the control")

    def main_cf(self):
        return {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": "@ETC@/cert.pem",
                "smtpd_tls_key_file": "@ETC@/key.pem"}

    def prepare(self, root):
        etc = os.path.join(root, "etc")
        os.makedirs(etc, exist_ok=True)
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=battery.localdomain", "-keyout", os.path.join(etc, "key.pem"),
                            "-out", os.path.join(etc, "cert.pem")], capture_output=True, text=True)
        return None if p.returncode == 0 else f"openssl req failed: {p.stderr[-200:]}"

    def run(self, inst, sink, short):
        cmd = sslyze_command()
        if cmd is None:
            return Result(self.name, inst.kind, "skip",
                          "sslyze not installed (./dev torture installs it into .venv-sslyze)")
        out = os.path.join(inst.root, "sslyze.json")
        p = subprocess.run(cmd + ["--starttls", "smtp", "--json_out", out, f"127.0.0.1:{inst.port}"],
                           capture_output=True, text=True, timeout=300)
        try:
            with open(out) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return Result(self.name, inst.kind, "fail", f"sslyze produced no JSON: {p.stdout[-300:]} {p.stderr[-300:]}")
        return judge_sslyze(data, inst.kind, self.name)


class TlsHardened(Tls):
    """The same check against a configuration that must pass: TLS >= 1.2, no aNULL."""

    name = "tls-hardened"
    postfix_expect = "pass"
    postfix_why = ""

    def main_cf(self):
        return {**super().main_cf(), "smtpd_tls_protocols": ">=TLSv1.2",
                "smtpd_tls_exclude_ciphers": "aNULL, eNULL, EXPORT, DES, 3DES, RC4, MD5, PSK, SEED, IDEA"}


def sslyze_command() -> list[str] | None:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for py in (os.path.join(repo, ".venv-sslyze", "bin", "python"), sys.executable):
        if os.path.exists(py) and subprocess.run([py, "-c", "import sslyze"], capture_output=True).returncode == 0:
            return [py, "-m", "sslyze"]
    return None


def judge_sslyze(data: dict, kind: str, name: str = "tls") -> Result:
    """Protocols and weak suites from an sslyze JSON report."""
    results = data.get("server_scan_results") or []
    if not results:
        return Result("tls", kind, "fail", "sslyze scanned nothing")
    scan = results[0].get("scan_result") or {}
    if not scan:
        return Result("tls", kind, "fail", f"sslyze: {results[0].get('connectivity_error_trace', 'no scan')}"[:300])
    accepted = {}
    for proto in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3"):
        r = (scan.get(f"{proto}_cipher_suites") or {}).get("result") or {}
        suites = [s["cipher_suite"]["name"] for s in r.get("accepted_cipher_suites", [])]
        accepted[proto] = suites
    old = [p for p in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1") if accepted.get(p)]
    weak = sorted({s for p in accepted.values() for s in p
                   if any(w in s.split("_") or w in s for w in WEAK_MARKERS)})
    ok = not old and not weak and bool(accepted.get("tls_1_2") or accepted.get("tls_1_3"))
    summary = (f"protocols: {', '.join(p for p, s in accepted.items() if s) or 'none'}; "
               f"older than TLS 1.2: {old or 'none'}; weak suites: {weak or 'none'}")
    return Result(name, kind, "pass" if ok else "fail", summary,
                  {"accepted": {p: len(s) for p, s in accepted.items()}, "weak": weak, "old": old})


ALL = [Smuggling(), SmugglingHardened(), OpenRelay(), OpenRelayControl(), Floods(), Fuzz(), Kill9(), FullDisk(), Tls(), TlsHardened()]
BY_NAME = {c.name: c for c in ALL}


def run_check(check: Check, kind: str, *, short: bool, workdir: str | None = None,
              caps: dict | None = None) -> Result:
    """Build a private instance of ``kind`` for ``check``, run it, tear everything down."""
    t0 = time.monotonic()
    if kind == "fastpost":
        lack = mta.missing(caps if caps is not None else mta.fastpost_capabilities(), check.needs)
        if lack:
            return Result(check.name, kind, "unavailable", "fastpost lacks: " + ", ".join(lack),
                          {"missing": lack})
    if check.root_only and os.geteuid() != 0:
        return Result(check.name, kind, "skip", "needs root")
    root = tempfile.mkdtemp(prefix=f"fpt-{check.name[:8]}-{kind[:2]}-", dir=workdir)
    sink = smtp.PySink().start()
    inst = None
    try:
        why = check.prepare(root)
        if why:
            return Result(check.name, kind, "skip", why)
        inst = mta.make(kind, root, sink_port=sink.port)
        inst.configure({**FAST_RETRY, **check.main_cf()})
        inst.start()
        res = check.run(inst, sink, short)
    except (mta.InstanceError, OSError, subprocess.SubprocessError) as exc:
        res = Result(check.name, kind, "fail", f"{type(exc).__name__}: {str(exc)[:500]}")
    finally:
        if inst is not None:
            try:
                inst.running = True
                inst.stop()
            except mta.InstanceError:
                pass
        sink.stop()
        check.cleanup(root)
        shutil.rmtree(root, ignore_errors=True)
    if kind == "postfix" and res.status == "fail" and check.postfix_expect == "fail":
        res.status = "known-fail"
        res.summary = f"{res.summary} [expected: {check.postfix_why}]"
    res.seconds = round(time.monotonic() - t0, 1)
    return res


__all__ = ["ALL", "BY_NAME", "Check", "Result", "run_check", "judge_sslyze", "SMUGGLING_VARIANTS", "free_port"]
