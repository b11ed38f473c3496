#!/usr/bin/env python3
"""The end of data, step by step: the client's "." to its 250, through smtpd and cleanup.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/dot_steps.py \
        [--messages 20000] [--sessions 20] [--seconds 1] [--fs journal] [--keep FILE] \
        [--trace both|smtpd|cleanup|perf|loops]

Postfix counterpart: none (a measurement of fastpost's accept path).

One fastpost instance without qmgr (as accept_pipeline.py builds it) is loaded by
smtp-source (1 KiB, one connection per message); meanwhile ``strace -f -ttt -T`` is
attached to smtpd and the cleanup worker for ``--seconds`` (read, write, writev,
fdatasync and their socket variants, with up to 4 KiB of their data). Each message is
followed by its queue ID, which appears in smtpd's Received: header (the content smtpd
sends cleanup), in the segment frame cleanup's I/O thread writes, in cleanup's answer
and in the ``250 ... queued as ID`` reply; the client's "." is the last read on the
client's socket before that reply. Printed, median / p90 in ms, per message:

    "." read by smtpd -> END frame written to cleanup      smtpd's loop
    END written -> read by cleanup                           the socket, cleanup's loop
    read by cleanup -> writev starts                         cleanup's loop (commit())
                                                             + the batch forming + the
                                                             flush in flight
    writev                                                   (its duration)
    writev done -> fdatasync called
    fdatasync                                                (its duration)
    fdatasync returned -> answer written by cleanup          the GIL, the loop's wake-up
    answer written -> read by smtpd
    answer read -> 250 written                               smtpd's loop

and the same for DATA -> 354 (the client's DATA read -> OPEN written -> read by cleanup
-> answer with the queue ID written -> read by smtpd -> 354 written).

strace stops the traced threads at every traced call: every step is longer than
untraced (the untraced run's end of data is accept_latency.py's figure), so the shares,
not the absolute times, are the result. ``--trace smtpd`` or ``cleanup`` stops only
one of them (the steps that need the other are left out). Lighter, without the data:
``--trace perf`` (perf trace of both loops' reads, writes and epoll waits; messages
followed by descriptor and size: perf_steps()) and ``--trace loops`` (the epoll waits
alone: each loop's turns, loop_turns()). Must run as root. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import accept_pipeline  # noqa: E402
from cleanup_threads import cleanup_pid  # noqa: E402
from harness import procs  # noqa: E402
from harness.tools import run_source  # noqa: E402

CALLS = "read,write,writev,pwritev,pwritev2,pwrite64,readv,recvfrom,sendto,recvmsg,sendmsg,fdatasync"
# "12345 1700000000.123456 write(7, "..."..., 80) = 80 <0.000012>"
LINE = re.compile(r'^(\d+)\s+([0-9.]+) (\w+)\((\d+),? ?(.*)\) += (-?\d+)(?: \w+ \([^)]*\))? <([0-9.]+)>$')
QID = re.compile(r"queued as ([0-9A-Za-z]+)")
ANSWER_250 = re.compile(r"\\1ci\\364\\3\\2ids\\v([0-9A-Za-z]+)")  # cleanup's {"c": 250, "id": ID}


def pct(values: list, q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


UNFINISHED = re.compile(r'^(\d+)\s+([0-9.]+) (\w+)\((\d+),? ?(.*) <unfinished \.\.\.>$')
RESUMED = re.compile(r'^(\d+)\s+[0-9.]+ <\.\.\. (\w+) resumed>(.*)\) += (-?\d+)(?: \w+ \([^)]*\))? <([0-9.]+)>$')


def parse(path: str) -> list:
    """(tid, start, call, fd, args, result, duration) of every finished call, by start."""
    out, pending = [], {}
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            m = LINE.match(line)
            if m:
                tid, ts, call, fd, args, res, dur = m.groups()
                out.append((int(tid), float(ts), call, int(fd), args, int(res), float(dur)))
                continue
            m = UNFINISHED.match(line)
            if m:  # another thread's call was printed meanwhile: the rest follows
                tid, ts, call, fd, args = m.groups()
                pending[int(tid)] = (float(ts), call, int(fd), args)
                continue
            m = RESUMED.match(line)
            if m and int(m.group(1)) in pending:
                ts, call, fd, args = pending.pop(int(m.group(1)))
                out.append((int(m.group(1)), ts, call, fd, args + m.group(3), int(m.group(4)), float(m.group(5))))
    out.sort(key=lambda c: c[1])
    return out


WRITES = ("write", "writev", "sendto", "sendmsg")
READS = ("read", "readv", "recvfrom", "recvmsg")
TOKEN = re.compile(r"[0-9A-Za-z]{6,}")  # holds a queue ID (strace's escapes and frames glue letters on)


INTERVALS = (  # (name, from, to): the moments steps() finds
    ("'.' read by smtpd -> END frame written", "dot", "end"),
    ("END written -> read by cleanup", "end", "c_read"),
    ("read by cleanup -> pwritev starts", "c_read", "wv0"),
    ("pwritev", "wv0", "wv1"),
    ("pwritev done -> fdatasync called", "wv1", "sync0"),
    ("fdatasync", "sync0", "sync1"),
    ("fdatasync returned -> I/O thread posts", "sync1", "post"),
    ("posted -> answer written by cleanup's loop", "post", "ans_w"),
    ("answer written -> read by smtpd", "ans_w", "ans_r"),
    ("END written -> answer read by smtpd", "end", "ans_r"),
    ("answer read -> 250 written", "ans_r", "250"),
    ("'.' read -> 250 written (sum)", "dot", "250"),
    ("read by cleanup -> answer written (cleanup)", "c_read", "ans_w"),
)


def steps_index(calls: list, smtpd: int) -> tuple:
    """({queue ID: smtpd's 250 write}, {queue ID: every call whose data names it})."""
    replies = {}  # queue ID -> smtpd's 250 write
    for c in calls:
        if c[0] == smtpd and c[2] in WRITES and c[4].startswith('"250 '):
            m = QID.search(c[4])
            if m:
                replies[m.group(1)] = c
        elif c[0] != smtpd and c[2] in WRITES and c[4].startswith('"\\0'):
            # cleanup's answers "250, ID" (smtpd untraced: the IDs come from here)
            for qid in ANSWER_250.findall(c[4]):
                replies.setdefault(qid, None)
    lengths = {len(q) for q in replies}
    seen: dict = {}  # queue ID -> every call whose data names it, in order
    for c in calls:
        found = set()
        for tok in TOKEN.findall(c[4]):
            for n in lengths:
                found.update(q for q in (tok[i:i + n] for i in range(len(tok) - n + 1)) if q in replies)
        for q in found:
            seen.setdefault(q, []).append(c)
    return replies, seen


def steps(calls: list, smtpd: int) -> dict:
    """Per message, the named intervals (seconds), found by queue ID."""
    replies, seen = steps_index(calls, smtpd)
    last_read: dict = {}  # smtpd's client fd -> its reads, in order
    for c in calls:
        if c[0] == smtpd and c[2] in READS and c[5] > 0:
            last_read.setdefault(c[3], []).append(c)
    pos = {id(c): i for i, c in enumerate(calls)}
    result: dict = {}

    def add(name, value):
        result.setdefault(name, []).append(value)

    def done(x):
        return x[1] + x[6]
    for qid, r in replies.items():
        mine = seen.get(qid, ())
        t: dict = {}  # the moments found for this message (a process not traced has none)
        if r is not None:
            fd = r[3]
            t["250"] = done(r)
            reads = [x for x in last_read.get(fd, ()) if x[1] < r[1]]
            if reads and ("\\r\\n.\\r\\n" in reads[-1][4] or reads[-1][4].startswith('".\\r\\n')):
                t["dot"] = done(reads[-1])
                end_w = next((x for x in mine if x[0] == smtpd and x[2] in WRITES and x[3] != fd
                              and "Received: " in x[4] and t["dot"] <= x[1] <= r[1]), None)
                if end_w is not None:
                    t["end"] = done(end_w)
        c_read = next((x for x in mine if x[0] != smtpd and x[2] in READS and done(x) >= t.get("end", 0)
                       and "Received: " in x[4]), None)
        if c_read is not None:
            t["c_read"] = done(c_read)
            wv = next((x for x in mine if x[0] != smtpd and x[2] in ("pwritev", "pwritev2")
                       and x[1] >= t["c_read"]), None)
            if wv is not None:
                t["wv0"], t["wv1"] = wv[1], done(wv)
                add("messages in the pwritev (count of Received: headers)", wv[4].count("Received: "))
                at = pos[id(wv)]
                after = [x for x in calls[at:at + 400] if x[0] == wv[0]]
                sync = next((x for x in after if x[2] == "fdatasync"), None)
                if sync is not None:
                    t["sync0"], t["sync1"] = sync[1], done(sync)
                    # the I/O thread's post: call_soon_threadsafe's 8-byte write to the wake-up fd
                    post = next((x for x in after if x[2] == "write" and x[5] == 8 and x[1] >= t["sync1"]), None)
                    if post is not None:
                        t["post"] = done(post)
                ans_w = next((x for x in mine if x[0] not in (smtpd, wv[0]) and x[2] in WRITES and x[1] >= wv[1]
                              and x[3] == c_read[3]), None)
                if ans_w is not None:
                    t["ans_w"] = done(ans_w)
        if r is not None and "end" in t:
            ans_r = next((x for x in mine if x[0] == smtpd and x[2] in READS and x[3] != r[3]
                          and done(x) >= max(t.get("ans_w", 0), t.get("end", 0))), None)
            if ans_r is not None and done(ans_r) <= t["250"]:
                t["ans_r"] = done(ans_r)
        for name, a, b in INTERVALS:
            if a in t and b in t:
                add(name, t[b] - t[a])
    return result


def data_steps(calls: list, smtpd: int) -> dict:
    """DATA -> 354: when the OPEN went to cleanup, its answer (the queue ID) came back.

    The OPEN frame ends with its transaction number (``...\\1oi\\2\\1ti<t>``); cleanup's
    answer carries the same number and the new queue ID (``\\1ti<t>\\2ids\\v<ID>``).
    Times are relative to smtpd's read of the client's DATA (negative: before it).
    """
    replies, seen = steps_index(calls, smtpd)
    result: dict = {}

    def done(x):
        return x[1] + x[6]
    s_reads: dict = {}  # smtpd's reads and writes by file descriptor
    s_writes: dict = {}
    for c in calls:
        if c[0] == smtpd and c[2] in READS and c[5] > 0:
            s_reads.setdefault(c[3], []).append(c)
        elif c[0] == smtpd and c[2] in WRITES:
            s_writes.setdefault(c[3], []).append(c)
    for qid, r in replies.items():
        if r is None:
            continue
        mine = seen.get(qid, ())
        ans_w = next((x for x in mine if x[0] != smtpd and x[2] in WRITES and x[4].startswith('"\\0')), None)
        if ans_w is None:
            continue
        m = re.search(r"\\1ti(.+?)\\2ids\\v" + qid, ans_w[4])
        if m is None:
            continue
        opening = re.compile(r"\\1oi\\2\\1ti" + re.escape(m.group(1)) + r'(?=\\0|")')
        before = [x for x in calls if x[1] < ans_w[1] and x[1] > ans_w[1] - 0.05]  # 50 ms back at most
        open_w = next((x for x in reversed(before) if x[0] == smtpd and x[2] in WRITES
                       and opening.search(x[4])), None)
        open_r = next((x for x in reversed(before) if x[0] == ans_w[0] and x[2] in READS
                       and opening.search(x[4])), None)
        ans_r = next((x for x in mine if x[0] == smtpd and x[2] in READS and done(x) >= done(ans_w)), None)
        data = [x for x in s_reads.get(r[3], ()) if x[1] < r[1] and x[4].upper().startswith('"DATA')]
        if open_w is None or open_r is None or ans_r is None or not data:
            continue
        t_data = done(data[-1])
        w354 = next((x for x in s_writes.get(r[3], ()) if x[1] >= t_data and x[4].startswith('"354 ')), None)
        if w354 is None:
            continue
        for name, t in (("OPEN written by smtpd", done(open_w)), ("OPEN read by cleanup", done(open_r)),
                        ("answer (queue ID) written by cleanup", done(ans_w)),
                        ("answer read by smtpd", done(ans_r)), ("354 written", done(w354))):
            result.setdefault(f"DATA read -> {name}", []).append(t - t_data)
    return result


PERF_EPOLL = re.compile(r"^\s*([0-9.]+) \(\s*([0-9.]+) ms\): [^/]*/(\d+) epoll_p?wait\(.*\)\s+= (\d+)")


def loop_turns(path: str, tids: dict) -> None:
    """Print each event loop's turns from perf trace's epoll_wait lines (times in ms).

    A turn: epoll_wait returns with n ready descriptors, the loop runs their callbacks
    and its ready queue, then calls epoll_wait again; a frame written during a turn
    (smtpd's call_soon flush to cleanup, cleanup's answers) leaves at that turn's end.
    """
    seq: dict = {}
    with open(path, errors="replace") as fh:
        for line in fh:
            m = PERF_EPOLL.match(line)
            if m and int(m.group(3)) in tids.values():
                start, dur = float(m.group(1)), float(m.group(2))
                seq.setdefault(int(m.group(3)), []).append((start, start + dur, int(m.group(4))))
    print(f"  {'(ms)':<46} {'median':>7} {'p90':>7}")
    for name, tid in tids.items():
        calls = seq.get(tid, [])
        if len(calls) < 2:
            print(f"{name}: no epoll_wait seen")
            continue
        busy = [b[0] - a[1] for a, b in zip(calls, calls[1:]) if a[2] > 0]
        events = [a[2] for a in calls[:-1] if a[2] > 0]
        waits = [c[1] - c[0] for c in calls]
        span = calls[-1][1] - calls[0][0]
        print(f"{name} (thread {tid}): {len(busy) / span * 1000:,.0f} turns/s with events, "
              f"busy {sum(busy) / span * 100:.0f} % of the time")
        # A frame arriving at a random moment finds a turn running with the probability
        # "busy" and then waits for the rest of it: on average E[T^2] / (2 E[T]) (long
        # turns are the likelier to be hit), before its own turn starts.
        rest = sum(b * b for b in busy) / (2 * sum(busy)) if busy else 0.0
        print(f"  mean wait of a frame for the turn in progress: {rest * sum(busy) / span:.3f} ms "
              f"(rest of a turn, when one runs: {rest:.3f} ms)")
        for label, vals in (("turn: epoll_wait return -> next call", busy), ("ready descriptors per turn", events),
                            ("epoll_wait itself (idle or a timeout of 0)", waits)):
            print(f"  {label:<46} {pct(vals, .5):7.3f} {pct(vals, .9):7.3f}   (n={len(vals)})")


PERF_IO = re.compile(r"^\s*([0-9.]+) \(\s*([0-9.]+) ms\): [^/]*/(\d+) (read|write)\(fd: (\d+).*\)\s+= (-?\d+)")


def perf_steps(path: str, smtpd: int, cleanup: int) -> dict:
    """End of data from perf trace's read/write lines (no data: sizes and order only).

    smtpd's side, per client descriptor: the 37-byte write after a content read (more
    than 100 bytes; a 354 is also 37 bytes but follows DATA's 6) is the 250, that read
    held the client's "."; the END frame is smtpd's first write to cleanup (the
    descriptor of its large writes) after it; cleanup's answer is smtpd's last read on
    that descriptor before the 250. Cleanup's side: its loop's first read that started
    after the END frame was written (the frame can only be in a read that starts later).
    """
    calls = []
    with open(path, errors="replace") as fh:
        for line in fh:
            m = PERF_IO.match(line)
            if m:
                start, dur, tid, call, fd, res = m.groups()
                start = float(start) / 1000
                calls.append((int(tid), start, call, int(fd), int(res), start + float(dur) / 1000))
    big: dict = {}
    for c in calls:
        if c[0] == smtpd and c[2] == "write" and c[4] > 1000:
            big[c[3]] = big.get(c[3], 0) + 1
    if not big:
        return {}
    to_cleanup = max(big, key=big.get)
    c_reads = [c[1] for c in calls if c[0] == cleanup and c[2] == "read" and c[4] > 0]
    c_done = {c[1]: c[5] for c in calls if c[0] == cleanup and c[2] == "read"}
    result: dict = {}
    last: dict = {}  # client fd -> its last read
    end_w, ans_r = [], []  # smtpd's writes to cleanup, its reads from it (by start)
    end_starts: list = []
    for c in calls:
        if c[0] != smtpd:
            continue
        if c[3] == to_cleanup:
            (end_w if c[2] == "write" else ans_r).append(c)
            if c[2] == "write":
                end_starts.append(c[1])
        elif c[2] == "read" and c[4] > 0:
            last[c[3]] = c
        elif c[2] == "write" and c[4] == 37 and c[3] in last and last[c[3]][4] > 100:
            dot = last.pop(c[3])
            k = bisect.bisect_left(end_starts, dot[5])  # the first write to cleanup after the "."
            w = end_w[k] if k < len(end_w) else None
            a = next((x for x in reversed(ans_r) if x[5] <= c[1]), None)
            if w is None or a is None or a[1] < w[5]:
                continue
            j = bisect.bisect_left(c_reads, w[5])
            for name, v in (("'.' read by smtpd -> END frame written", w[5] - dot[5]),
                            ("END written -> answer read by smtpd", a[5] - w[5]),
                            ("answer read -> 250 written", c[5] - a[5]),
                            ("'.' read -> 250 written (sum)", c[5] - dot[5])):
                result.setdefault(name, []).append(v)
            if j < len(c_reads):
                result.setdefault("END written -> read by cleanup's loop", []).append(c_done[c_reads[j]] - w[5])
    # Cleanup's side, per event (not per message): the loop's read of its wake-up
    # descriptor (the I/O thread's post, 8 bytes) -> its next write to smtpd (the
    # answers), and each such write -> smtpd's next read from cleanup.
    c_own = [c for c in calls if c[0] == cleanup]
    fds: dict = {}
    for c in c_own:
        if c[2] == "read" and c[4] > 0:
            fds[c[3]] = fds.get(c[3], 0) + c[4]
    if fds:
        sock = max(fds, key=fds.get)  # the connection from smtpd carries the content
        wake = {c[3] for c in c_own if c[2] == "read" and c[4] == 8 and c[3] != sock}
        s_reads = [c for c in calls if c[0] == smtpd and c[2] == "read" and c[3] == to_cleanup]
        s_starts = [c[1] for c in s_reads]
        woke = None
        for c in c_own:
            if c[2] == "read" and c[3] in wake:
                woke = c[5]
            elif c[2] == "write" and c[3] == sock:
                if woke is not None:
                    result.setdefault("cleanup: wake-up read -> answers written (per wake-up)", []).append(c[5] - woke)
                    woke = None
                k = bisect.bisect_left(s_starts, c[5])
                if k < len(s_reads):
                    result.setdefault("cleanup's write -> smtpd's next read from cleanup", []).append(
                        s_reads[k][5] - c[5])
    return result


def smtpd_pid(master: int) -> int | None:
    for pid, st in procs.tree(master).items():
        if procs.daemon_name(pid, st[0]) == "smtpd":
            return pid
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=1.0, help="how long strace stays attached")
    ap.add_argument("--keep", help="copy strace's output to this file")
    ap.add_argument("--trace", choices=("both", "smtpd", "cleanup", "loops", "perf"), default="both",
                    help="which processes strace stops (the other runs untraced); 'loops': no "
                    "strace, perf trace of both event loops' epoll_wait instead; 'perf': perf trace of their reads and writes "
                    "(sizes, no data)")
    accept_pipeline.add_dir_argument(ap)
    args = ap.parse_args()
    base = accept_pipeline.root_workdir("fp-dot-steps-", args.dir, "the instance's daemons change user", args.fs)
    if base is None:
        return 1
    inst = accept_pipeline.make("fastpost", os.path.join(base, "fastpost"))
    out = os.path.join(base, "strace.txt")
    try:
        accept_pipeline.start_warm(inst, args.sessions)
        s_pid, c_pid = smtpd_pid(inst.master_pid()), cleanup_pid(inst.master_pid())
        res: dict = {}
        load = threading.Thread(target=lambda: res.update(run_source(inst.port, args.sessions, args.messages, 1024)))
        load.start()
        time.sleep(1.0)
        if args.trace == "loops":
            cmd = ["perf", "trace", "-e", "epoll_wait,epoll_pwait", "-o", out, "-p", f"{s_pid},{c_pid}"]
        elif args.trace == "perf":
            cmd = ["perf", "trace", "-e", "read,write,epoll_wait,epoll_pwait", "-o", out, "-p", f"{s_pid},{c_pid}"]
        else:
            cmd = ["strace", "-f", "-ttt", "-T", "-qq", "-s", "4096", "-e", f"trace={CALLS}", "-o", out]
        if args.trace in ("both", "smtpd"):
            cmd += ["-p", str(s_pid)]
        if args.trace in ("both", "cleanup"):
            cmd += [arg for tid in os.listdir(f"/proc/{c_pid}/task") for arg in ("-p", tid)]
        tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds)
        tracer.send_signal(2)
        tracer.wait(timeout=30)
        load.join()
    finally:
        inst.stop()
    try:
        if args.keep:
            shutil.copy(out, args.keep)
        print(f"untraced+traced load: {args.messages / res['seconds']:,.0f} msgs/s at -s {args.sessions};"
              f" smtpd {s_pid}, cleanup {c_pid}")
        if args.trace == "loops":
            loop_turns(out, {"smtpd": s_pid, "cleanup's loop": c_pid})
            return 0
        if args.trace == "perf":
            print(f"  {'(ms)':<46} {'median':>7} {'p90':>7}")
            for name, vals in perf_steps(out, s_pid, c_pid).items():
                print(f"  {name:<46} {pct(vals, .5) * 1000:7.3f} {pct(vals, .9) * 1000:7.3f}   (n={len(vals)})")
            loop_turns(out, {"smtpd": s_pid, "cleanup's loop": c_pid})
            return 0
        calls = parse(out)
        print(f"  {'(ms)':<46} {'median':>7} {'p90':>7}")
        for title, table in (("end of data", steps(calls, s_pid)), ("DATA -> 354", data_steps(calls, s_pid))):
            print(f"{title}:")
            for name, vals in table.items():
                scale = 1 if name.startswith("messages") else 1000
                print(f"  {name:<46} {pct(vals, .5) * scale:7.3f} {pct(vals, .9) * scale:7.3f}   (n={len(vals)})")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
