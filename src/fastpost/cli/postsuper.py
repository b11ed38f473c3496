"""fastpost super: queue maintenance, as postsuper(1) does, plus selectors and import.

Postfix counterpart: src/postsuper/postsuper.c

    fastpost super [-c config_dir] [-psSv] [-d id] [-e id] [-f id] [-h id] [-H id] [-r id]
                   [--sender ADDR] [--recipient ADDR] [--domain DOMAIN] [--reason TEXT]
                   [--older-than AGE] [--newer-than AGE] [--import DIR] [queue...]

    -d id   delete                (default queues: hold incoming active deferred)
    -e id   force expiry          (hold incoming active deferred)
    -f id   force expiry and release from hold
    -h id   put on hold           (incoming active deferred)
    -H id   release from hold into deferred (hold)
    -r id   requeue through pickup and cleanup (hold incoming active deferred): the
            message (its undelivered recipients, its arrival time, its content) is
            written to maildrop as mail_owner's file and removed from the queue; pickup
            gives it to cleanup again (new queue ID, today's canonical/virtual/checks);
            a message in the active queue is marked instead and qmgr requeues it when
            its deliveries under way are recorded (fastpost.mail.queue.requeue)
    -p      remove temporary files left by crashes       } also done when no other
    -s      structure check and repair (see below)       } operation is given
    -S      -s, and read every message to check its stored bytes

``id`` is a queue ID, ``ALL`` (every message of the named queues) or ``-`` (IDs from
standard input, one per line); each option may be repeated. Trailing arguments name
the queues to act on (incoming, active, deferred, hold, corrupt).

Selectors (fastpost's own) narrow every operation to messages that match all given:
--sender (an address, ``<>`` for the null sender, or ``@domain``), --recipient (a
recipient not yet delivered), --domain (a recipient domain), --reason (text in a defer
reason, case-insensitive), --older-than / --newer-than (arrival age: 30s, 10m, 2h, 5d,
1w). They read only the index and keep memory bounded: messages are selected while the
queue is walked and changed in transactions of 1000.

-s here: recover the store (as every open does), remove empty segments and copy
long-deferred messages forward (compaction); it reads no message, so it is cheap enough
to run at every start, as Postfix's start script runs postsuper. -S also reads every
message and checks its checksums (damaged ones move to the corrupt queue with a warning).

--import DIR takes the messages of a Postfix queue directory (fastpost.mail.queue.importer).

Output as postsuper: per message named by ID (not for ALL) ``ID: removed``,
``ID: placed on hold``, ``ID: released from hold``, ``ID: expired``; then ``Deleted: N messages``,
``Force-expired: N``, ``Placed on hold: N``, ``Released from hold: N`` on standard error
and in the mail log (postfix/postsuper).

Diagnostics: ``postsuper: warning: invalid mail queue id: X``; ``postsuper: fatal:
invalid directory name: X``; usage errors exit 1 as postsuper's do; a bad global
value of main.cf (fastpost.mail.mainvalues, through queuetool.Tool.config):
``postsuper: fatal: ...``, exit 1.
"""

from __future__ import annotations

import getopt
import sys
import time

from fastpost.cli.queuetool import Tool, ToolFatal

USAGE = ("usage: postsuper [-c config_dir] [-d queue_id (delete)] [-e queue_id (expire)] "
         "[-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] [-H queue_id (un-hold)] "
         "[-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] "
         "[-S (redundant structure fix)][-v (verbose)] [queue...]")

LONG_OPTIONS = ["sender=", "recipient=", "domain=", "reason=", "older-than=", "newer-than=", "import="]
QUEUE_NAMES = ("incoming", "active", "deferred", "hold", "corrupt", "maildrop")
DEFAULT_QUEUES = {
    "d": ("hold", "incoming", "active", "deferred"),
    "e": ("hold", "incoming", "active", "deferred"),
    "f": ("hold", "incoming", "active", "deferred"),
    "h": ("incoming", "active", "deferred"),
    "H": ("hold",),
    "r": ("hold", "incoming", "active", "deferred"),
}
#: The order operations run in and report in.
OP_ORDER = ("d", "e", "f", "h", "H", "r")
SUMMARY = {"d": "Deleted", "e": "Force-expired", "h": "Placed on hold", "H": "Released from hold",
           "r": "Requeued"}
CHUNK = 1000


def plural(n: int) -> str:
    return f"{n} message" if n == 1 else f"{n} messages"


class Selector:
    """Conditions on a message that every given selector option must satisfy."""

    def __init__(self):
        self.sender: str | None = None
        self.recipient: str | None = None
        self.domain: str | None = None
        self.reason: str | None = None
        self.older: float | None = None
        self.newer: float | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.sender, self.recipient, self.domain, self.reason,
                                            self.older, self.newer))

    def matches(self, store, info, now: float) -> bool:
        """Whether a message (an index entry, with or without its recipients) passes."""
        if self.sender is not None:
            s = info.sender.lower()
            if self.sender.startswith("@"):
                if not s.endswith(self.sender):
                    return False
            elif s != self.sender:
                return False
        if self.older is not None and info.arrival > now - self.older:
            return False
        if self.newer is not None and info.arrival < now - self.newer:
            return False
        if self.recipient is not None or self.domain is not None:
            # streamed a chunk at a time, stopping at the first match: a message with
            # 100,000 recipients is never held whole
            want_r, want_d = self.recipient is None, self.domain is None
            for r in store.iter_recipients(info.queue_id, live_only=True):
                want_r = want_r or r.address.lower() == self.recipient
                want_d = want_d or r.domain == self.domain
                if want_r and want_d:
                    break
            else:
                return False
        if self.reason is not None:
            # log entry by log entry (an entry is one recipient's block)
            if not any(self.reason in block.decode("utf-8", "replace").lower()
                       for block in store.iter_logs(info.queue_id, "defer")):
                return False
        return True


def _age(text: str) -> float:
    from fastpost.mail.config import parse_time

    seconds = parse_time(text, "s")
    if seconds is None:
        raise ToolFatal(f"bad time value: {text}")
    return float(seconds)


class Super:
    """One run of the command: options parsed, the store open, counters kept."""

    def __init__(self, tool: Tool, store, queues: list[str] | None, selector: Selector):
        self.tool = tool
        self.store = store
        self.queues = queues
        self.selector = selector
        self.now = time.time()
        self.counts = {op: 0 for op in OP_ORDER}

    def _states(self, op: str):
        from fastpost.mail.queue import index as ix

        names = self.queues or DEFAULT_QUEUES[op]
        codes = [ix.STATE_CODES[n] for n in names if n in ix.STATE_CODES]
        if op in ("f", "H"):  # walk the destination first: no message is seen twice
            codes.sort(key=lambda c: c == ix.HOLD)
        return codes

    def _candidates(self, op: str, ids: list[str]):
        """Yield the MessageInfo an operation applies to (streaming for ALL)."""
        from fastpost.mail.queue.queue_id import valid_queue_id

        states = set(self._states(op))
        if "ALL" in ids:
            if self.selector.domain is not None and not self.selector.recipient:
                source = (self.store.get(q, recipients=False)
                          for q in self.store.by_domain(self.selector.domain))
                source = (i for i in source if i is not None and i.state in states)
                for info in source:
                    if self.selector.matches(self.store, info, self.now):
                        yield info
                return
            for info in self.store.messages(self._states(op), recipients=False):
                if not self.selector.active or self.selector.matches(self.store, info, self.now):
                    yield info
            return
        for qid in ids:
            if not valid_queue_id(qid):
                self.tool.warn(f"invalid mail queue id: {qid}")
                continue
            info = self.store.get(qid, recipients=False)
            if info is None or info.state not in states:
                continue
            if self.selector.active and not self.selector.matches(self.store, info, self.now):
                continue
            yield info

    def run(self, op: str, ids: list[str]) -> None:
        chunk: list = []
        quiet = "ALL" in ids  # as postsuper: ALL reports only the totals
        for info in self._candidates(op, ids):
            chunk.append(info.queue_id)
            if len(chunk) >= CHUNK:
                self._apply(op, chunk, quiet)
                chunk = []
        if chunk:
            self._apply(op, chunk, quiet)

    def _requeue(self, qids: list[str], quiet: bool) -> None:
        """-r: each message to maildrop (durably), then out of the queue; wake pickup.

        A message in the active queue is marked instead (requeue.request): qmgr requeues
        it when the deliveries under way are recorded, so that no recipient is
        delivered twice (docs/queue.md, "super -r of an active message")."""
        import os
        import pwd

        from fastpost.cli.sendmail import wake_pickup
        from fastpost.mail.queue import CorruptMessage, QueueError
        from fastpost.mail.queue import index as ix
        from fastpost.mail.queue.message import CorruptQueueFile
        from fastpost.mail.queue.requeue import request, requeue

        cfg = self.tool.cfg
        queue = cfg.get("queue_directory")
        directory = os.path.join(queue, "maildrop")
        try:
            owner = pwd.getpwnam(cfg.get("mail_owner"))
            ids = (owner.pw_uid, owner.pw_gid) if os.geteuid() == 0 else None
        except KeyError:
            raise ToolFatal(f"unknown mail_owner: {cfg.get('mail_owner')}") from None
        states = set(self._states("r"))
        done = []
        dropped = False
        for qid in qids:
            # qmgr may move the message between active and the other queues while we
            # look: each step checks the state in its own transaction, so a few tries
            # settle it (the state it is in when a step succeeds decides).
            for _attempt in range(3):
                info = self.store.get(qid, recipients=False)
                if info is None or info.state not in states:
                    break
                if info.state == ix.ACTIVE:
                    if request(self.store, qid) == "active":
                        done.append(qid)
                        self.tool.log(f"{qid}: requeue when delivery ends (queue active)")
                        break
                    continue  # it left active meanwhile
                try:
                    if requeue(self.store, qid, directory, ids, states - {ix.ACTIVE}):
                        done.append(qid)
                        dropped = True
                        break
                except (CorruptMessage, CorruptQueueFile, QueueError) as exc:
                    self.tool.warn(f"{qid}: cannot requeue: {exc}")
                    break
                except OSError as exc:
                    raise ToolFatal(f"{directory}: {exc.strerror}") from None
                now = self.store.get(qid, recipients=False)
                if now is None or now.state != ix.ACTIVE:
                    break  # nothing left to deliver, or gone: left as it is
        self.counts["r"] += len(done)
        if dropped:
            wake_pickup(queue, cfg.get("pickup_service_name"))
        if not quiet:
            for qid in done:
                self.tool.info(f"{qid}: requeued")

    def _apply(self, op: str, qids: list[str], quiet: bool = False) -> None:
        from fastpost.mail.queue import index as ix

        if op == "r":
            self._requeue(qids, quiet)
            return

        done: list[tuple[str, str]] = []
        states = set(self._states(op))
        with self.store.edit() as ed:
            for qid in qids:
                info = ed.get(qid, recipients=False)
                if info is None or info.state not in states:
                    continue
                if op == "d":
                    ed.delete(qid)
                    done.append((qid, "removed"))
                    self.counts["d"] += 1
                elif op in ("e", "f"):
                    if not info.flags & ix.FLAG_FORCE_EXPIRE:
                        ed.set_flags(qid, add=ix.FLAG_FORCE_EXPIRE)
                        done.append((qid, "expired"))
                        self.counts["e"] += 1
                    if op == "f" and info.state == ix.HOLD:
                        ed.set_state(qid, ix.DEFERRED, next_retry=self.now)
                        done.append((qid, "released from hold"))
                        self.counts["H"] += 1
                elif op == "h":
                    if info.state != ix.HOLD:
                        ed.set_state(qid, ix.HOLD)
                        done.append((qid, "placed on hold"))
                        self.counts["h"] += 1
                elif op == "H":
                    if info.state == ix.HOLD:
                        ed.set_state(qid, ix.DEFERRED, next_retry=self.now)
                        done.append((qid, "released from hold"))
                        self.counts["H"] += 1
        if not quiet:
            for qid, what in done:
                self.tool.info(f"{qid}: {what}")

    def summary(self, ops: set[str]) -> None:
        reported = set()
        for op in OP_ORDER:
            if op not in ops:
                continue
            keys = {"d": ["d"], "e": ["e"], "f": ["e", "H"], "h": ["h"], "H": ["H"], "r": ["r"]}[op]
            for key in keys:
                if key not in reported:
                    reported.add(key)
                    self.tool.info(f"{SUMMARY[key]}: {plural(self.counts[key])}")


def structure_check(tool: Tool, store, verify: bool = False) -> None:
    """-s: reclaim, compact; -S: also verify every stored frame."""
    from fastpost.mail.queue import CorruptMessage

    rec = store.recovery
    reclaimed = store.reclaim()
    report = store.compact()
    damaged = 0
    if verify:
        for qid in _iter_ids(store):  # lazily: a damaged one moves to corrupt, not walked
            try:
                for _chunk in store.stream(qid):
                    pass
            except CorruptMessage:
                damaged += 1
    if rec is not None and rec.messages_indexed:
        tool.info(f"Recovered from segments: {plural(rec.messages_indexed)}")
    if rec is not None and rec.torn_bytes:
        tool.info(f"Discarded unfinished batches: {rec.torn_bytes} bytes")
    if reclaimed:
        tool.info(f"Removed empty segments: {reclaimed}")
    if report.messages:
        tool.info(f"Copied forward: {plural(report.messages)} from {report.segments} segments")
    if damaged:
        tool.info(f"Moved to corrupt: {plural(damaged)}")


def _iter_ids(store):
    from fastpost.mail.queue import index as ix

    for info in store.messages([ix.ACTIVE, ix.INCOMING, ix.DEFERRED, ix.HOLD], recipients=False):
        yield info.queue_id


def main(argv: list[str]) -> int:
    tool = Tool("postsuper", log_to_maillog=True)
    try:
        pairs, args = getopt.getopt(argv, "c:d:e:f:h:H:pr:sSv", LONG_OPTIONS)
    except getopt.GetoptError as exc:
        print(f"postsuper: {exc}", file=sys.stderr)
        return tool.fatal(USAGE)
    config_dir = None
    ops: dict[str, list[str]] = {}
    structure = verify = False
    import_dir = None
    selector = Selector()
    try:
        for opt, val in pairs:
            if opt == "-c":
                config_dir = val
            elif opt in ("-d", "-e", "-f", "-h", "-H", "-r"):
                ops.setdefault(opt[1], []).append(val)
            elif opt == "-p":
                pass  # opening the store removes temporary files left by crashes
            elif opt in ("-s", "-S"):
                structure = True
                verify = verify or opt == "-S"
            elif opt == "--sender":
                selector.sender = "" if val in ("<>", "") else val.lower()
            elif opt == "--recipient":
                selector.recipient = val.lower()
            elif opt == "--domain":
                selector.domain = val.lower().lstrip("@")
            elif opt == "--reason":
                selector.reason = val.lower()
            elif opt == "--older-than":
                selector.older = _age(val)
            elif opt == "--newer-than":
                selector.newer = _age(val)
            elif opt == "--import":
                import_dir = val
        for name in args:
            if name not in QUEUE_NAMES:
                raise ToolFatal(f"invalid directory name: {name}")
        if selector.active and not ops:
            raise ToolFatal("selectors need an operation (-d, -e, -f, -h or -H)")
        for op, ids in ops.items():
            if "-" in ids:
                ids.remove("-")
                ids.extend(tok for line in sys.stdin for tok in line.split())
        if not ops and not import_dir:
            structure = True
        cfg = tool.config(config_dir)
        store = tool.open_store(cfg)  # opening recovers: purges temporary files (-p)
        try:
            if import_dir:
                _import(tool, store, import_dir)
            if structure:
                structure_check(tool, store, verify)
            run = Super(tool, store, list(args) or None, selector)
            for op in OP_ORDER:
                if op in ops:
                    run.run(op, ops[op])
            run.summary(set(ops))
        finally:
            store.close()
    except ToolFatal as exc:
        return tool.fatal(str(exc))
    return 0


def _import(tool: Tool, store, src: str) -> None:
    import os

    from fastpost.mail.queue.importer import import_postfix_queue

    if not os.path.isdir(src):
        raise ToolFatal(f"import {src}: not a directory")

    def said(old, new, where):
        tool.info(f"{new}: imported from {where}" + (f" (was {old})" if old != new else ""))

    report = import_postfix_queue(store, src, on_message=said)
    tool.info(f"Imported: {plural(report.imported)}")
    if report.skipped:
        tool.info(f"Skipped: {len(report.skipped)} files")
