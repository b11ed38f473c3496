"""Per-recipient status log entries: the bounce, defer and trace logs.

Postfix counterpart: src/global/bounce_log.c, src/bounce/bounce_append_service.c (the
``name=value`` lines of $queue_directory/{bounce,defer,trace}/ID files).

fastpost keeps these logs in the queue index (QueueStore ``append_log``), one block per
recipient and attempt, in Postfix's attribute names so that imported Postfix logs and
fastpost's read the same:

    recipient=bob@example.net          the address delivered to (internal form)
    orig_rcpt=Bob@example.net          the original recipient, when there was one
    offset=672                         the R record offset (the recipient's identity)
    dsn_orig_rcpt=rfc822;Bob@...       ORCPT, when given
    notify_flags=6                     NOTIFY bits (fastpost.mail.deliver.NOTIFY_*)
    status=4.4.1                       the RFC 3463 code
    action=delayed                     failed, delayed, delivered, relayed, expanded
    reason=connect to ...: refused     what happened (what mailq shows)
    relay=mx.example.net[192.0.2.1]:25 where it happened, when known (Remote-MTA)
    time=1700000000                    when (the notice's Last-Attempt-Date)

Diagnostics: parse() skips lines without ``=`` (Postfix's legacy ``<rcpt>: text``
lines) and returns what it understood.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

ACTION_FAILED = "failed"
ACTION_DELAYED = "delayed"
ACTION_DELIVERED = "delivered"
ACTION_RELAYED = "relayed"


def _clean(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


@dataclass(slots=True)
class LogEntry:
    """One recipient's status, as logged."""

    recipient: str
    offset: int
    status: str  # 5.1.1
    action: str  # failed / delayed / delivered / relayed
    reason: str
    orig_rcpt: str = ""
    dsn_orig_rcpt: str = ""
    notify_flags: int = 0
    relay: str = ""
    when: float = 0.0

    def encode(self) -> bytes:
        lines = [f"recipient={_clean(self.recipient)}"]
        if self.orig_rcpt:
            lines.append(f"orig_rcpt={_clean(self.orig_rcpt)}")
        lines.append(f"offset={self.offset}")
        if self.dsn_orig_rcpt:
            lines.append(f"dsn_orig_rcpt={_clean(self.dsn_orig_rcpt)}")
        lines.append(f"notify_flags={self.notify_flags}")
        lines.append(f"status={self.status}")
        lines.append(f"action={self.action}")
        lines.append(f"reason={_clean(self.reason)}")
        if self.relay and self.relay != "none":
            lines.append(f"relay={_clean(self.relay)}")
        lines.append(f"time={int(self.when or time.time())}")
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")

    @classmethod
    def parse(cls, block: bytes) -> "LogEntry":
        fields: dict[str, str] = {}
        for line in block.decode("utf-8", "surrogateescape").splitlines():
            name, eq, value = line.partition("=")
            if eq and name and name not in fields:
                fields[name] = value

        def num(name: str) -> int:
            try:
                return int(fields.get(name, "0"))
            except ValueError:
                return 0

        return cls(fields.get("recipient", ""), num("offset"), fields.get("status", ""),
                   fields.get("action", ""), fields.get("reason", ""), fields.get("orig_rcpt", ""),
                   fields.get("dsn_orig_rcpt", ""), num("notify_flags"), fields.get("relay", ""),
                   float(num("time")))


def parse_log(blocks) -> list[LogEntry]:
    """Entries of a log, in order; the last entry per recipient offset wins."""
    out: dict = {}
    for block in blocks:
        e = LogEntry.parse(block)
        out[(e.offset, e.recipient)] = e
    return list(out.values())


__all__ = ["ACTION_DELAYED", "ACTION_DELIVERED", "ACTION_FAILED", "ACTION_RELAYED", "LogEntry",
           "parse_log"]
