"""The delivery-agent protocol between qmgr and the delivery agents, and the status log line.

Postfix counterparts: src/global/deliver_request.c, deliver_completed.c, log_adhoc.c,
src/util/format_tv.c

qmgr connects to ``private/<transport>`` (an agent pool in master.cf: smtp, relay, lmtp,
local, virtual, pipe-based services, error, retry, discard), the agent greets with
``protocol=delivery_request_protocol``, and each request asks the agent to deliver one
message to one or more recipients that share a transport and next hop. The reply carries
one result per recipient. Wire format: attribute frames (fastpost.mail.attr); the dict
layout is DeliveryRequest.to_attrs() / DeliveryResult.to_attrs(), documented in
docs/delivery.md.

The agent reads the message itself from the queue store (``QueueStore.read(queue_id)``),
logs Postfix's per-recipient status line (format_status_line), and returns the results;
qmgr records them in the queue index (done / deferred with the reason / bounced) and asks
the bounce service for notices. With ``soft_bounce = yes`` a bounce is logged as Postfix
3.7's agents log it, ``dsn=4.x.x, status=SOFTBOUNCE (reason)``, and returned to qmgr as
a deferral (``set_soft_bounce``, ``soften``; delivery_service does both). A message delivered but not yet recorded when qmgr dies is
delivered again after recovery (at-least-once, as Postfix).

Diagnostics: ValueError from from_attrs() for a malformed request or reply (the caller
treats it as a protocol error: the agent answers with a temporary failure for every
recipient, qmgr defers the recipients).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

PROTOCOL = "delivery_request_protocol"

# DSN NOTIFY bits (RFC 3461), as Postfix's dsn_mask.h.
NOTIFY_NEVER = 1
NOTIFY_SUCCESS = 2
NOTIFY_FAILURE = 4
NOTIFY_DELAY = 8

# DSN RET values.
RET_FULL = 1
RET_HDRS = 2

# Per-recipient outcomes.
SENT = "sent"
DEFERRED = "deferred"
BOUNCED = "bounced"
STATUSES = (SENT, DEFERRED, BOUNCED)


@dataclass(slots=True)
class Recipient:
    """One recipient of a delivery request."""

    offset: int  # identifies the recipient in the queue index (record offset)
    address: str  # internal form, after rewriting and alias/virtual expansion
    orig: str = ""  # the address as the client gave it (orig_to= when different)
    dsn_notify: int = 0  # NOTIFY bits; 0 = not given
    dsn_orcpt: str = ""  # ORCPT as given ("rfc822;user@example.com")

    def to_attrs(self) -> dict:
        return {"offset": self.offset, "address": self.address, "orig": self.orig,
                "notify": self.dsn_notify, "orcpt": self.dsn_orcpt}

    @classmethod
    def from_attrs(cls, a: dict) -> "Recipient":
        try:
            return cls(int(a["offset"]), str(a["address"]), str(a.get("orig", "")),
                       int(a.get("notify", 0)), str(a.get("orcpt", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed recipient in delivery request: {exc}") from None


@dataclass(slots=True)
class DeliveryRequest:
    """What qmgr asks an agent to do: one message, some recipients, one next hop."""

    queue_id: str
    transport: str  # master.cf service name (smtp, relay, local, ...)
    nexthop: str  # destination: domain, [host]:port, or error text for error/retry
    sender: str  # envelope sender, internal form ("" = null sender)
    recipients: list[Recipient]
    arrival_time: float  # when the message was queued (delay= starts here)
    active_time: float  # when qmgr moved it to active (delays= a/b split)
    size: int = 0  # content size in bytes (SIZE=, bounce reports)
    encoding: str = ""  # 7bit, 8bitmime, binarymime, or "" when unknown
    smtputf8: bool = False  # the message needs SMTPUTF8
    dsn_envid: str = ""  # ENVID
    dsn_ret: int = 0  # RET_FULL / RET_HDRS / 0
    client: dict = field(default_factory=dict)  # name, addr, port, proto, helo, sasl_* (pipe macros, XFORWARD)
    flags: int = 0  # FLAG_VERIFY (address verification probe), else 0
    request_time: float = 0.0  # when qmgr sent the request (delays= b ends here)

    def to_attrs(self) -> dict:
        return {
            "queue_id": self.queue_id, "transport": self.transport, "nexthop": self.nexthop,
            "sender": self.sender, "recipients": [r.to_attrs() for r in self.recipients],
            "arrival_time": repr(self.arrival_time), "active_time": repr(self.active_time),
            "request_time": repr(self.request_time or time.time()),
            "size": self.size, "encoding": self.encoding, "smtputf8": int(self.smtputf8),
            "dsn_envid": self.dsn_envid, "dsn_ret": self.dsn_ret, "client": dict(self.client),
            "flags": self.flags,
        }

    @classmethod
    def from_attrs(cls, a: dict) -> "DeliveryRequest":
        try:
            rcpts = a["recipients"]
            if not isinstance(rcpts, list) or not rcpts:
                raise ValueError("no recipients")
            return cls(
                queue_id=str(a["queue_id"]), transport=str(a["transport"]),
                nexthop=str(a["nexthop"]), sender=str(a["sender"]),
                recipients=[Recipient.from_attrs(r) for r in rcpts],
                arrival_time=float(a["arrival_time"]), active_time=float(a["active_time"]),
                size=int(a.get("size", 0)), encoding=str(a.get("encoding", "")),
                smtputf8=bool(int(a.get("smtputf8", 0))), dsn_envid=str(a.get("dsn_envid", "")),
                dsn_ret=int(a.get("dsn_ret", 0)), client=dict(a.get("client") or {}),
                flags=int(a.get("flags", 0)), request_time=float(a.get("request_time", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed delivery request: {exc}") from None


@dataclass(slots=True)
class RecipientResult:
    """The outcome for one recipient."""

    offset: int  # the Recipient.offset it answers
    status: str  # SENT, DEFERRED or BOUNCED
    dsn: str  # enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1"
    text: str  # what happened, as logged in parentheses after status=
    relay: str = "none"  # relay= field: host[addr]:port, local, virtual, none, ...

    def to_attrs(self) -> dict:
        return {"offset": self.offset, "status": self.status, "dsn": self.dsn,
                "text": self.text, "relay": self.relay}

    @classmethod
    def from_attrs(cls, a: dict) -> "RecipientResult":
        try:
            r = cls(int(a["offset"]), str(a["status"]), str(a["dsn"]), str(a.get("text", "")),
                    str(a.get("relay", "none")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed delivery result: {exc}") from None
        if r.status not in STATUSES:
            raise ValueError(f"malformed delivery result: bad status {r.status!r}")
        return r


@dataclass(slots=True)
class DeliveryResult:
    """An agent's reply: one result per recipient of the request.

    ``hop_status`` is set when the *destination* failed rather than its recipients
    (connection refused or timed out, no reachable MX, a 421 or a lost session:
    Postfix's "site" failure): ``{"dsn": "4.4.1", "text": "connect to ...: Connection
    refused"}``. qmgr counts it as negative feedback for the destination's concurrency
    window and toward its failed-cohort limit (a dead destination); without it a
    delivery attempt counts as a success for the scheduler, whatever the recipients'
    outcomes (a 550 for one user says nothing about the site).
    """

    results: list[RecipientResult]
    hop_status: dict | None = None

    def to_attrs(self) -> dict:
        out = {"results": [r.to_attrs() for r in self.results]}
        if self.hop_status:
            out["hop"] = {"dsn": str(self.hop_status.get("dsn", "4.0.0")),
                          "text": str(self.hop_status.get("text", ""))}
        return out

    @classmethod
    def from_attrs(cls, a: dict) -> "DeliveryResult":
        items = a.get("results")
        if not isinstance(items, list):
            raise ValueError("malformed delivery reply: no results")
        hop = a.get("hop")
        if hop is not None and not isinstance(hop, dict):
            raise ValueError("malformed delivery reply: bad hop status")
        return cls([RecipientResult.from_attrs(r) for r in items], hop or None)


def format_delay(seconds: float, max_decimals: int = 2) -> str:
    """Format a delay as Postfix's log lines do (format_tv).

    Two significant digits, never fewer digits than the integer part has, at most
    ``max_decimals`` (delay_logging_resolution_limit) digits after the point, trailing
    zeros dropped: 0 -> "0", 0.456 -> "0.46", 2.56 -> "2.6", 109.4 -> "109",
    0.0456 -> "0.05", 0.003 -> "0".
    """
    if seconds <= 0:
        return "0"
    if seconds >= 10:
        return str(int(seconds + 0.5))
    if seconds >= 1:
        decimals = 1
    else:
        decimals = 2  # 0.1 .. 0.99: two significant digits
        probe = seconds
        while probe < 0.1:  # 0.0x needs a third decimal, 0.00x a fourth ...
            probe *= 10
            decimals += 1
    text = f"{seconds:.{min(decimals, max_decimals)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def format_status_line(queue_id: str, recipient: Recipient, result: RecipientResult, *,
                       arrival_time: float, active_time: float, request_time: float,
                       conn_time: float, done_time: float | None = None,
                       conn_use: int = 0, resolution: int = 2) -> str:
    """Return Postfix's per-recipient delivery log line (without the tag).

    ``QUEUEID: to=<rcpt>, [orig_to=<orig>, ]relay=R, [conn_use=N, ]delay=D,
    delays=a/b/c/d, dsn=X.Y.Z, status=S (text)`` where a = arrival to active, b = active
    to the request reaching the agent, c = connection set-up, d = transmission.
    """
    done = time.time() if done_time is None else done_time
    a = max(0.0, active_time - arrival_time)
    b = max(0.0, request_time - active_time)
    c = max(0.0, conn_time - request_time)
    d = max(0.0, done - conn_time)
    fmt = lambda v: format_delay(v, resolution)  # noqa: E731
    parts = [f"{queue_id}: to=<{recipient.address}>"]
    if recipient.orig and recipient.orig != recipient.address:
        parts.append(f"orig_to=<{recipient.orig}>")
    parts.append(f"relay={result.relay}")
    if conn_use > 1:
        parts.append(f"conn_use={conn_use}")
    parts.append(f"delay={fmt(done - arrival_time)}")
    parts.append(f"delays={fmt(a)}/{fmt(b)}/{fmt(c)}/{fmt(d)}")
    if result.status == BOUNCED and _soft_bounce:
        parts.append(f"dsn=4{result.dsn[1:]}")
        parts.append(f"status=SOFTBOUNCE ({result.text})")
    else:
        parts.append(f"dsn={result.dsn}")
        parts.append(f"status={result.status} ({result.text})")
    return ", ".join(parts)


#: DeliveryRequest.flags: an address verification probe (Postfix's DEL_REQ_FLAG_MTA_VRFY).
#: The agent decides as for a delivery but delivers nothing (smtp/lmtp: MAIL and RCPT,
#: no DATA) and logs ``status=deliverable`` / ``status=undeliverable``; the results
#: (SENT = deliverable, DEFERRED / BOUNCED = undeliverable) go to the caller, the verify
#: service (fastpost.daemons.verify), instead of to the queue's logs.
FLAG_VERIFY = 0x1


def verify_status(status: str) -> str:
    """The status= word of a verify-mode log line."""
    return "deliverable" if status == SENT else "undeliverable"


# soft_bounce (Postfix's var_soft_bounce): a process-wide switch, set once from main.cf
# by delivery_service() in agents and by qmgr, read where the status line is written.
_soft_bounce = False


def set_soft_bounce(on: bool) -> None:
    """Turn soft_bounce on or off for this process (status lines and soften())."""
    global _soft_bounce
    _soft_bounce = bool(on)


def soften(results: list[RecipientResult]) -> list[RecipientResult]:
    """With soft_bounce, a bounce becomes a deferral with a 4.x.x code (as Postfix's
    agents report it); otherwise the results unchanged."""
    if not _soft_bounce:
        return results
    return [RecipientResult(r.offset, DEFERRED, "4" + r.dsn[1:], r.text, r.relay)
            if r.status == BOUNCED else r for r in results]


# -- the agent side ----------------------------------------------------------------------

def failed_results(request: DeliveryRequest, dsn: str, text: str) -> list[RecipientResult]:
    """Return the same temporary (4.x.x) or permanent (5.x.x) result for every recipient."""
    status = DEFERRED if dsn.startswith("4") else BOUNCED
    return [RecipientResult(r.offset, status, dsn, text) for r in request.recipients]


def log_results(request: DeliveryRequest, results: list[RecipientResult], *,
                conn_time: float | None = None, conn_use: int = 0) -> None:
    """Log one Postfix status line per result (``to=<...>, relay=..., status=...``)."""
    from fastpost.util import log

    done = time.time()
    conn = done if conn_time is None else conn_time
    by_offset = {r.offset: r for r in request.recipients}
    for res in results:
        rcpt = by_offset.get(res.offset)
        if rcpt is None:
            continue
        line = format_status_line(
            request.queue_id, rcpt, res, arrival_time=request.arrival_time,
            active_time=request.active_time,
            request_time=request.request_time or request.active_time,
            conn_time=conn, done_time=done, conn_use=conn_use)
        log.info("%s", log.printable(line))


def delivery_service(handler, *, max_frame: int | None = None):
    """Return a multi_server protocol factory for a delivery agent.

    ``handler(request: DeliveryRequest, ctx) -> list[RecipientResult]`` (plain or async)
    delivers and logs (log_results); it must answer every recipient. It may return a
    DeliveryResult instead, to report a destination failure (``hop_status``). A malformed request
    is answered with ``{"error": text}``; an exception in the handler defers every
    recipient with ``4.3.0`` and is logged as a warning, so one bad message never takes the
    agent down.
    """
    import inspect

    from fastpost.mail import ipc
    from fastpost.util import log

    soft_bounce_read = []

    async def handle(attrs: dict, conn) -> dict:
        if not soft_bounce_read:  # once per process: the configuration is fixed
            set_soft_bounce(conn.ctx.cfg.get_bool("soft_bounce"))
            soft_bounce_read.append(True)
        try:
            request = DeliveryRequest.from_attrs(attrs)
        except ValueError as exc:
            log.warn("%s", exc)
            return {"error": str(exc)}
        hop = None
        try:
            results = handler(request, conn.ctx)
            if inspect.isawaitable(results):
                results = await results
            if isinstance(results, DeliveryResult):
                hop, results = results.hop_status, results.results
        except Exception as exc:  # noqa: BLE001 - the agent must answer every request
            log.warn("%s: delivery agent error: %s: %s", request.queue_id,
                     type(exc).__name__, log.printable(str(exc)))
            results = failed_results(request, "4.3.0", "delivery temporarily suspended: "
                                     "internal error in the delivery agent")
            log_results(request, results)
        answered = {r.offset for r in results}
        missing = [r for r in request.recipients if r.offset not in answered]
        if missing:
            log.warn("%s: delivery agent left %d recipient(s) unanswered", request.queue_id,
                     len(missing))
            extra = failed_results(DeliveryRequest(request.queue_id, request.transport,
                                                   request.nexthop, request.sender, missing,
                                                   request.arrival_time, request.active_time),
                                   "4.3.0", "delivery agent did not report this recipient")
            results = list(results) + extra
        return DeliveryResult(soften(list(results)), hop).to_attrs()

    kwargs = {} if max_frame is None else {"max_frame": max_frame}
    return ipc.attr_service(PROTOCOL, handle, **kwargs)
