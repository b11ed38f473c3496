"""One SMTP session: the asyncio protocol that runs the core for one client.

Postfix counterpart: src/smtpd/smtpd.c (smtpd_proto, the *_cmd functions' policy
and bookkeeping, smtpd_chat.c for the reply/log side), with the protocol itself in
fastpost.smtp.server.

SmtpdProtocol is an asyncio.BufferedProtocol, one per connection, run by uvloop or
asyncio. There is no coroutine per line: received bytes go from the process's shared
read buffer into the ServerConnection, and the protocol pulls events and answers
them in a plain loop. Only three things wait: a Policy or MessageSink call that
returns an awaitable (or, without a future, a direct transaction's answer: CleanupSink's,
sink.py), the TLS handshake, and the error sleep; while one is pending,
reading from that client is paused and its events stay queued, and every other
session carries on. Replies produced in one pass are written with one write.

What the session does that the core does not: the greeting (smtpd_banner), the EHLO
keyword list (smtpd_discard_ehlo_keywords, who may see XCLIENT/XFORWARD), the policy
decisions (Policy seam), the transaction (MessageSink seam: begin at the first
accepted recipient, the Received: header, streaming the content, 250 only after the
sink's durable answer), STARTTLS and wrapper mode, XCLIENT/XFORWARD, SASL AUTH (when
an Authenticator is configured), the limits that count per session (error and junk
counters, error sleep, recipient overshoot, timeouts, queue_minfree), the
asynchronous reverse lookup, and Postfix's log lines:

    connect from name[addr]
    QUEUEID: client=name[addr][, sasl_method=M, sasl_username=U][, orig_client=...]
    NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 ...; from=<s> to=<r> proto=ESMTP helo=<h>
    improper command pipelining after CMD from name[addr]: pending text
    warning: name[addr]: request longer than 2048: NOOP xxxx...
    warning: Illegal address syntax from name[addr] in MAIL command: <...>
    warning: non-SMTP command from name[addr]: GET / HTTP/1.1
    warning: QUEUEID: queue file size limit exceeded
    too many errors after CMD from name[addr]
    timeout after CMD from name[addr]
    lost connection after CMD from name[addr]
    disconnect from name[addr] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5

Parameters: see fastpost.daemons.smtpd.settings (all of them are applied here or
handed to the core).

Diagnostics: a Policy or sink exception becomes a 451 4.3.5 / 451 4.3.0 reply and a
warning line; an unexpected exception in a callback is logged with its traceback by
the loop's exception handler and that one connection is closed.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from functools import partial

from fastpost.daemons.smtpd import tls as tlsmod
from fastpost.daemons.smtpd.info import (
    NAME_OK, NAME_PERM, NAME_TEMP, ClientInfo,
)
from fastpost.daemons.smtpd.sessioncore import (  # noqa: F401 - neuter_helo: public here
    CORE_HANDLERS, HANGUP, STATS_ORDER, SessionCore, neuter_helo,
)
from fastpost.daemons.smtpd.sink import SinkError
from fastpost.mail.address import external
from fastpost.smtp import events as ev
from fastpost.mail.flush_clnt import FLUSH_STAT_DENY, FLUSH_STAT_OK
from fastpost.smtp import replies
from fastpost.smtp import state as smtp_state
from fastpost.smtp.errors import RemoteProtocolError
from fastpost.smtp.replies import Reply
from fastpost.smtp.server import soften
from fastpost.util import log
from fastpost.util.log import printable

__all__ = ["SmtpdProtocol", "STATS_ORDER"]


_UNKNOWN = "unknown"

#: How long a closing TLS session waits for the client's close_notify. Postfix sends
#: its own and does not wait; most clients just drop the TCP connection, and asyncio's
#: default (30 s) would keep every such session around that long.
TLS_SHUTDOWN_TIMEOUT = 0.5


def _is_awaitable(value) -> bool:
    return hasattr(value, "__await__") or isinstance(value, asyncio.Future)


#: The session's own fields (SessionCore holds those of the per-command path).
_SLOTS = ()


class SessionLogic:
    """Everything of a session but the per-command plumbing (module docstring).

    SmtpdProtocol (below) is this over the compiled SessionCore; the differential
    test puts the same class over the reference core.
    """

    __slots__ = ()

    def __init__(self, service):
        super().__init__(service)  # SessionCore: the session's fields

    # ================================================================ transport

    def _lookup_done(self, task) -> None:
        if self.transport is None:
            return
        try:
            names = task.result()
        except Exception:  # noqa: BLE001 - a failed lookup is "unknown"
            names = (_UNKNOWN, _UNKNOWN, NAME_TEMP, NAME_TEMP)
        self._greet(names)

    def eof_received(self):
        if self.conn is None:
            self._early.append(b"")
            return True
        self.conn.receive_data(b"")
        if not self._busy:
            self._run()
        return True  # we close the transport ourselves

    def pause_writing(self) -> None:
        # The client does not read our replies: stop reading its commands.
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._busy:
            self._resume_reading()

    # ================================================================ plumbing

    def _check_timeout(self) -> None:
        self._timer = None
        if self.transport is None or self._closed:
            return
        if self._busy and self._greeted:
            self._arm_timer()  # the server side is working; the client is not late
            return
        idle = self.loop.time() - self._last_io
        if idle < self._timeout:
            self._timer = self.loop.call_later(self._timeout - idle, self._check_timeout)
            return
        log.info("timeout after %s from %s", self._where_text(), self.client.text)
        if self.conn is not None and not self.conn.closed:
            self._out.append(self.conn.send(replies.timeout(self.settings.hostname), close=True))
        self._flush()
        self._close()

    def _await(self, awaitable, on_result, on_error, *, pause: bool = False) -> None:
        """Pause this session until ``awaitable`` completes, then call back.

        Reading from the client stops when it sends anything meanwhile
        (buffer_updated), or at once with ``pause`` (back-pressure, STARTTLS).
        """
        self._busy = True
        if pause:
            self._pause_reading()
        self._flush()
        future = awaitable if isinstance(awaitable, asyncio.Future) else \
            asyncio.ensure_future(awaitable)
        # (a partial, not a lambda: no closure and no extra Python frame per wait)
        future.add_done_callback(partial(self._resumed, on_result, on_error))

    def _resumed(self, on_result, on_error, future) -> None:
        self._busy = False
        if self.transport is None or self._closed:
            if not future.cancelled() and future.exception() is None:
                result = future.result()
                if hasattr(result, "abort"):
                    result.abort()
            return
        self._last_io = self.loop.time()
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - seams report failures this way
            on_error(exc)
        else:
            on_result(result)
        if not self._busy:
            self._resume_reading()
            self._run()

    # ================================================================ greeting

    def _connect_counted(self, result) -> None:
        reply, self._anvil_ident = result
        if reply is None:
            self._greet_sasl()
            return
        self._busy = True  # no greeting, no commands: only the 421
        self._out.append(self.conn.send(reply, close=True))
        self._flush()

    def _limited(self, what: str, verb: str, go) -> bool:
        """The anvil hook of MAIL, RCPT, STARTTLS and AUTH (limits.py): True when the
        check is under way (``go()`` runs after it unless the limit refuses)."""
        limits = self.service.limits
        if limits is None or self._anvil_unknown:
            return False
        check = limits.event(what, self.client)
        if check is None:
            return False

        def judged(reply):
            if reply is None:
                go()
            else:
                self._respond(verb, reply)

        self._await(check, judged, lambda exc: go())
        return True

    # ================================================================ event loop

    def _notes_stop(self) -> bool:
        """Log what the core noted; True when the command must not be carried out."""
        stop = False
        for kind, verb, detail in self.conn.take_notes():
            c = self.client.text
            if kind == "pipelining":
                if self.client.improper_pipelining and not self.settings.forbid_unauth_pipelining:
                    continue  # Postfix reports the first improper pipelining only
                self.client.improper_pipelining = True
                log.info("improper command pipelining after %s from %s: %s", verb, c,
                         _escape(detail))
                if self.settings.forbid_unauth_pipelining and not self.conn.closed:
                    # Postfix answers the offending command with this, and hangs up.
                    stat = verb.lower() if verb.lower() in STATS_ORDER else "unknown"
                    self._count(stat, False)
                    self._out.append(self.conn.send(replies.PIPELINING_SYNC, close=True))
                    stop = True
            elif kind == "overlong":
                log.warn("%s: request longer than %d: %s...", c,
                         self.settings.line_length_limit, printable(detail))
            elif kind == "bare-lf":
                log.info("NOQUEUE: bare <LF> received from %s", c)
            elif kind == "starttls-plaintext":
                log.warn("%s: plaintext pipelined after STARTTLS discarded: %s bytes", c, detail)
        return stop

    # ================================================================ replies

    def _slept(self, verb, reply, ok, close) -> None:
        self._busy = False
        if self.transport is None or self._closed:
            return
        self._send(verb, reply, ok, close)
        self._last_io = self.loop.time()
        self._resume_reading()
        self._run()

    def _protocol_error(self, err: RemoteProtocolError) -> None:
        verb = err.verb
        c = self.client.text
        qid = self.envelope.queue_id if self.envelope and self.envelope.queue_id else "NOQUEUE"
        stat = "" if not verb else (verb.lower() if verb.lower() in STATS_ORDER else "unknown")
        kind = err.kind
        if kind == "bare-lf":
            # Postfix names the stage it was in, i.e. the previous command.
            log.info("%s: reject: %s from %s: bare <LF> received; %s", qid, self.where, c,
                     self._reject_fields())
        if verb in STATS_ORDER_UPPER:
            self.where = verb
        if kind == "address":
            log.warn("Illegal address syntax from %s in %s command: %s", c, verb,
                     printable(err.detail))
        elif kind == "non-smtp":
            log.warn("non-SMTP command from %s: %s", c, printable(err.detail))
        elif kind == "bdat-syntax":
            log.warn("%s: malformed BDAT command syntax from %s: %s", qid, c, printable(err.detail))
        elif kind == "bdat-null":
            log.warn("%s: null BDAT request from %s", qid, c)
        elif kind == "bdat-size":
            log.warn("%s: BDAT request from %s exceeds message size limit", qid, c)
        elif kind == "size":
            log.info("%s: reject: MAIL from %s: %s; from=<%s> proto=%s%s", qid, c,
                     self._as_sent(err.reply),
                     printable(external(err.detail)), self.client.protocol,
                     f" helo=<{printable(self.client.helo)}>" if self.client.helo is not None
                     else "")
        if self._auth_state is not None and verb == "AUTH":
            if err.reply == replies.AUTH_ABORTED:
                log.warn("%s: SASL %s authentication aborted", c, self._auth_state[0])
            self._auth_state = None  # the exchange is over
        if verb in smtp_state.JUNK:
            self._junk()
        ok = False if kind == "non-smtp" else None
        error = None
        if kind == "rcpt-limit":
            # Postfix counts these RCPTs as answered, and only the overshoot as errors.
            self.overshoot += 1
            error = self.overshoot > self.settings.recipient_overshoot_limit
            ok = not error
        if verb == "BDAT":
            # The message is lost; the core drops the chunks up to BDAT LAST.
            self._reset_transaction()
            self.where = "BDAT"
        self._respond(stat, err.reply, ok=ok, close=err.fatal, error=error)

    # ================================================================ policy

    def _policy_failed(self, stage: str, exc: Exception, on_done) -> None:
        log.warn("%s: policy check for %s failed: %s", self.client.text, stage, exc)
        from fastpost.daemons.smtpd.policy import Decision

        on_done(Decision(replies.SERVER_CONFIG_ERROR))

    def _reject_fields(self, recipient: str | None = None) -> str:
        parts = []
        if self.envelope is not None:
            parts.append(f"from=<{printable(external(self.envelope.sender))}>")
        if recipient is not None:
            parts.append(f"to=<{printable(external(recipient))}>")
        parts.append(f"proto={self.client.protocol}")
        if self.client.helo is not None:
            parts.append(f"helo=<{printable(self.client.helo)}>")
        return " ".join(parts)

    def _last_recipient(self) -> str | None:
        env = self.envelope
        return env.recipients[-1].address if env is not None and env.recipients else None

    def _log_reject(self, stage: str, reply: Reply, recipient: str | None = None) -> None:
        if self._skip_log:
            self._skip_log = False
            return
        if recipient is None and stage in ("DATA", "BDAT", "END-OF-MESSAGE"):
            recipient = self._last_recipient()
        qid = self.envelope.queue_id if self.envelope and self.envelope.queue_id else "NOQUEUE"
        log.info("%s: reject: %s from %s: %s; %s", qid, stage, self.client.text,
                 printable(str(self._as_sent(reply))), self._reject_fields(recipient))

    def _as_sent(self, reply: Reply) -> Reply:
        """The reply as the client gets it: under soft_bounce a 5xx goes out as 4xx
        (ServerConnection.send), and Postfix 3.7 logs the code it sent."""
        return soften(reply) if self.conn.options.soft_bounce else reply

    # ================================================================ transaction

    def _sink_failed(self, exc: Exception) -> Reply:
        qid = getattr(self.txn, "queue_id", None) or (
            self.envelope.queue_id if self.envelope else None) or "NOQUEUE"
        if isinstance(exc, SinkError):
            if exc.log:
                log.warn("%s: %s", qid, exc.log)
            return exc.reply
        log.warn("%s: message sink failed: %s: %s", qid, type(exc).__name__, exc)
        return replies.WRITE_ERROR

    def _content_failed(self, exc: Exception) -> None:
        self._data_rejected = self._sink_failed(exc)
        self._abort_txn()

    # ================================================================ commands

    def _on_bdat(self, event) -> None:
        self.where = "BDAT"
        if not event.first:
            return

        def checked(decision):
            refused = self._refused(decision, "bdat")
            if refused is _HANGUP:
                return
            if refused is not None:
                self._log_reject("BDAT", refused)
                self._data_rejected = refused
                self._abort_txn()
                return
            self._when_opened("bdat", self._start_content)

        self._policy("BDAT", checked)

    def _on_chunk_end(self, event) -> None:
        if not event.last:
            if self._data_rejected is not None:
                reply = self._data_rejected
                self._respond("bdat", reply)
                return
            # Postfix reports the chunk's own size here, the message total at LAST.
            self._respond("bdat", replies.bdat_ok(event.size))
            return
        total = event.total
        self._finish_message("bdat", total, event.too_big, event.bare_lf,
                             lambda qid: replies.bdat_queued(total, qid))

    def _on_help(self, event) -> None:
        # Postfix has no HELP command; answer as it does.
        self.where = "UNKNOWN"
        self._respond("unknown", replies.UNRECOGNIZED)

    def _on_vrfy(self, event) -> None:
        self.where = "VRFY"
        self._junk()

        def checked(decision):
            refused = self._refused(decision, "vrfy")
            if refused is _HANGUP:
                return
            if refused is not None:
                self._log_reject("VRFY", refused, event.address)
                self._respond("vrfy", refused)
                return
            self._respond("vrfy", replies.vrfy_ok(event.argument))

        self._policy("VRFY", checked, recipient=event.address)

    def _on_etrn(self, event) -> None:
        self.where = "ETRN"
        self._junk()

        def checked(decision):
            refused = self._refused(decision, "etrn")
            if refused is _HANGUP:
                return
            if refused is not None:
                self._log_reject("ETRN", refused)
                self._respond("etrn", refused)
                return
            flush = self.service.flush
            if flush is None:  # no fast-flush service here: no domain is eligible
                flushed(FLUSH_STAT_DENY)
                return
            self._await(flush.send_site(event.domain), flushed, lambda exc: flushed(None))

        def flushed(status):
            # The fast-flush service's answer (fastpost.mail.flush_clnt), as Postfix's
            # smtpd reports it: started; the site is not eligible; anything else.
            if status == FLUSH_STAT_OK:
                self._respond("etrn", replies.ETRN_STARTED)
            elif status == FLUSH_STAT_DENY:
                log.warn("reject: ETRN %s... from %s", printable(event.domain), self.client.text)
                self._respond("etrn", replies.etrn_unavailable(event.domain))
            else:
                log.warn("ETRN %s... from %s: fast flush service failed: %s",
                         printable(event.domain), self.client.text,
                         printable(getattr(self.service.flush, "error", "") or str(status)))
                self._respond("etrn", replies.ETRN_FAILED)

        self._policy("ETRN", checked, etrn_domain=event.domain)

    def _on_starttls(self, event) -> None:
        self.where = "STARTTLS"
        if not self._limited("newtls", "starttls", lambda: self._starttls(event)):
            self._starttls(event)

    def _starttls(self, event) -> None:
        self._reset_transaction()
        self._count("starttls", True)
        self._out.append(self.conn.send(replies.START_TLS))
        coro = self.loop.start_tls(self.transport, self, self.service.tls.context,
                                   server_side=True,
                                   ssl_handshake_timeout=self.settings.starttls_timeout,
                                   ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT)

        def started(transport):
            self.transport = transport
            self.conn.tls_started()
            info = tlsmod.tls_info(transport.get_extra_info("ssl_object"), self.service.tls.digest)
            self.client.tls = info
            self.client.helo = None
            if self.service.limits is not None:
                ssl_object = transport.get_extra_info("ssl_object")
                self.service.limits.tls_established(
                    self.client, bool(ssl_object and ssl_object.session_reused), self.loop)
            self._refresh_auth()  # smtpd_tls_auth_only, TLS-only mechanisms
            if self.settings.tls_loglevel >= 1:
                log.info("Anonymous TLS connection established from %s: %s", self.client.text,
                         tlsmod.describe(info))

        def failed(exc):
            reason = ("lost connection" if isinstance(exc, (ConnectionError, EOFError))
                      else (str(exc) or type(exc).__name__))
            log.info("SSL_accept error from %s: %s", self.client.text, reason)
            log.info("lost connection after STARTTLS from %s", self.client.text)
            self.stats["starttls"][0] -= 1
            self._out.clear()
            self._closed = True
            if self.transport is not None:
                self.transport.abort()

        self._await(coro, started, failed, pause=True)

    def _on_auth(self, event) -> None:
        self.where = "AUTH"
        if not self._limited("auth", "auth", lambda: self._auth(event)):
            self._auth(event)

    def _auth(self, event) -> None:
        self._auth_step(self.service.authenticator.start(event.mechanism, event.initial, self.client),
                        event.mechanism)

    def _on_auth_response(self, event) -> None:
        state = self._auth_state
        self._auth_step(self.service.authenticator.step(state[1], event.data), state[0])

    def _auth_step(self, result, mechanism: str) -> None:
        def judged(step):
            kind, value, state = step
            if kind == "challenge":
                self._auth_state = (mechanism, state)
                self._out.append(self.conn.send(replies.auth_challenge(
                    base64.b64encode(value).decode("ascii"))))
                return
            self._auth_state = None
            if kind == "ok":
                self.client.sasl_method = mechanism
                self.client.sasl_username = value
                self._respond("auth", replies.AUTH_OK)
            else:
                log.warn("%s: SASL %s authentication failed: %s", self.client.text, mechanism,
                         printable(state) if isinstance(state, str) else "authentication failure")
                self._respond("auth", value or replies.AUTH_FAILED)

        if _is_awaitable(result):
            self._await(result, judged, lambda exc: judged(("fail", None, None)))
        else:
            judged(result)

    def _on_xclient(self, event) -> None:
        self.where = "XCLIENT"
        old = self.client
        new = ClientInfo(name=old.name, addr=old.addr, port=old.port,
                         reverse_name=old.reverse_name, server_addr=old.server_addr,
                         server_port=old.server_port, tls=old.tls, peer_addr=old.peer_addr,
                         name_status=old.name_status,
                         reverse_name_status=old.reverse_name_status)
        reverse_given = False
        for key, value in event.attributes:
            unavailable = value in ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
            status = (NAME_TEMP if value == "[TEMPUNAVAIL]" else NAME_PERM) if unavailable \
                else NAME_OK
            if key == "NAME":
                new.name = _UNKNOWN if unavailable else value
                new.name_status = status
                if not reverse_given:
                    new.reverse_name, new.reverse_name_status = new.name, status
            elif key == "REVERSE_NAME":
                new.reverse_name = _UNKNOWN if unavailable else value
                new.reverse_name_status = status
                reverse_given = True
            elif key == "ADDR":
                new.addr = _UNKNOWN if unavailable else value
            elif key == "PORT":
                new.port = _UNKNOWN if unavailable else value
            elif key == "PROTO":
                new.protocol = "SMTP" if unavailable else value
            elif key == "HELO":
                new.helo = None if unavailable else neuter_helo(value)
            elif key == "LOGIN":
                if not unavailable:
                    new.sasl_method, new.sasl_username = "XCLIENT", value
            elif key == "DESTADDR":
                new.server_addr = "" if unavailable else value
            elif key == "DESTPORT":
                new.server_port = "" if unavailable else value
        self._reset_transaction()
        self.client = new

        def checked(decision):
            # A new client: with smtpd_delay_reject = no its restrictions run now, and
            # a refusal replaces the new greeting as it would at connect.
            refused = self._refused(decision, "xclient")
            if refused is _HANGUP:
                return
            if refused is not None:
                if not self._skip_log:
                    log.info("NOQUEUE: reject: XCLIENT from %s: %s; proto=%s", new.text,
                             self._as_sent(refused), new.protocol)
                self._skip_log = False
                if decision.disconnect:
                    self._respond("xclient", refused, ok=False, close=True)
                    return
                self.conn.options = replace(self._core_options(), access_denied=Reply(
                    503, f"Error: access denied for {new.text}", "5.7.0"))
                self._respond("xclient", refused, ok=False)
                return
            # anvil: the new client is counted now (connection count and rate), as
            # Postfix does; the real client, allowed to send XCLIENT, was not.
            limits = self.service.limits
            check = limits.connect(new) if limits is not None else None
            if check is None:
                greet()
                return

            self._anvil_unknown = False

            def counted(result):
                reply, ident = result
                if self._anvil_ident is not None:
                    limits.disconnect(self._anvil_ident, self.loop)
                self._anvil_ident = ident
                if reply is not None:
                    self._respond("xclient", reply, ok=False, close=True)
                    return
                greet()

            self._await(check, counted, lambda exc: greet())

        def greet():
            # Postfix counts a successful XCLIENT as a command but not as a success.
            self._respond("xclient", self.service.greeting, ok=False)
            # The new identity decides what it may do (XFORWARD stays with the real client).
            self.conn.options = self._core_options()

        self._policy("XCLIENT", checked)

    def _on_xforward(self, event) -> None:
        self.where = "XFORWARD"
        for key, value in event.attributes:
            if value == "[UNAVAILABLE]":
                self.client.forwarded.pop(key, None)
            else:
                self.client.forwarded[key] = value
        self._respond("xforward", replies.OK)

    def _on_closed(self, event) -> None:
        if not self._closed:
            self._closed = True
            log.info("lost connection after %s from %s", self._where_text(), self.client.text)
            self._abort_txn()
            if self.transport is not None:
                self.transport.close()

    _handlers = {
        ev.Bdat: _on_bdat,
        ev.ChunkEnd: _on_chunk_end,
        ev.Help: _on_help,
        ev.Vrfy: _on_vrfy,
        ev.Etrn: _on_etrn,
        ev.StartTls: _on_starttls,
        ev.Auth: _on_auth,
        ev.AuthResponse: _on_auth_response,
        ev.Xclient: _on_xclient,
        ev.Xforward: _on_xforward,
        ev.ConnectionClosed: _on_closed,
    }



class SmtpdProtocol(SessionLogic, SessionCore, asyncio.BufferedProtocol):
    """The session of one client: SessionLogic over the compiled SessionCore."""

    # (a __dict__ for tests and for a skeleton that wraps connection_made/lost)
    __slots__ = _SLOTS + ("__dict__",)
    _handlers = {**SessionLogic._handlers, **CORE_HANDLERS}

    # The multi skeleton's client count (service.on_connect/on_disconnect, set when
    # smtpd runs under it with self_counting): here, instead of two closures per
    # connection wrapped around these by the skeleton.
    def connection_made(self, transport) -> None:
        counted = self.service.on_connect
        if counted is not None:
            counted()
        _core_made(self, transport)

    def connection_lost(self, exc) -> None:
        try:
            _core_lost(self, exc)
        finally:
            gone = self.service.on_disconnect
            if gone is not None:
                gone()


_core_made = SessionCore.connection_made
_core_lost = SessionCore.connection_lost

STATS_ORDER_UPPER = frozenset(s.upper() for s in STATS_ORDER)

#: _refused()'s answer after an access(5) HANGUP (the core's, the same object).
_HANGUP = HANGUP


def _escape(text: str) -> str:
    """Show control characters as C escapes (\\r\\n), as Postfix's log line does."""
    out = []
    for ch in text:
        if ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):03o}")
    return "".join(out)


