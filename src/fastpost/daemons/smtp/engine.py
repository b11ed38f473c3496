"""One delivery request, start to end: destinations, servers, sessions, results.

Postfix counterpart: src/smtp/smtp_connect.c (the loop over next-hop destinations,
MX hosts and addresses, fallback relays, smtp_mx_address_limit and
smtp_mx_session_limit, reusing cached sessions), smtp_rcpt.c / smtp_trouble.c
(what each reply does to each recipient), smtp.c (the deliver_message part).

    engine = Engine(settings, router, store, cache, tls=policies)
    result = await engine.deliver(request)      # DeliveryResult, every recipient answered

The order of work, as Postfix's smtp:

1. the next hop (a list is allowed) and then smtp_fallback_relay give the
   destinations; each is routed (fastpost.daemons.smtp.route) into server addresses,
   best first;
2. a session cached for the destination is used first, then for each address in
   turn one cached for that server, else a new connection; at most
   smtp_mx_address_limit addresses and smtp_mx_session_limit sessions per destination;
3. a failure of the server or session (connect refused, greeting or HELO refused,
   lost connection, time-out, 421) moves on to the next server with every recipient
   still pending; a 4xx for a recipient or for MAIL/DATA on a server that is not the
   last one leaves the recipient for the next server, on the last one defers it; a
   5xx (RCPT, MAIL, DATA or end of data) bounces the recipients it answers; a 2xx
   delivers them;
4. recipients nothing answered finally take the most recent failure: deferred when
   it is a 4.x.x, bounced when 5.x.x (no such domain, null MX, a 5xx HELO on the last
   server); when that failure was the site's (no recipient reached a server's
   verdict) the reply to qmgr carries it as ``hop_status``, which qmgr's dead-site
   throttling counts;
5. a session whose transaction ended cleanly goes back to the connection cache;
   one used after a failed transaction gets RSET first.

Every final result is logged as Postfix's status line (``relay=host[addr]:port``,
``conn_use=N`` from the second message on a connection, ``delays=a/b/c/d``).

Verify mode (``request.flags & FLAG_VERIFY``: address verification probes from the
verify service or sendmail -bv): no queued message is read; each transaction is MAIL
and RCPT only (no DATA), the RCPT replies are the results, the session is RSET and
closed with QUIT (never cached: the server's transaction is open), and the status
lines say ``status=deliverable`` / ``status=undeliverable`` (docs/verify.md).

Addresses go out in RFC 5321 form (a local part that needs it is quoted:
``"john doe"@example.com``) unless smtp_quote_rfc821_envelope = no.

Parameters: through Settings (fastpost.daemons.smtp.settings): smtp_mx_address_limit,
smtp_quote_rfc821_envelope,
smtp_mx_session_limit, smtp_fallback_relay, smtp_tcp_port, smtp_line_length_limit,
delay_logging_resolution_limit; the session, cache and TLS ones.
Diagnostics: a message that cannot be read is deferred 4.3.0 with a warning; a
malformed next hop is deferred 4.3.5 ("bad next-hop destination ...").
"""

from __future__ import annotations

import time

from fastpost.daemons.smtp.route import parse_nexthop, port_number
from fastpost.daemons.smtp.session import COMMAND_TEXT, Session, SiteError, reply_dsn
from fastpost.daemons.smtp.wire import wire_text
from fastpost.mail.address import external
from fastpost.mail.deliver import (
    BOUNCED, DEFERRED, FLAG_VERIFY, NOTIFY_DELAY, NOTIFY_FAILURE, NOTIFY_NEVER, NOTIFY_SUCCESS,
    RET_FULL, RET_HDRS, SENT, DeliveryResult, RecipientResult, format_status_line, verify_status,
)
from fastpost.mail.queue.message import content_text, parse
from fastpost.smtp.client import Recipient as WireRecipient
from fastpost.smtp.grammar import xtext_encode
from fastpost.util import log

__all__ = ["Engine", "xforward_groups"]

_STALE = object()  # a cached session the server had closed: try again, uncounted
_NEXTHOP_CACHE = 1000  # parsed next hops kept (Engine._nexthops)


class _Failure:
    """The most recent reason a recipient is still pending."""

    __slots__ = ("dsn", "text", "relay", "site", "seq")

    def __init__(self, dsn, text, relay, site, seq):
        self.dsn, self.text, self.relay, self.site, self.seq = dsn, text, relay, site, seq


class _State:
    """One request in progress."""

    def __init__(self, request, content, wire_rcpts):
        self.request = request
        self.content = content
        self.pending = list(request.recipients)
        self.wire = {r.offset: w for r, w in zip(request.recipients, wire_rcpts)}
        self.results: dict[int, RecipientResult] = {}
        self.soft: dict[int, _Failure] = {}
        self.site: _Failure | None = None
        self.seq = 0
        self.sender = request.sender  # as it goes out (smtp_generic_maps)
        self.raw = b""  # the content before wire_text (CR LF lines)
        self.seven_bit = None  # the content for a server without 8BITMIME, once made
        self.conn_time = 0.0
        self.conn_use = 0

    def site_failure(self, dsn, text, relay) -> _Failure:
        self.seq += 1
        self.site = _Failure(dsn, text, relay, True, self.seq)
        return self.site

    def soft_failure(self, offset, dsn, text, relay) -> None:
        self.seq += 1
        self.soft[offset] = _Failure(dsn, text, relay, False, self.seq)


def _notify(bits: int):
    if not bits:
        return None
    if bits & NOTIFY_NEVER:
        return ("NEVER",)
    out = []
    for bit, name in ((NOTIFY_SUCCESS, "SUCCESS"), (NOTIFY_FAILURE, "FAILURE"),
                      (NOTIFY_DELAY, "DELAY")):
        if bits & bit:
            out.append(name)
    return tuple(out) or None


def _orcpt(rcpt) -> str | None:
    if rcpt.dsn_orcpt:
        kind, sep, addr = rcpt.dsn_orcpt.partition(";")
        return rcpt.dsn_orcpt if sep and addr else None
    if rcpt.orig:
        return f"rfc822;{rcpt.orig}"
    return None


class Engine:
    """Delivers requests (module docstring)."""

    def __init__(self, settings, router, store, cache, *, tls=None, resolution: int = 2,
                 sasl=None, generic=None, checks=None):
        self.s = settings
        self.checks = checks  # fastpost.daemons.smtp.checks.OutputChecks or None
        self.generic = generic  # fastpost.daemons.smtp.generic.GenericMapper or None
        self.sasl = sasl  # fastpost.daemons.smtp.sasl.SaslClient or None (no AUTH)
        self.router = router
        self.store = store
        self.cache = cache
        self.tls = tls  # fastpost.daemons.smtp.tls.Policies or None (no TLS)
        self.resolution = resolution
        self.default_port = 0 if settings.tcp_port == "" else port_number(settings.tcp_port)
        self.fallback = []
        for item in settings.fallback_relay:
            try:
                self.fallback += parse_nexthop(item, lmtp=settings.lmtp,
                                               default_port=self.default_port)
            except ValueError as exc:
                log.warn("%sfallback_relay: %s: ignored", settings.prefix, exc)
        self.deliveries = 0
        #: next hops parsed before (Destinations are immutable): most requests name one
        #: of a few, and parsing it again per message costs more than the lookup
        self._nexthops: dict[str, tuple] = {}

    # -- the request ---------------------------------------------------------------------

    async def deliver(self, request) -> DeliveryResult:
        self.deliveries += 1
        started = time.time()
        if request.flags & FLAG_VERIFY:
            content = b""  # a probe: nothing in the queue, MAIL and RCPT only
        else:
            try:
                data = self.store.read(request.queue_id)
                parsed = parse(data)
                content = content_text(data, parsed, b"\r\n")
            except Exception as exc:  # noqa: BLE001 - QueueError, CorruptQueueFile, OSError
                log.warn("%s: cannot read the queued message: %s", request.queue_id, exc)
                return self._all(request, started, DEFERRED, "4.3.0",
                                 "mail system error: cannot read the queued message")
        sender = request.sender
        addresses = [r.address for r in request.recipients]
        if self.checks is not None and content:
            try:
                content = await self.checks.apply(content, request.queue_id)
            except SiteError as exc:
                return self._all(request, started, DEFERRED, exc.dsn, exc.text)
        if self.generic is not None:
            try:
                if content:
                    content = await self.generic.headers(content)
                sender = await self.generic.map(sender)
                addresses = [await self.generic.map(a) for a in addresses]
            except SiteError as exc:
                return self._all(request, started, DEFERRED, exc.dsn, exc.text)
        raw = content
        content, folded = wire_text(content, self.s.fold_limit, True)
        if folded:
            log.info("%s: breaking line > %d bytes with <CR><LF>SPACE", request.queue_id,
                     self.s.fold_limit)
        quote = external if self.s.quote_envelope else str
        wire = [WireRecipient(quote(a), _notify(r.dsn_notify), _orcpt(r))
                for r, a in zip(request.recipients, addresses)]
        st = _State(request, content, wire)
        st.sender = sender
        st.raw = raw
        st.conn_time = started
        parsed = self._nexthops.get(request.nexthop)
        if parsed is None:
            try:
                parsed = tuple(parse_nexthop(request.nexthop, lmtp=self.s.lmtp,
                                             default_port=self.default_port))
            except ValueError as exc:
                log.warn("%s: %s", request.queue_id, exc)
                return self._all(request, started, DEFERRED, "4.3.5", str(exc))
            if len(self._nexthops) >= _NEXTHOP_CACHE:
                self._nexthops.clear()
            self._nexthops[request.nexthop] = parsed
        dests = list(parsed)
        texts = {d.text.lower() for d in dests}
        dests += [d for d in self.fallback if d.text.lower() not in texts]
        for index, dest in enumerate(dests):
            await self._destination(st, dest, last=index == len(dests) - 1)
            if not st.pending:
                break
        hop = self._finish(st)
        return DeliveryResult([st.results[r.offset] for r in request.recipients], hop)

    def _all(self, request, started, status, dsn, text) -> DeliveryResult:
        st = _State(request, b"", [None] * len(request.recipients))
        st.conn_time = started
        for rcpt in list(st.pending):
            self._final(st, rcpt, status, dsn, text, "none")
        return DeliveryResult([st.results[r.offset] for r in request.recipients])

    def _finish(self, st: _State):
        """Answer the recipients no server gave a verdict for; the hop status."""
        hop = None
        for rcpt in list(st.pending):
            why = st.soft.get(rcpt.offset)
            if st.site is not None and (why is None or st.site.seq > why.seq):
                why = st.site
            if why is None:
                why = _Failure("4.3.0", "delivery agent found no server to try", "none", True, 0)
            status = DEFERRED if why.dsn.startswith("4") else BOUNCED
            self._final(st, rcpt, status, why.dsn, why.text, why.relay)
            if why.site and status == DEFERRED:
                hop = {"dsn": why.dsn, "text": why.text}
        return hop

    def _final(self, st: _State, rcpt, status, dsn, text, relay) -> None:
        result = RecipientResult(rcpt.offset, status, dsn, text, relay)
        st.results[rcpt.offset] = result
        st.pending.remove(rcpt)
        req = st.request
        shown = result
        if req.flags & FLAG_VERIFY:
            shown = RecipientResult(rcpt.offset, verify_status(status), dsn, text, relay)
        line = format_status_line(
            req.queue_id, rcpt, shown, arrival_time=req.arrival_time,
            active_time=req.active_time, request_time=req.request_time or req.active_time,
            conn_time=st.conn_time, conn_use=st.conn_use if relay != "none" else 0,
            resolution=self.resolution)
        log.info("%s", log.printable(line))

    # -- one destination -------------------------------------------------------------------

    async def _destination(self, st: _State, dest, last: bool) -> None:
        key = dest.text
        cached = self.cache.take(key)
        if cached is not None:
            # Stale or not, recipients still pending go on to routing below.
            await self._use(st, cached, dest, final=last)
            if not st.pending:
                return
        targets, problem = await self.router.route(dest)
        if problem is not None:
            st.site_failure(problem.dsn, problem.text, "none")
            return
        if self.s.mx_address_limit > 0:
            targets = targets[:self.s.mx_address_limit]
        limit = self.s.mx_session_limit
        sessions = 0
        for index, target in enumerate(targets):
            final = last and (index == len(targets) - 1 or (limit > 0 and sessions + 1 >= limit))
            sess = self.cache.take(target.endpoint)
            if sess is not None:
                sess.target = target  # same server; this destination's name for it
                if await self._use(st, sess, dest, final=final) is not _STALE:
                    sessions += 1
                    if not st.pending or (limit > 0 and sessions >= limit):
                        return
                    continue
            try:
                sess = await Session.connect(self.s, target)
            except SiteError as exc:
                st.site_failure(exc.dsn, exc.text, "none")
                if not final:
                    log.info("%s", exc.text)
                continue
            sessions += 1
            await self._use(st, sess, dest, final=final)
            if not st.pending or (limit > 0 and sessions >= limit):
                return

    async def _use(self, st: _State, sess: Session, dest, final: bool):
        """Handshake (new session) and one transaction; results into ``st``."""
        req = st.request
        reused = sess.uses > 0
        try:
            if not reused:
                policy = await self.tls.policy(dest, sess.target) if self.tls is not None else None
                try:
                    await sess.handshake(policy)
                except SiteError as exc:
                    if not (exc.stage == "starttls" and getattr(exc, "tls_level", "") == "may"):
                        raise
                    # Opportunistic TLS failed: once more in plain text (Postfix does too).
                    log.info("%s: %s; trying again without TLS", req.queue_id, exc.text)
                    sess.close()
                    sess = await Session.connect(self.s, sess.target)
                    await sess.handshake(None)
                if self.sasl is not None:
                    await self.sasl.login(sess, req.sender, dest)
                st.conn_time = sess.ready_time
            else:
                st.conn_time = time.time()
                if sess.conn._needs_rset:
                    await sess.rset()
            st.conn_use = sess.uses + 1
            if self.s.send_xforward and sess.conn.offers("XFORWARD"):
                await sess.xforward(xforward_groups(req, sess.conn.extensions["XFORWARD"]))
            content = st.content
            if (self.s.mime_downgrade and _body(req.encoding) == "8BITMIME"
                    and not sess.conn.offers("8BITMIME")):
                content = self._seven_bit(st)
            outcome = await sess.transaction(
                external(st.sender) if self.s.quote_envelope else st.sender,
                [st.wire[r.offset] for r in st.pending], content,
                size=req.size or len(st.content), body=_body(req.encoding),
                smtputf8=req.smtputf8 and self.s.smtputf8_enable,
                ret={RET_FULL: "FULL", RET_HDRS: "HDRS"}.get(req.dsn_ret),
                envid=req.dsn_envid or None, verify_only=bool(req.flags & FLAG_VERIFY))
        except SiteError as exc:
            sess.close()
            if reused and exc.stage in ("mail", "rset") and exc.dsn == "4.4.2":
                log.debug("cached session with %s was closed: %s", sess.name_addr, exc.text)
                return _STALE
            relay = sess.relay if exc.connected else "none"
            if not final and exc.soft:
                log.info("%s: %s", req.queue_id, exc.text)
            if final and not exc.soft:
                for rcpt in list(st.pending):
                    self._final(st, rcpt, BOUNCED, exc.dsn, exc.text, relay)
            else:
                st.site_failure(exc.dsn, exc.text, relay)
            return None
        for rcpt, (reply, command) in zip(list(st.pending), outcome.replies):
            dsn = reply_dsn(reply)
            if command is None:
                text = self._local_refusal(reply, sess)
            elif reply.code < 400:
                text = str(reply)
            else:
                text = (f"host {sess.name_addr} said: {reply} (in reply to "
                        f"{COMMAND_TEXT.get(command, command)})")
            if reply.code < 400:
                self._final(st, rcpt, SENT, dsn, text, sess.relay)
            elif reply.code >= 500:
                self._final(st, rcpt, BOUNCED, dsn, text, sess.relay)
            elif final:
                self._final(st, rcpt, DEFERRED, dsn, text, sess.relay)
            else:
                st.soft_failure(rcpt.offset, dsn, text, sess.relay)
        if req.flags & FLAG_VERIFY:
            # The server's transaction is still open: RSET and QUIT (as Postfix's probes).
            try:
                if sess.usable:
                    await sess.rset()
            except SiteError:
                pass
            await sess.quit()
        elif sess.usable and not (sess.sasl_username and self.sasl.sender_dependent):
            self.cache.put(dest.text, sess)
        else:
            sess.close()
        return None

    def _seven_bit(self, st: _State) -> bytes:
        """The content with 8bit MIME parts as quoted-printable (once per request)."""
        if st.seven_bit is None:
            from fastpost.daemons.smtp.mime7bit import downgrade

            st.seven_bit = wire_text(downgrade(st.raw), self.s.fold_limit, True)[0]
        return st.seven_bit

    @staticmethod
    def _local_refusal(reply, sess) -> str:
        """The text of a message refused before sending (SMTPUTF8, SIZE)."""
        if reply.enhanced == "5.6.7":
            return f"SMTPUTF8 is required, but was not offered by host {sess.name_addr}"
        if reply.enhanced == "5.3.4":
            size = reply.lines[0].split()[2] if len(reply.lines[0].split()) > 2 else "?"
            return (f"message size {size} exceeds size limit {sess.conn.max_size} of server "
                    f"{sess.name_addr}")
        return str(reply)


def xforward_groups(req, announced: str) -> list[list[str]]:
    """The XFORWARD commands for a request, as Postfix's smtp sends them: the
    attributes the server announced and the message has, NAME ADDR PORT in one command
    and PROTO HELO IDENT SOURCE in the next (IDENT: the original queue ID, for mail
    that came in by SMTP; SOURCE: LOCAL or REMOTE from the rewrite context)."""
    c = req.client or {}
    names = {w.upper() for w in announced.split()}
    addr = c.get("addr", "")
    if addr and ":" in addr and not addr.upper().startswith("IPV6:"):
        addr = "IPV6:" + addr
    ident = c.get("ident") or (req.queue_id if c.get("proto") else "")
    context = c.get("rewrite_context", "")
    source = {"local": "LOCAL", "remote": "REMOTE"}.get(context, "")
    groups = [(("NAME", c.get("name", "")), ("ADDR", addr), ("PORT", str(c.get("port", "") or ""))),
              (("PROTO", c.get("proto", "")), ("HELO", c.get("helo", "")), ("IDENT", ident),
               ("SOURCE", source))]
    return [[f"{k}={xtext_encode(v)}" for k, v in group if k in names and v] for group in groups]


def _body(encoding: str) -> str | None:
    enc = (encoding or "").lower()
    if enc.startswith("8bit"):
        return "8BITMIME"
    if enc.startswith("binary"):
        return "BINARYMIME"
    return None
