"""Queue listings: the mailq format (postqueue -p) and JSON lines (postqueue -j).

Postfix counterpart: src/showq/showq.c (what is listed) and src/postqueue/showq_compat.c,
showq_json.c (how it is printed).

Both read only the index (never a message body), one message at a time and a message's
recipients a batch at a time, so a queue of any size, and a message with any number of
recipients, is listed in bounded memory. What is listed, as Postfix's showq does:

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

import hashlib
import json
import time

from fastpost.mail.queue import index as ix
from fastpost.util.log import printable

#: The queues showq lists, in its order.
SHOWQ_STATES = (ix.ACTIVE, ix.INCOMING, ix.DEFERRED, ix.HOLD)
REASON_UNAVAILABLE = "reason unavailable"

class ListingError(ValueError):
    """A malformed listing received from the showq service."""


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


def _digest(address: str) -> int:
    """A 64-bit digest of an address: what the listing remembers of a defer log entry."""
    data = address.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def stream_recipients(store, queue_id: str, logged: bool):
    """Yield (address, reason or None) in the order showq reports them, in bounded memory.

    With a defer log: its entries in log order (None for a missing reason), then every
    recipient not yet delivered that the log does not name (None: "reason unavailable"
    in mailq, no delay_reason in JSON). Without one: the recipients not yet delivered,
    without reasons. Recipients and log blocks are read a batch at a time
    (store.iter_recipients, store.iter_logs); all that is kept is one 64-bit digest per
    defer log entry, to leave out the recipients the log already named (a collision,
    odds about n²/2⁶⁵, would leave one undelivered recipient unlisted).
    """
    if not logged:
        for r in store.iter_recipients(queue_id, live_only=True):
            yield r.address, None
        return
    named = set()
    for block in store.iter_logs(queue_id, "defer"):
        for address, reason in _defer_entries((block,)):
            named.add(_digest(address))
            yield address, reason
    for r in store.iter_recipients(queue_id, live_only=True):
        if _digest(r.address) not in named:
            yield r.address, None


def marks(info: ix.MessageInfo) -> str:
    out = "*" if info.state == ix.ACTIVE else "!" if info.state == ix.HOLD else ""
    return out + ("#" if info.flags & ix.FLAG_FORCE_EXPIRE else "")


def arrival_text(seconds: float) -> str:
    return time.strftime("%a %b %e %H:%M:%S", time.localtime(int(seconds)))


#: Recipients per attribute list the showq service sends (Entry.to_parts).
PART_RECIPIENTS = 1000


class Entry:
    """One listed message: what both output formats need, and what the showq service
    sends (``to_parts``/``from_parts``), so a listing read through the service is
    printed by the same code as one read from the index."""

    __slots__ = ("queue_name", "queue_id", "arrival", "size", "forced_expire", "sender",
                 "recipients", "logged")

    def __init__(self, queue_name: str, queue_id: str, arrival: int, size: int,
                 forced_expire: bool, sender: str, recipients, logged: bool):
        self.queue_name = queue_name
        self.queue_id = queue_id
        self.arrival = arrival
        self.size = size
        self.forced_expire = forced_expire
        self.sender = sender
        #: (address, reason or None) pairs: a list, or a generator reading them as they
        #: are printed (iterate it once, before asking for the next entry)
        self.recipients = recipients
        self.logged = logged          # the message has a defer log

    @property
    def marks(self) -> str:
        out = "*" if self.queue_name == "active" else "!" if self.queue_name == "hold" else ""
        return out + ("#" if self.forced_expire else "")

    def to_parts(self, size: int = PART_RECIPIENTS):
        """Yield the entry as the showq service sends it: attribute lists of at most
        ``size`` recipients. The first holds the message's fields; ``more_recipients:
        1`` says that continuation parts (``continued: 1``, the queue ID, more
        recipients) follow, so a message with any number of recipients crosses the wire
        in bounded pieces."""
        it = iter(self.recipients)
        attrs = {"queue_name": self.queue_name, "queue_id": self.queue_id,
                 "arrival_time": self.arrival, "message_size": self.size,
                 "forced_expire": int(self.forced_expire), "sender": self.sender,
                 "logged": int(self.logged), "recipients": _rcpt_attrs(it, size)}
        while True:
            following = _rcpt_attrs(it, size)
            attrs["more_recipients"] = int(bool(following))
            yield attrs
            if not following:
                return
            attrs = {"queue_id": self.queue_id, "continued": 1, "recipients": following}

    @classmethod
    def from_attrs(cls, a: dict) -> "Entry":
        """Rebuild an entry from its first part; ListingError when malformed."""
        try:
            if a.get("continued"):
                raise ValueError("continuation part without its message")
            return cls(str(a["queue_name"]), str(a["queue_id"]), int(a["arrival_time"]),
                       int(a["message_size"]), bool(a["forced_expire"]), str(a["sender"]),
                       _rcpts_from_attrs(a), bool(a["logged"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ListingError(f"malformed queue listing entry: {exc!r}") from None


def _rcpt_attrs(it, size: int) -> list:
    out = []
    for address, reason in it:
        out.append({"address": address} if reason is None else {"address": address, "reason": reason})
        if len(out) >= size:
            break
    return out


def _rcpts_from_attrs(a: dict) -> list:
    return [(str(r["address"]), None if r.get("reason") is None else str(r["reason"]))
            for r in a["recipients"]]


def _continued(first: list, parts, queue_id: str):
    yield from first
    while True:
        a = next(parts, None)
        if a is None:
            raise ListingError(f"queue listing ends inside the recipients of {queue_id}")
        if not isinstance(a, dict) or not a.get("continued") or a.get("queue_id") != queue_id:
            raise ListingError(f"queue listing: expected more recipients of {queue_id}")
        try:
            rcpts = _rcpts_from_attrs(a)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ListingError(f"malformed queue listing entry: {exc!r}") from None
        yield from rcpts
        if not a.get("more_recipients"):
            return


def from_parts(parts):
    """Yield Entry objects from the showq service's attribute lists (Entry.to_parts) in
    bounded memory: an entry whose recipients continue in further parts gets a
    generator that reads them as they are printed. ListingError when malformed."""
    parts = iter(parts)
    for a in parts:
        e = Entry.from_attrs(a)
        if a.get("more_recipients"):
            e.recipients = _continued(e.recipients, parts, e.queue_id)
            yield e
            for _ in e.recipients:  # the consumer did not read them all: skip the rest
                pass
        else:
            yield e


def entries(store):
    """Yield an Entry for every listed message, in showq's order (index only); each
    entry's recipients are a generator streaming them (stream_recipients)."""
    for info in store.messages(SHOWQ_STATES, recipients=False):
        logged = store.has_log(info.queue_id, "defer")
        yield Entry(info.state_name, info.queue_id, int(info.arrival), info.size,
                    bool(info.flags & ix.FLAG_FORCE_EXPIRE), info.sender,
                    stream_recipients(store, info.queue_id, logged), logged)


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


def _json_head(e: Entry) -> str:
    """The JSON object of an entry without its recipients and closing brace."""
    obj = {
        "queue_name": e.queue_name,
        "queue_id": e.queue_id,
        "arrival_time": int(e.arrival),
        "message_size": e.size,
        "forced_expire": e.forced_expire,
        "sender": printable(e.sender) if e.sender else "MAILER-DAEMON",
    }
    return json.dumps(obj, ensure_ascii=False)[:-1]


def _json_item(address: str, reason) -> dict:
    item = {"address": printable(address)}
    if reason is not None:
        item["delay_reason"] = printable(reason)
    return item


def write_json_object(e: Entry, out, batch: int = 512) -> None:
    """Write one postqueue -j line, ``batch`` recipients at a time: the same text as
    json.dumps of the whole object (keys in postqueue's order, recipients last)."""
    out.write(_json_head(e) + ', "recipients": [')
    sep = ""
    items = []
    for address, reason in e.recipients:
        items.append(_json_item(address, reason))
        if len(items) >= batch:
            out.write(sep + json.dumps(items, ensure_ascii=False)[1:-1])
            sep = ", "
            items = []
    if items:
        out.write(sep + json.dumps(items, ensure_ascii=False)[1:-1])
    out.write("]}\n")


def json_object(e: Entry) -> str:
    """Return one postqueue -j line (without the newline)."""
    items = json.dumps([_json_item(a, r) for a, r in e.recipients], ensure_ascii=False)
    return f'{_json_head(e)}, "recipients": {items}}}'


def write_json(store, out) -> int:
    """Write one JSON object per message of a store, one per line; return the count."""
    return render_json(entries(store), out)


def render_json(listed, out) -> int:
    """Write one JSON object per Entry, one per line; return the count."""
    count = 0
    for e in listed:
        write_json_object(e, out)
        count += 1
    return count
