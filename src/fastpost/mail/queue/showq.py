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


def _listed(store):
    """Yield (info, recipients) for every listed message."""
    for info in store.messages(SHOWQ_STATES):
        defer_log = store.logs(info.queue_id, "defer")
        yield info, recipients_of(info, defer_log), bool(defer_log)


def write_mailq(store, out, long_ids: bool = False) -> int:
    """Write the mailq listing to ``out`` (a text stream); return the message count."""
    count = 0
    total = 0
    indent = " " * (47 if long_ids else 41)
    for info, rcpts, logged in _listed(store):
        if count == 0:
            out.write((LONG_HEADER if long_ids else SHORT_HEADER) + "\n")
        count += 1
        total += info.size
        sender = printable(info.sender) if info.sender else "MAILER-DAEMON"
        qid = info.queue_id + marks(info)
        if long_ids:
            out.write(f"{qid:<17} {info.size:>8} {arrival_text(info.arrival)} {sender}\n")
        else:
            out.write(f"{qid:<11}{info.size:>8} {arrival_text(info.arrival):<20} {sender}\n")
        last_reason = None
        for address, reason in rcpts:
            if logged and reason is None:
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


def json_object(info: ix.MessageInfo, rcpts) -> str:
    """Return one postqueue -j line (without the newline)."""
    recipients = []
    for address, reason in rcpts:
        item = {"address": printable(address)}
        if reason is not None:
            item["delay_reason"] = printable(reason)
        recipients.append(item)
    obj = {
        "queue_name": info.state_name,
        "queue_id": info.queue_id,
        "arrival_time": int(info.arrival),
        "message_size": info.size,
        "forced_expire": bool(info.flags & ix.FLAG_FORCE_EXPIRE),
        "sender": printable(info.sender) if info.sender else "MAILER-DAEMON",
        "recipients": recipients,
    }
    return json.dumps(obj, ensure_ascii=False)


def write_json(store, out) -> int:
    """Write one JSON object per message, one per line; return the count."""
    count = 0
    for info, rcpts, _logged in _listed(store):
        out.write(json_object(info, rcpts) + "\n")
        count += 1
    return count
