"""Queue listings: the mailq format (postqueue -p) and JSON lines (postqueue -j).

Postfix counterpart: src/showq/showq.c (what is listed) and src/postqueue/showq_compat.c,
showq_json.c (how it is printed).

Both read only the index (never a message body), one message at a time, so a queue of
any size is listed in bounded memory. What is listed, as Postfix's showq does:

  * the queues active, incoming, deferred and hold, in that order (not corrupt);
  * per message: queue ID with ``*`` (active) or ``!`` (hold), then ``#`` when it is
    forced to expire; the content size; the arrival time; the sender (``MAILER-DAEMON``
    for the null sender, in both formats);
  * for a message with a defer log (in any queue), the entries of the log in log
    order (recipient and reason, also for a recipient the message no longer has), then
    every recipient not yet delivered that the log does not name, with ``(reason
    unavailable)``; without a defer log, the recipients not yet delivered;
  * in the mailq format, consecutive recipients with the same reason share one reason
    line, right-aligned to column 78; long IDs (enable_long_queue_ids) use the wider
    layout; the trailer counts Kbytes (total size / 1024, rounded down) and requests.

Text from the queue is made printable first: control characters become ``?``.

Parameters: enable_long_queue_ids (the layout).
Diagnostics: none beyond I/O errors on the output stream.
"""

from __future__ import annotations

import json
import time

from fastpost.mail.queue import index as ix
from fastpost.util.log import printable

#: The queues showq lists, in its order.
SHOWQ_STATES = (ix.ACTIVE, ix.INCOMING, ix.DEFERRED, ix.HOLD)
REASON_UNAVAILABLE = "reason unavailable"

SHORT_HEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
LONG_HEADER = "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"


def _defer_entries(blocks) -> list[tuple[str, str]]:
    """Return (recipient, reason) for each defer log entry that names both."""
    out = []
    for block in blocks:
        rcpt = reason = None
        for line in block.split(b"\n"):
            if line.startswith(b"recipient="):
                rcpt = line[10:].decode("utf-8", "surrogateescape")
            elif line.startswith(b"reason="):
                reason = line[7:].decode("utf-8", "surrogateescape")
        if rcpt is not None:
            out.append((rcpt, reason))
    return out


def recipients_of(info: ix.MessageInfo, defer_log) -> list[tuple[str, str | None]]:
    """Return (address, reason or None) in the order showq reports them.

    When the message has a defer log, None means "reason unavailable" (mailq prints
    that; JSON omits delay_reason); without a log there are no reasons at all.
    """
    live = [r.address for r in info.recipients if r.status != ix.RCPT_DONE]
    if not defer_log:
        return [(a, None) for a in live]
    logged = _defer_entries(defer_log)
    named = {a for a, _ in logged}
    return logged + [(a, None) for a in live if a not in named]


def marks(info: ix.MessageInfo) -> str:
    out = "*" if info.state == ix.ACTIVE else "!" if info.state == ix.HOLD else ""
    return out + ("#" if info.flags & ix.FLAG_FORCE_EXPIRE else "")


def arrival_text(seconds: float) -> str:
    return time.strftime("%a %b %e %H:%M:%S", time.localtime(int(seconds)))


class Entry:
    """One listed message: what both output formats need, and what the showq service
    sends (``to_attrs``/``from_attrs``), so a listing read through the service is
    printed by the same code as one read from the index."""

    __slots__ = ("queue_name", "queue_id", "arrival", "size", "forced_expire", "sender",
                 "recipients", "logged")

    def __init__(self, queue_name: str, queue_id: str, arrival: int, size: int,
                 forced_expire: bool, sender: str, recipients: list, logged: bool):
        self.queue_name = queue_name
        self.queue_id = queue_id
        self.arrival = arrival
        self.size = size
        self.forced_expire = forced_expire
        self.sender = sender
        self.recipients = recipients  # [(address, reason or None)]
        self.logged = logged          # the message has a defer log

    @classmethod
    def of(cls, info: ix.MessageInfo, defer_log) -> "Entry":
        return cls(info.state_name, info.queue_id, int(info.arrival), info.size,
                   bool(info.flags & ix.FLAG_FORCE_EXPIRE), info.sender,
                   recipients_of(info, defer_log), bool(defer_log))

    @property
    def marks(self) -> str:
        out = "*" if self.queue_name == "active" else "!" if self.queue_name == "hold" else ""
        return out + ("#" if self.forced_expire else "")

    def to_attrs(self) -> dict:
        rcpts = []
        for address, reason in self.recipients:
            rcpts.append({"address": address} if reason is None else
                         {"address": address, "reason": reason})
        return {"queue_name": self.queue_name, "queue_id": self.queue_id,
                "arrival_time": self.arrival, "message_size": self.size,
                "forced_expire": int(self.forced_expire), "sender": self.sender,
                "logged": int(self.logged), "recipients": rcpts}

    @classmethod
    def from_attrs(cls, a: dict) -> "Entry":
        """Rebuild an entry from the service's attributes; ValueError when malformed."""
        try:
            rcpts = [(str(r["address"]), None if r.get("reason") is None else str(r["reason"]))
                     for r in a["recipients"]]
            return cls(str(a["queue_name"]), str(a["queue_id"]), int(a["arrival_time"]),
                       int(a["message_size"]), bool(a["forced_expire"]), str(a["sender"]),
                       rcpts, bool(a["logged"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed queue listing entry: {exc!r}") from None


def entries(store):
    """Yield an Entry for every listed message, in showq's order (index only)."""
    for info in store.messages(SHOWQ_STATES):
        yield Entry.of(info, store.logs(info.queue_id, "defer"))


def write_mailq(store, out, long_ids: bool = False) -> int:
    """Write the mailq listing of a store to ``out`` (a text stream); return the count."""
    return render_mailq(entries(store), out, long_ids)


def render_mailq(listed, out, long_ids: bool = False) -> int:
    """Write the mailq listing of Entry objects to ``out``; return the message count."""
    count = 0
    total = 0
    indent = " " * (47 if long_ids else 41)
    for e in listed:
        if count == 0:
            out.write((LONG_HEADER if long_ids else SHORT_HEADER) + "\n")
        count += 1
        total += e.size
        sender = printable(e.sender) if e.sender else "MAILER-DAEMON"
        qid = e.queue_id + e.marks
        if long_ids:
            out.write(f"{qid:<17} {e.size:>8} {arrival_text(e.arrival)} {sender}\n")
        else:
            out.write(f"{qid:<11}{e.size:>8} {arrival_text(e.arrival):<20} {sender}\n")
        last_reason = None
        for address, reason in e.recipients:
            if e.logged and reason is None:
                reason = REASON_UNAVAILABLE  # JSON leaves delay_reason out instead
            if reason is not None and reason != last_reason:
                out.write(f"{'(' + printable(reason) + ')':>78}\n")
            last_reason = reason
            out.write(f"{indent}{printable(address)}\n")
        out.write("\n")
    if count == 0:
        out.write("Mail queue is empty\n")
    else:
        out.write(f"-- {total // 1024} Kbytes in {count} Request{'' if count == 1 else 's'}.\n")
    return count


def json_object(e: Entry) -> str:
    """Return one postqueue -j line (without the newline)."""
    recipients = []
    for address, reason in e.recipients:
        item = {"address": printable(address)}
        if reason is not None:
            item["delay_reason"] = printable(reason)
        recipients.append(item)
    obj = {
        "queue_name": e.queue_name,
        "queue_id": e.queue_id,
        "arrival_time": int(e.arrival),
        "message_size": e.size,
        "forced_expire": e.forced_expire,
        "sender": printable(e.sender) if e.sender else "MAILER-DAEMON",
        "recipients": recipients,
    }
    return json.dumps(obj, ensure_ascii=False)


def write_json(store, out) -> int:
    """Write one JSON object per message of a store, one per line; return the count."""
    return render_json(entries(store), out)


def render_json(listed, out) -> int:
    """Write one JSON object per Entry, one per line; return the count."""
    count = 0
    for e in listed:
        out.write(json_object(e) + "\n")
        count += 1
    return count
