"""Address verification probes: ask the delivery path what it would do with an address.

Postfix counterpart: the probe half of verify(8) (src/verify/verify.c sends a probe
message through cleanup; qmgr and the delivery agents run it in verify mode and report
to verify). fastpost asks the same parties directly, without a queued message
(docs/verify.md, "Deliberate differences"):

    prober = Prober(cfg, rewriter)                  # rewriter: fastpost.mail.rewrite_clnt
    status, text = await prober.probe("user@example.com")   # cache.STAT_* and the reason

1. the probe sender is address_verify_sender (default $double_bounce_sender; ``<>``
   is the null sender), with address_verify_sender_ttl's time-dependent part appended
   to its local part when that is set (ttl_sender), qualified like any local address
   (``double-bounce`` becomes ``double-bounce@$myorigin``);
2. the address is mapped as cleanup maps a recipient of a locally submitted message
   (recipient_canonical_maps/canonical_maps, then virtual_alias_maps: cleanup's
   AddressMapper); an alias with several targets probes each, and the worst answer
   counts (Postfix's probe message would carry them all; its verify keeps whichever
   result arrives last);
3. trivial-rewrite's ``verify`` request routes each address with the
   address_verify_* transports, relayhost and maps;
4. by the master.cf program of the transport it names:

   * ``error``: undeliverable (the error text); ``retry`` (the error program under
     that service name or a 4.x.x text): a temporary failure;
   * ``local``: the local part (without its recipient_delimiter extension) in
     alias_maps, the password file, luser_relay (fastpost.daemons.pickup.verify);
     ``postmaster`` without an alias is deliverable ("discarded") when the probe
     sender is the double-bounce address, as Postfix's local agent answers;
   * ``virtual``: the address, or its ``@domain`` catch-all, in virtual_mailbox_maps;
   * ``smtp`` / ``lmtp``: a delivery request flagged FLAG_VERIFY to private/TRANSPORT;
     the agent connects as for mail, sends MAIL FROM and RCPT TO and no DATA, logs
     ``status=deliverable|undeliverable`` and answers; SENT is deliverable, BOUNCED
     undeliverable, DEFERRED a temporary failure;
   * any other program (pipe, discard, ...): deliverable, "delivery via TRANSPORT to
     NEXTHOP" (such agents have no verify mode).

Every probe logs one line as the agents do, under a probe ID (a queue ID no message
has): ``ID: to=<addr>, relay=R, delay=D, delays=..., dsn=X.Y.Z, status=deliverable (..)``
(for smtp/lmtp the agent writes it).

Parameters: address_verify_sender, address_verify_sender_ttl, the address_verify_*
routing (trivial-rewrite's), local_transport's and virtual's tables, ipc_timeout.
Failures: trivial-rewrite or the agent cannot be reached: a temporary failure (1) whose
text names the service; nothing is cached from it for long (negative_refresh_time).
"""

from __future__ import annotations

import itertools
import os
import time

from fastpost.daemons.verify.cache import STAT_BOUNCE, STAT_DEFER, STAT_OK
from fastpost.mail import deliver as D
from fastpost.util import log

__all__ = ["Prober", "probe_id", "transport_programs", "ask_agent", "AGENT_PROGRAMS"]

#: programs with a verify mode (FLAG_VERIFY): asked over private/TRANSPORT
AGENT_PROGRAMS = ("smtp", "lmtp")

_counter = itertools.count(1)


def probe_id(long_ids: bool = False) -> str:
    """A queue-ID-shaped label for one probe's log lines."""
    from fastpost.mail.queue.queue_id import make_id

    now = time.time()
    number = (os.getpid() << 20 | next(_counter)) & 0xFFFFFFF
    return make_id(long_ids, int(now), int(now * 1e6) % 1000000, number)


def _dsn_split(text: str, default: str) -> tuple[str, str]:
    """'5.1.1 text' -> ('5.1.1', 'text')."""
    word, _, rest = text.partition(" ")
    parts = word.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and word[0] in "245":
        return word, rest or text
    return default, text


#: how bad each answer is, for an address that expands to several
_RANK = {STAT_OK: 0, STAT_DEFER: 1, STAT_BOUNCE: 2}


def _stat_of(dsn: str) -> int:
    return STAT_OK if dsn.startswith("2") else STAT_DEFER if dsn.startswith("4") else STAT_BOUNCE


class Prober:
    """Runs probes (module docstring)."""

    def __init__(self, cfg, rewriter, *, queue_directory: str = ".", mapper=None):
        self.cfg = cfg
        self.rewriter = rewriter
        self.mapper = mapper  # fastpost.daemons.cleanup.addrmap.AddressMapper, or None
        self.qdir = queue_directory
        self.timeout = float(cfg.get_time("ipc_timeout"))
        self.long_ids = cfg.get_bool("enable_long_queue_ids")
        self._programs: dict[str, str] | None = None
        self._sender: str | None = None

    def programs(self) -> dict[str, str]:
        """master.cf service name -> program, for unix services."""
        if self._programs is None:
            self._programs = transport_programs(self.cfg)
        return self._programs

    async def sender(self) -> str:
        raw = self.cfg.get("address_verify_sender").strip()
        if raw in ("", "<>"):
            return ""
        ttl = int(self.cfg.typed("address_verify_sender_ttl") or 0)
        if ttl > 0:
            raw = ttl_sender(raw, ttl, time.time())
        elif self._sender is not None:
            return self._sender
        sender = await self.rewriter.rewrite("local", raw)
        if ttl <= 0:
            self._sender = sender
        return sender

    async def probe(self, address: str) -> tuple[int, str]:
        """(cache.STAT_OK | STAT_DEFER | STAT_BOUNCE, text) for ``address``.

        The address is mapped first as cleanup maps a recipient (canonical maps, then
        virtual aliases, when a mapper was given); each resulting address is probed, and
        the worst answer (undeliverable, then temporary failure) is the address's."""
        started = time.time()
        qid = probe_id(self.long_ids)
        try:
            sender = await self.sender()
            targets = await self._map(address)
        except Exception as exc:  # noqa: BLE001 - ExpansionError, MapRetry, IPC trouble
            text = f"address mapping failure: {exc}"
            self._log(qid, address, address, "none", started, "4.3.0", STAT_DEFER, text)
            return STAT_DEFER, text
        worst = None
        for target in targets:
            status, text = await self._one(qid, sender, address, target, started)
            if worst is None or _RANK[status] > _RANK[worst[0]]:
                worst = (status, text)
        return worst

    async def _map(self, address: str) -> list[str]:
        if self.mapper is None:
            return [address]
        from fastpost.daemons.cleanup.addrmap import RECIPIENT_ENVELOPE

        mapped = await self.mapper.canonical(address, RECIPIENT_ENVELOPE, "local")
        return await self.mapper.virtual(mapped) or [mapped]

    async def _one(self, qid, sender, orig, address, started) -> tuple[int, str]:
        """Probe one address (after mapping; ``orig`` is what was asked about)."""
        try:
            res = await self.rewriter.verify(sender, address)
        except Exception as exc:  # noqa: BLE001 - RewriteError, IPC trouble
            text = f"address resolver failure: {exc}"
            self._log(qid, address, orig, "none", started, "4.3.0", STAT_DEFER, text)
            return STAT_DEFER, text
        program = self.programs().get(res.transport, "")
        if res.failed or program == "error" or res.transport in ("error", "retry"):
            default = "4.3.0" if res.transport == "retry" or program == "retry" else "5.0.0"
            dsn, text = _dsn_split(res.nexthop or "address resolution failed", default)
            if res.transport == "retry" and not dsn.startswith("4"):
                dsn = "4" + dsn[1:]
            status = _stat_of(dsn)
            self._log(qid, address, orig, "none", started, dsn, status, text)
            return status, text
        if program == "local":
            from fastpost.daemons.pickup.verify import _local_verdict

            action, dsn, text = await _local_verdict(self.cfg, res.recipient)
            status = STAT_OK if action == "deliverable" else _stat_of(dsn)
            if status == STAT_BOUNCE and self._postmaster_from_double_bounce(sender, res):
                status, dsn, text = STAT_OK, "2.0.0", "discarded"
            self._log(qid, address, orig, res.transport, started, dsn, status, text)
            return status, text
        if program == "virtual":
            status, dsn, text = await self._virtual(res.recipient)
            self._log(qid, address, orig, res.transport, started, dsn, status, text)
            return status, text
        if program in AGENT_PROGRAMS:
            return await self._agent(qid, sender, orig, res, started)
        text = f"delivery via {res.transport} to {res.nexthop}"
        self._log(qid, address, orig, res.transport, started, "2.0.0", STAT_OK, text)
        return STAT_OK, text

    def _postmaster_from_double_bounce(self, sender: str, res) -> bool:
        """Postfix's local agent discards mail from the double-bounce address to a
        postmaster without an alias (a loop breaker); its probes therefore find
        postmaster deliverable ("discarded"), and so do ours."""
        local = res.recipient.rpartition("@")[0].lower()
        double = self.cfg.get("double_bounce_sender").lower()
        return local == "postmaster" and sender.lower().rpartition("@")[0] == double

    async def _virtual(self, address: str) -> tuple[int, str, str]:
        from fastpost.mail.maps import MapList, MapRetry

        ml = MapList.from_param(self.cfg, "virtual_mailbox_maps")
        domain = address.rpartition("@")[2]
        try:
            for key in (address.lower(), f"@{domain.lower()}"):
                for m in ml.maps:
                    if await m.aget(key) is not None:
                        return STAT_OK, "2.0.0", "delivers to mailbox"
        except MapRetry as exc:
            return STAT_DEFER, "4.3.0", f"virtual_mailbox_maps lookup failure: {exc}"
        return STAT_BOUNCE, "5.1.1", f"unknown user: \"{address}\""

    async def _agent(self, qid, sender, orig, res, started) -> tuple[int, str]:
        address = orig
        try:
            result = await ask_agent(self.qdir, self.timeout, qid, res.transport, res.nexthop,
                                     sender, res.recipient, orig, started)
        except Exception as exc:  # noqa: BLE001 - IPC errors, a malformed answer
            text = f"mail transport unavailable: {res.transport}: {exc}"
            log.warn("%s: probe for <%s>: %s", qid, log.printable(address), text)
            return STAT_DEFER, text
        if result.status == D.SENT:
            return STAT_OK, result.text
        return (STAT_BOUNCE if result.status == D.BOUNCED else STAT_DEFER), result.text

    def _log(self, qid, address, orig, relay, started, dsn, status, text) -> None:
        now = time.time()
        rcpt = D.Recipient(0, address, orig)
        result = D.RecipientResult(0, "deliverable" if status == STAT_OK else "undeliverable",
                                   dsn, text, relay)
        log.info("%s", log.printable(D.format_status_line(
            qid, rcpt, result, arrival_time=started, active_time=started,
            request_time=started, conn_time=now, done_time=now)))


#: digits of the time-dependent sender part (no vowels: never a word), as Postfix's
_SAFE_DIGITS = "0123456789BCDFGHJKLMNPQRSTVWXYZ"


def ttl_sender(sender: str, ttl: int, now: float) -> str:
    """address_verify_sender_ttl: the local part gets the number of whole ``ttl``
    periods since the epoch appended, in base 31 over _SAFE_DIGITS (what Postfix 3.7
    sends: ``double-bounceJQXM@...`` for 1h, ``double-bounce32R@...`` for 7d)."""
    value = int(now // ttl)
    digits = ""
    while True:
        value, d = divmod(value, 31)
        digits = _SAFE_DIGITS[d] + digits
        if value == 0:
            break
    local, at, domain = sender.rpartition("@")
    return f"{local}{digits}@{domain}" if at else sender + digits


def transport_programs(cfg) -> dict[str, str]:
    """master.cf unix service name -> program name (read it before leaving the
    configuration directory's reach: pre_init)."""
    from fastpost.mail import mastercf

    try:
        entries = mastercf.load(cfg.config_dir)
    except Exception as exc:  # noqa: BLE001 - reported, then every transport is "other"
        log.warn("cannot read master.cf: %s", exc)
        entries = []
    return {e.service: e.command.rpartition("/")[2] for e in entries if e.type == "unix"}


async def ask_agent(qdir: str, timeout: float, qid: str, transport: str, nexthop: str,
                    sender: str, recipient: str, orig: str, started: float):
    """One verify-mode request to private/TRANSPORT; its RecipientResult (SENT, DEFERRED
    or BOUNCED). IPC failures and malformed answers raise."""
    from fastpost.mail import ipc

    request = D.DeliveryRequest(
        qid, transport, nexthop, sender,
        [D.Recipient(0, recipient, orig if orig != recipient else "")],
        started, started, request_time=time.time(), flags=D.FLAG_VERIFY)
    client = ipc.AsyncAttrClient(ipc.endpoint(qdir, transport, ipc.PRIVATE), D.PROTOCOL,
                                 connect_timeout=timeout, timeout=max(timeout, 600.0))
    try:
        reply = await client.request(request.to_attrs(), retry=False)
        if "error" in reply:
            raise ValueError(str(reply["error"]))
        return D.DeliveryResult.from_attrs(reply).results[0]
    finally:
        client.close()
