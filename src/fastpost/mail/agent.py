"""What the final delivery agents share: reading the message, status lines, passing on.

Postfix counterpart: src/global/deliver_request.c (the message side), deliver_pass.c,
sent.c / bounce.c / defer.c (the log line part), mail_date.c, dsn_util.c

local, virtual, pipe, error and discard answer qmgr's delivery requests
(fastpost.mail.deliver). This module gives them:

* ``MessageSource(store).load(queue_id)`` -> Message: the envelope (parsed records),
  the content text with ``\\n`` line ends, the Delivered-To: set (lazily);
* ``Outcome``: one delivery event (a final address, its status, dsn and text), and
  ``log_outcome()``, the Postfix status line for it (``to=<...>, orig_to=<...>,
  relay=local, delay=..., delays=..., dsn=..., status=sent (delivered to mailbox)``);
  an alias can fan one queue recipient out into many such lines;
* ``summarize()``: the one RecipientResult qmgr gets for a queue recipient whose
  delivery produced several outcomes (any deferral defers it, as in Postfix, where
  a recipient is done only when every part of it is done; else the first bounce;
  else success);
* ``split_dsn()``: an optional RFC 3463 code in front of a text (error/retry/discard
  next-hop text, pipe output);
* ``DeliveryPass``: hand a recipient to another agent (mailbox_transport,
  fallback_transport), over the same delivery protocol qmgr uses;
* ``mail_date()``: the RFC 5322 date Postfix writes (``Sat, 21 Nov 2026 08:18:32
  +0000 (UTC)``).

Diagnostics: MessageSource.load raises QueueError / CorruptMessage from the store
(the caller defers: 4.3.0); DeliveryPass never raises: an unreachable agent is a 4.3.0
"mail transport unavailable" outcome.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from fastpost.mail import ipc
from fastpost.mail.deliver import (
    BOUNCED, DEFERRED, PROTOCOL, SENT, DeliveryRequest, DeliveryResult, Recipient,
    RecipientResult, format_status_line,
)
from fastpost.mail.mailcopy import delivered_to
from fastpost.mail.queue.message import content_text, parse
from fastpost.util import log

_DSN = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def split_dsn(text: str, default: str) -> tuple[str, str]:
    """Return (dsn, rest) for ``"5.1.1 text"``; (default, text) when there is no code."""
    m = _DSN.match(text)
    if not m:
        return default, text
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end():]


def mail_date(when: float | None = None) -> str:
    """Return the date as Postfix writes it in headers it adds."""
    lt = time.localtime(time.time() if when is None else when)
    offset = lt.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    offset = abs(offset) // 60
    zone = f"{sign}{offset // 60:02d}{offset % 60:02d}"
    return time.strftime("%a, %e %b %Y %H:%M:%S ", lt) + f"{zone} ({lt.tm_zone})"


# -- the message ---------------------------------------------------------------------------

@dataclass
class Message:
    """One queued message as an agent needs it."""

    queue_id: str
    parsed: object  # fastpost.mail.queue.message.ParsedMessage
    text: bytes  # headers and body, "\n" line ends
    _delivered: set | None = None

    @property
    def attrs(self) -> dict:
        return self.parsed.attrs

    @property
    def delivered(self) -> set:
        """Lower-cased Delivered-To: addresses of the header (loop detection)."""
        if self._delivered is None:
            self._delivered = delivered_to(self.text)
        return self._delivered


class MessageSource:
    """Reads messages from the queue store (event-loop thread only)."""

    def __init__(self, store):
        self.store = store

    def load(self, queue_id: str) -> Message:
        data = self.store.read(queue_id)
        parsed = parse(data)
        return Message(queue_id, parsed, content_text(data, parsed))


# -- outcomes and status lines ---------------------------------------------------------------

@dataclass
class Outcome:
    """One delivery event for a queue recipient."""

    address: str  # the final address (to=<...>)
    orig: str  # the recipient as the queue has it (orig_to=<...> when different)
    status: str  # SENT, DEFERRED, BOUNCED
    dsn: str
    text: str
    relay: str = "local"
    logged: bool = True  # False: another agent logged it (a recipient passed on to it)
    extra: dict = field(default_factory=dict)

    @property
    def deferred(self) -> bool:
        return self.status == DEFERRED


def status_of(dsn: str) -> str:
    """SENT for 2.x.x, DEFERRED for 4.x.x, BOUNCED otherwise."""
    return SENT if dsn.startswith("2") else DEFERRED if dsn.startswith("4") else BOUNCED


def log_outcome(request: DeliveryRequest, offset: int, outcome: Outcome, *,
                started: float, resolution: int = 2) -> None:
    """Log Postfix's status line for one outcome."""
    rcpt = Recipient(offset, outcome.address, outcome.orig)
    res = RecipientResult(offset, outcome.status, outcome.dsn, outcome.text, outcome.relay)
    line = format_status_line(
        request.queue_id, rcpt, res, arrival_time=request.arrival_time,
        active_time=request.active_time,
        request_time=request.request_time or request.active_time,
        conn_time=started, resolution=resolution)
    log.info("%s", log.printable(line))


def summarize(offset: int, outcomes: list[Outcome], relay: str) -> RecipientResult:
    """The RecipientResult of a queue recipient from its outcomes (see the module doc)."""
    for wanted in (DEFERRED, BOUNCED, SENT):
        for o in outcomes:
            if o.status == wanted:
                return RecipientResult(offset, o.status, o.dsn, o.text, o.relay)
    return RecipientResult(offset, SENT, "2.0.0", "delivered", relay)


# -- handing a recipient to another agent ----------------------------------------------------

class DeliveryPass:
    """Send one recipient to another delivery agent (Postfix's deliver_pass)."""

    def __init__(self, queue_directory: str, *, timeout: float = 3600.0):
        self.queue_directory = queue_directory
        self.timeout = timeout
        self._clients: dict[str, ipc.AsyncAttrClient] = {}

    def _client(self, transport: str) -> ipc.AsyncAttrClient:
        client = self._clients.get(transport)
        if client is None:
            path = ipc.endpoint(self.queue_directory, transport, ipc.PRIVATE)
            client = ipc.AsyncAttrClient(path, PROTOCOL, timeout=self.timeout)
            self._clients[transport] = client
        return client

    async def send(self, spec: str, request: DeliveryRequest, rcpt: Recipient) -> Outcome:
        """Deliver ``rcpt`` through ``transport[:nexthop]``; never raises."""
        transport, _, nexthop = spec.partition(":")
        sub = DeliveryRequest(
            queue_id=request.queue_id, transport=transport, nexthop=nexthop or request.nexthop,
            sender=request.sender, recipients=[rcpt], arrival_time=request.arrival_time,
            active_time=request.active_time, size=request.size, encoding=request.encoding,
            smtputf8=request.smtputf8, dsn_envid=request.dsn_envid, dsn_ret=request.dsn_ret,
            client=dict(request.client), flags=request.flags, request_time=time.time())
        try:
            reply = await self._client(transport).request(sub.to_attrs())
            if "error" in reply:
                raise ValueError(str(reply["error"]))
            for res in DeliveryResult.from_attrs(reply).results:
                if res.offset == rcpt.offset:
                    return Outcome(rcpt.address, rcpt.orig, res.status, res.dsn, res.text,
                                   relay=res.relay, logged=False)
            raise ValueError("no result for the recipient")
        except (ipc.IPCError, ValueError) as exc:
            log.warn("%s: delivery via %s failed: %s", request.queue_id, transport, exc)
            return Outcome(rcpt.address, rcpt.orig, DEFERRED, "4.3.0", "mail transport unavailable",
                           relay="none", logged=True)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
