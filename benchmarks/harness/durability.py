"""Prove from an strace log that every "250 ... queued as ID" follows that message's sync.

Postfix counterpart: none. This is the harness's check of the durability rule of
DESIGN.md section 4 ("250 ... queued as ID is sent only after the message is on disk"):
a fast number that cheats on durability is a bug, so a short run of the MTA is traced
and every acknowledgement is checked against the syscalls that came before it.

The log is what ``strace_command()`` asks for: ``strace -f -yy -s 65536`` (every fd
annotated with its path or socket, long strings kept whole) over the writes, syncs,
renames and opens of the whole process tree. strace serialises events, so line order is
event order; a call that blocks is printed as "<unfinished ...>" at entry and
"<... NAME resumed>" at exit, and both points are kept.

For each reply ``250 ... queued as ID`` written to a client socket (TCP by default), the
checker finds the message's data writes: writes to a regular file under ``queue_dir``
(when given) whose path contains ID (Postfix: one file per message, named by its queue
ID) or whose payload contains ID (a log-structured segment holding records that name
the ID, e.g. its Received: header). It then requires, for every such write completed
before the reply started, a successful ``fsync``/``fdatasync`` (or ``syncfs``/``sync``)
of the same file that *started after that write returned* and *returned before the reply
was written*, or that the file was opened with O_SYNC/O_DSYNC. Renames between the write
and the sync are followed. Verdicts per ID:

    ok            every data write is covered by a completed sync before the reply
    unsynced      a data write has no covering sync before the reply
    no-data       no data write for ID was seen: durability cannot be shown (a failure)

Fails: ``StraceFormatError`` for a log with no recognisable strace line at all;
otherwise it never raises on odd lines (they are counted in ``unparsed``).
"""

from __future__ import annotations

import dataclasses
import os
import re

#: The syscalls a durability trace needs (see strace_command()).
SYSCALLS = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg",
            "fsync", "fdatasync", "syncfs", "sync", "rename", "renameat", "renameat2",
            "open", "openat")

WRITES = {"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg"}
SYNCS = {"fsync", "fdatasync", "syncfs", "sync"}
RENAMES = {"rename", "renameat", "renameat2"}
OPENS = {"open", "openat"}


class StraceFormatError(ValueError):
    """The input is not an strace log."""


def strace_command(log_path: str, *, pids: list[int] | None = None,
                   argv: list[str] | None = None, strace: str = "strace") -> list[str]:
    """The strace command line: attach to ``pids`` (and their future children) or run ``argv``."""
    cmd = [strace, "-f", "-yy", "-s", "65536", "-o", log_path,
           "-e", "trace=" + ",".join(SYSCALLS)]
    for pid in pids or ():
        cmd += ["-p", str(pid)]
    if argv:
        cmd += ["--"] + list(argv)
    return cmd


@dataclasses.dataclass
class Call:
    """One completed (or never completed) syscall of the log."""

    pid: int
    name: str
    text: str          # arguments as printed (entry and resumed parts joined)
    result: str        # what follows " = " ("" if it never returned)
    start: int         # line index of entry
    end: int           # line index of return (a large number if it never returned)
    fd_path: str = ""  # path or socket of the first fd argument, from -y/-yy


@dataclasses.dataclass
class Verdict:
    queue_id: str
    status: str        # ok | unsynced | no-data
    detail: str


@dataclasses.dataclass
class DurabilityReport:
    replies: int
    verdicts: list[Verdict]
    unparsed: int
    calls: int

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status != "ok"]

    @property
    def ok(self) -> bool:
        return self.replies > 0 and not self.failures

    def summary(self) -> str:
        if self.replies == 0:
            return "no '250 ... queued as' reply found in the trace: nothing proven"
        counts: dict[str, int] = {}
        for v in self.verdicts:
            counts[v.status] = counts.get(v.status, 0) + 1
        head = (f"{self.replies} acknowledgements: " +
                ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        lines = [head] + [f"  {v.queue_id}: {v.status}: {v.detail}" for v in self.failures[:10]]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "replies": self.replies, "calls": self.calls,
                "unparsed": self.unparsed,
                "failures": [dataclasses.asdict(v) for v in self.failures[:50]],
                "counts": {s: sum(1 for v in self.verdicts if v.status == s)
                           for s in ("ok", "unsynced", "no-data")}}


_PREFIX = re.compile(r"^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(?:\d+:\d+:\d+(?:\.\d+)?\s+|\d+\.\d+\s+)?(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)(.*)$")
_FD = re.compile(r"^(?:\d+|AT_FDCWD)<((?:TCP|TCPv6|UDP|UDPv6|UNIX|UNIX-STREAM|UNIX-DGRAM|NETLINK|socket)"
                 r":\[[^\]]*\]|[^>]*)>")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_REPLY = re.compile(r"250[ -](?:(?!\\n).){0,200}?queued as ([0-9A-Za-z]+)")


def _split_result(rest: str) -> tuple[str, str]:
    """(args text, result) of the part after "NAME(" or after "resumed>"."""
    if rest.endswith("<unfinished ...>"):
        return rest[: -len("<unfinished ...>")].rstrip(), ""
    m = None
    for m in _RESULT.finditer(rest):
        pass
    if m is None:
        return rest, ""
    return rest[: m.start()], (m.group(1) + m.group(2)).strip()


def parse(lines) -> tuple[list[Call], int]:
    """Parse strace -f output into calls ordered by their entry; (calls, unparsed count)."""
    calls: list[Call] = []
    pending: dict[tuple[int, str], Call] = {}
    unparsed = 0
    seen_any = False
    for idx, raw in enumerate(lines):
        line = raw.rstrip("\n")
        m = _PREFIX.match(line)
        pid = int(m.group(1) or m.group(2) or 0)
        body = m.group(3)
        if body.startswith(("+++", "---")) or "detached" in body[:40] or not body:
            seen_any = seen_any or body.startswith(("+++", "---"))
            continue
        r = _RESUMED.match(body)
        if r:
            seen_any = True
            call = pending.pop((pid, r.group(1)), None)
            args, result = _split_result(r.group(2))
            if call is None:
                unparsed += 1
                continue
            call.text += args
            call.result = result
            call.end = idx
            continue
        c = _CALL.match(body)
        if not c:
            unparsed += 1
            continue
        seen_any = True
        name = c.group(1)
        args, result = _split_result(c.group(2))
        fd = _FD.match(args)
        call = Call(pid, name, args, result, idx, idx if result else 1 << 62,
                    fd.group(1) if fd else "")
        if not result and body.endswith("<unfinished ...>"):
            pending[(pid, name)] = call
        calls.append(call)
    if not seen_any and calls == []:
        raise StraceFormatError("no strace line found")
    return calls, unparsed


def _is_socket(path: str) -> bool:
    return path.startswith(("TCP", "UDP", "UNIX", "NETLINK", "socket:"))


def _ok(call: Call) -> bool:
    return call.result != "" and not call.result.startswith("-") and call.result != "?"


def _strings(call: Call) -> list[str]:
    return _STRING.findall(call.text)


def _same_file(a: str, b: str) -> bool:
    """Paths equal, or one is a relative path naming the other (rename with relative names)."""
    if a == b:
        return True
    if not a or not b:
        return False
    if not a.startswith("/"):
        return b.endswith("/" + a)
    if not b.startswith("/"):
        return a.endswith("/" + b)
    return False


def check(lines, *, queue_dir: str | None = None, reply_socket: str = "TCP",
          ignore: tuple[str, ...] = ()) -> DurabilityReport:
    """Check every 250 ... queued as ID in an strace log (iterable of lines)."""
    calls, unparsed = parse(lines)
    qdir = os.path.realpath(queue_dir) if queue_dir else None

    def queue_file(path: str) -> bool:
        if not path or _is_socket(path) or path.startswith(("/dev/", "/proc/", "pipe:", "anon_inode")):
            return False
        if any(path.startswith(p) for p in ignore):
            return False
        return qdir is None or path.startswith(qdir + "/") or not path.startswith("/")

    data_writes: list[Call] = []
    syncs: list[Call] = []
    renames: list[tuple[Call, str, str]] = []
    dsync_paths: set[str] = set()
    replies: list[tuple[Call, str]] = []
    for call in calls:
        if call.name in WRITES:
            if not _ok(call):
                continue
            if _is_socket(call.fd_path):
                if call.fd_path.startswith(reply_socket):
                    for qid in _REPLY.findall(call.text):
                        replies.append((call, qid))
            elif queue_file(call.fd_path):
                data_writes.append(call)
        elif call.name in SYNCS:
            if _ok(call):
                syncs.append(call)
        elif call.name in RENAMES:
            s = _strings(call)
            if _ok(call) and len(s) >= 2:
                renames.append((call, s[0], s[1]))
        elif call.name in OPENS:
            if _ok(call) and re.search(r"\bO_(?:D?SYNC)\b", call.text):
                m = re.search(r"=\s*\d+<([^>]*)>", call.result and ("= " + call.result) or "")
                if m:
                    dsync_paths.add(m.group(1))

    def covered(w: Call, before: int) -> bool:
        if w.fd_path in dsync_paths:
            return True
        names = {w.fd_path}
        # renames after the write move the file: a later sync may name the new path
        for rc, old, new in renames:
            if rc.start > w.end and rc.end < before and any(_same_file(old, n) for n in names):
                names.add(new)
        for s in syncs:
            if s.start <= w.end or s.end >= before:
                continue
            if s.name in ("sync", "syncfs"):
                return True
            if any(_same_file(s.fd_path, n) for n in names):
                return True
        return False

    verdicts: list[Verdict] = []
    for reply, qid in replies:
        mine = [w for w in data_writes
                if w.end < reply.start and (qid in os.path.basename(w.fd_path) or qid in w.text)]
        if not mine:
            verdicts.append(Verdict(qid, "no-data", f"no write of message {qid} to a queue file "
                                    f"before its reply (line {reply.start + 1})"))
            continue
        bad = [w for w in mine if not covered(w, reply.start)]
        if bad:
            w = bad[-1]
            verdicts.append(Verdict(qid, "unsynced",
                                    f"{w.name} to {w.fd_path} (line {w.start + 1}) has no "
                                    f"completed fsync/fdatasync before the reply (line "
                                    f"{reply.start + 1})"))
        else:
            verdicts.append(Verdict(qid, "ok", f"{len(mine)} write(s) synced"))
    return DurabilityReport(len(replies), verdicts, unparsed, len(calls))


def check_file(path: str, **kw) -> DurabilityReport:
    """``check()`` on an strace log file."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return check(fh, **kw)
