"""One SMTP/LMTP client session: the sans-IO ClientConnection on an asyncio stream.

Postfix counterpart: src/smtp/smtp_connect.c (connecting), smtp_proto.c (the
greeting, EHLO/HELO, STARTTLS, the pipelined transaction), smtp_chat.c (reply
timeouts), smtp_trouble.c (the texts of failures).

    sess = await Session.connect(settings, target, tls)     # SiteError on failure
    await sess.handshake()                                  # greeting, EHLO, STARTTLS
    outcome = await sess.transaction(sender, rcpts, wire, size=..., ...)   # wire.wire_text()
    await sess.quit()

Every wait for a reply is bounded by the stage's Postfix timeout (smtp_helo_timeout,
smtp_mail_timeout, ... smtp_data_done_timeout); writes wait for the transport's
buffer to drain under the same bound. A failure of the *session* (refused or
timed-out connect, a lost connection, a time-out, a 421, a greeting or HELO
refusal, a TLS failure) raises SiteError with Postfix's dsn and text:

    connect to mx.example.com[192.0.2.1]:25: Connection refused          4.4.1
    lost connection with mx.example.com[192.0.2.1] while sending RCPT TO 4.4.2
    conversation with mx.example.com[192.0.2.1] timed out while ...      4.4.2
    host mx.example.com[192.0.2.1] refused to talk to me: 554 ...        (reply's)
    host mx.example.com[192.0.2.1] said: 421 ... (in reply to MAIL FROM command)

Per-recipient outcomes of a transaction that ran (RCPT rejections, the final
reply; a MAIL or DATA rejection applies to every recipient) are returned, not
raised: Outcome.replies holds (reply, command) per recipient in RCPT order.

Parameters: the Settings timeouts, smtp_skip_5xx_greeting, smtp_always_send_ehlo /
smtp_never_send_ehlo, smtp_discard_ehlo_keywords, smtp_bind_address(6),
line_length_limit.
Diagnostics: SiteError (above); nothing else escapes (OSError and protocol errors
become SiteErrors).
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import ssl
import time

from fastpost.smtp import events as ev
from fastpost.smtp.client import ClientConnection, ClientOptions
from fastpost.smtp.errors import LocalProtocolError, RemoteProtocolError
from fastpost.smtp.events import NEED_DATA
from fastpost.util import log

__all__ = ["Session", "SiteError", "Outcome", "WireClient", "reply_dsn", "COMMAND_TEXT"]

#: What the client was doing, as Postfix says it after "while".
STAGE_TEXT = {
    "connect": "connecting",
    "greeting": "receiving the initial server greeting",
    "helo": "performing the EHLO handshake",
    "lhlo": "performing the LHLO handshake",
    "starttls": "performing the STARTTLS handshake",
    "auth": "performing the SASL authentication",
    "xforward": "sending XFORWARD",
    "mail": "sending MAIL FROM",
    "rcpt": "sending RCPT TO",
    "data": "sending DATA command",
    "body": "sending message body",
    "dot": "sending end of data -- message may be sent more than once",
    "rset": "sending RSET",
    "quit": "sending QUIT",
}

#: The command a reply answered, as Postfix names it after "in reply to".
COMMAND_TEXT = {
    "GREETING": "initial server greeting", "EHLO": "EHLO command", "HELO": "HELO command",
    "LHLO": "LHLO command", "STARTTLS": "STARTTLS command", "MAIL": "MAIL FROM command",
    "RCPT": "RCPT TO command", "DATA": "DATA command", "DOT": "end of DATA command",
    "BDAT": "end of DATA command", "RSET": "RSET command", "QUIT": "QUIT command",
    "AUTH": "AUTH command", "XFORWARD": "XFORWARD command",
    "UNSOLICITED": "initial server greeting",
}

READ_SIZE = 65536


class TlsOffer:
    """The TLS session a connection offers when it starts TLS (set by tls.py).

    A connection's box is put in a context variable before the connection is made, so
    that the event loop's callbacks for that connection see it: asyncio builds the SSL
    object in the starting task, uvloop in a callback run in the context the
    connection was created in (fastpost.daemons.smtp.tls reads it in wrap_bio()).
    """

    __slots__ = ("session",)

    def __init__(self):
        self.session = None


TLS_OFFER: contextvars.ContextVar = contextvars.ContextVar("fastpost_smtp_tls_offer",
                                                          default=None)


def reply_dsn(reply) -> str:
    """The enhanced status code of a reply, or X.0.0 from its class."""
    if reply.enhanced:
        return reply.enhanced
    return f"{str(reply.code)[0]}.0.0"


class WireClient(ClientConnection):
    """The SMTP core plus content that is already in wire form (dot-stuffed, folded).

    The agent turns the whole message into DATA bytes in one pass
    (fastpost.daemons.smtp.wire); send_wire() queues them as they are, where
    send_content() would stuff them again. end_content() works as for send_content().
    """

    def auth_line(self, line: str) -> None:
        """Send one line of a SASL exchange (AUTH ..., a response, or * to cancel)."""
        self._queue(line.encode("ascii") + b"\r\n", ("AUTH",))

    def xforward(self, words: list[str]) -> None:
        """Send ``XFORWARD NAME=value ...`` (values already xtext)."""
        self._queue(("XFORWARD " + " ".join(words)).encode("ascii") + b"\r\n", ("XFORWARD",))

    def _answer(self, pending: tuple, reply, closing: bool = False) -> None:
        if pending[0] in ("AUTH", "XFORWARD"):
            self._events.append(ev.Response(pending[0], reply))
            return
        super()._answer(pending, reply, closing)

    def send_wire(self, data: bytes) -> None:
        txn = self._txn
        if txn is None or txn.use_bdat or not txn.content_started:
            raise LocalProtocolError("send_wire() before the server's 354")
        if txn.failed is not None or not data:
            return
        self._out.append(data)
        self._bol = data.endswith(b"\n")
        self._last_cr = data.endswith(b"\r")


class SiteError(Exception):
    """A failure of the session or server, not of particular recipients."""

    def __init__(self, dsn: str, text: str, *, stage: str = "", reply=None,
                 connected: bool = False):
        super().__init__(text)
        self.dsn = dsn
        self.text = text
        self.stage = stage
        self.reply = reply
        self.connected = connected  # a session existed (relay= names it)

    @property
    def soft(self) -> bool:
        return self.dsn.startswith("4")


class Outcome:
    """The result of one transaction (module docstring)."""

    __slots__ = ("replies", "delivered")

    def __init__(self, replies: list, delivered: bool):
        self.replies = replies  # [(Reply, command)] in recipient order
        self.delivered = delivered


class Session:
    """One connection to one server (module docstring)."""

    def __init__(self, settings, target, reader, writer, started: float):
        self.s = settings
        self.target = target
        self.reader = reader
        self.writer = writer
        self.conn = WireClient(ClientOptions(
            helo_name=settings.helo_name, lmtp=settings.lmtp,
            line_length_limit=max(settings.reply_line_limit, 512)))
        self.created = time.monotonic()
        self.connect_time = started  # wall clock when the connect began
        self.ready_time = started  # wall clock when the session was usable
        self.uses = 0  # transactions attempted on this connection
        self.tls = None  # fastpost.daemons.smtp.tls.TlsInfo after STARTTLS
        self.broken = False
        self.idle_handle = None  # connection cache expiry timer
        self.cache_keys: tuple = ()  # where the connection cache holds it
        self.tls_offer = TlsOffer()  # replaced by connect(): the box its callbacks see
        self.sasl_username = ""  # after a SASL login (fastpost.daemons.smtp.sasl)

    # -- set-up ----------------------------------------------------------------------

    @classmethod
    async def connect(cls, settings, target) -> "Session":
        """Open the connection; SiteError naming host[addr]:port when that fails."""
        started = time.time()
        where = f"connect to {target.relay}"
        offer = TlsOffer()
        TLS_OFFER.set(offer)
        try:
            if target.unix:
                coro = asyncio.open_unix_connection(target.addr, limit=READ_SIZE)
            else:
                local = None
                bind = settings.bind_address6 if ":" in target.addr else settings.bind_address
                if bind:
                    local = (bind, 0)
                coro = asyncio.open_connection(target.addr, target.port, limit=READ_SIZE,
                                               local_addr=local)
            reader, writer = await asyncio.wait_for(coro, settings.connect_timeout or None)
        except (asyncio.TimeoutError, TimeoutError):
            raise SiteError("4.4.1", f"{where}: Connection timed out", stage="connect") from None
        except OSError as exc:
            text = exc.strerror or str(exc) or type(exc).__name__
            raise SiteError("4.4.1", f"{where}: {text}", stage="connect") from None
        sock = writer.get_extra_info("socket")
        if sock is not None and not target.unix:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        sess = cls(settings, target, reader, writer, started)
        sess.tls_offer = offer
        return sess

    @property
    def name_addr(self) -> str:
        return self.target.name_addr

    @property
    def relay(self) -> str:
        return self.target.relay

    @property
    def usable(self) -> bool:
        """True while the connection can carry another transaction."""
        return not (self.broken or self.conn.closed or self.reader.at_eof()
                    or self.writer.is_closing())

    def _lost(self, stage: str) -> SiteError:
        self.broken = True
        return SiteError("4.4.2", f"lost connection with {self.name_addr} while "
                         f"{STAGE_TEXT.get(stage, stage)}", stage=stage, connected=True)

    def _said(self, reply, command: str, *, soften: bool = False) -> SiteError:
        dsn = reply_dsn(reply)
        if soften and dsn.startswith("5"):
            dsn = "4" + dsn[1:]
        return SiteError(dsn, f"host {self.name_addr} said: {reply} (in reply to "
                         f"{COMMAND_TEXT.get(command, command)})", reply=reply,
                         connected=True)

    # -- I/O -------------------------------------------------------------------------

    async def _flush(self, stage: str) -> None:
        out = self.conn.data_to_send()
        if not out:
            return
        try:
            writer = self.writer
            writer.write(out)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.s.timeout_for(
                        stage if stage in ("greeting", "helo", "lhlo", "starttls", "mail", "rcpt",
                                           "data", "body", "dot", "rset", "quit") else "helo") or None):
                    await writer.drain()
            else:
                # Nothing left in the transport's buffer, so writing is not paused and
                # drain() cannot wait: no time-out to arm (it still raises what it raises
                # for a lost connection).
                await writer.drain()
        except (asyncio.TimeoutError, TimeoutError):
            self.broken = True
            raise SiteError("4.4.2", f"conversation with {self.name_addr} timed out while "
                            f"{STAGE_TEXT.get(stage, stage)}", stage=stage,
                            connected=True) from None
        except OSError:
            raise self._lost(stage) from None

    async def next_event(self, stage: str):
        """Flush, then return the next event; SiteError on time-out, loss or garbage."""
        await self._flush(stage)
        timeout = self.s.timeout_for(stage) or None
        while True:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                self.broken = True
                reply = exc.args[0] if exc.args else None
                raise SiteError("4.5.0", f"host {self.name_addr} said: {reply} (while "
                                f"{STAGE_TEXT.get(stage, stage)})", stage=stage,
                                connected=True) from None
            if event is not NEED_DATA:
                if isinstance(event, ev.ConnectionClosed):
                    raise self._lost(stage)
                return event
            try:
                # asyncio.timeout, not wait_for: no task per read
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(READ_SIZE)
            except (asyncio.TimeoutError, TimeoutError):
                self.broken = True
                raise SiteError("4.4.2", f"conversation with {self.name_addr} timed out "
                                f"while {STAGE_TEXT.get(stage, stage)}", stage=stage,
                                connected=True) from None
            except OSError:
                raise self._lost(stage) from None
            self.conn.receive_data(data)

    async def _response(self, stage: str, command: str):
        """The reply to ``command`` (an unsolicited 421 ends the session)."""
        while True:
            event = await self.next_event(stage)
            if isinstance(event, ev.Response):
                if event.command == "UNSOLICITED":
                    self.broken = True
                    raise self._said(event.reply, command)
                if event.command == command:
                    return event.reply

    # -- handshake -------------------------------------------------------------------

    async def handshake(self, tls=None) -> None:
        """Greeting, EHLO (HELO fallback), STARTTLS per ``tls`` (a tls.Policy)."""
        reply = await self._response("greeting", "GREETING")
        if reply.code != 220:
            self.broken = True
            dsn = reply_dsn(reply)
            if dsn.startswith("5") and self.s.skip_5xx_greeting:
                dsn = "4" + dsn[1:]
            raise SiteError(dsn, f"host {self.name_addr} refused to talk to me: {reply}",
                            reply=reply, connected=True, stage="greeting")
        await self._hello(esmtp_banner="ESMTP" in reply.text.upper())
        if tls is not None:
            await tls.negotiate(self)
        self.ready_time = time.time()

    async def _hello(self, esmtp_banner: bool = True) -> None:
        stage = "lhlo" if self.s.lmtp else "helo"
        if self.s.never_send_ehlo or not (self.s.always_send_ehlo or esmtp_banner):
            self.conn.helo()
            reply = await self._response(stage, "HELO")
            command = "HELO"
        else:
            command = "LHLO" if self.s.lmtp else "EHLO"
            self.conn.hello()
            reply = await self._response(stage, command)
            if reply.code >= 500 and not self.s.lmtp:
                self.conn.helo()
                command = "HELO"
                reply = await self._response(stage, "HELO")
        if reply.code != 250:
            self.broken = True
            raise self._said(reply, command)
        for keyword in self.s.discard_ehlo_keywords:
            self.conn.extensions.pop(keyword, None)

    async def auth_step(self, line: str):
        """Send one SASL line and return the server's reply (fastpost.daemons.smtp.sasl)."""
        self.conn.auth_line(line)
        return await self._response("auth", "AUTH")

    async def xforward(self, groups: list[list[str]]) -> None:
        """XFORWARD, one command per non-empty group; SiteError unless each gets 250."""
        for words in groups:
            if not words:
                continue
            self.conn.xforward(words)
            reply = await self._response("xforward", "XFORWARD")
            if reply.code != 250:
                raise self._said(reply, "XFORWARD")

    async def starttls(self, context, server_hostname: str | None) -> None:
        """STARTTLS and the handshake; SiteError when refused or failed."""
        self.conn.starttls()
        reply = await self._response("starttls", "STARTTLS")
        if reply.code != 220:
            raise self._said(reply, "STARTTLS", soften=True)
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=server_hostname or None),
                self.s.starttls_timeout or None)
        except (asyncio.TimeoutError, TimeoutError):
            self.broken = True
            raise SiteError("4.4.2", f"conversation with {self.name_addr} timed out while "
                            f"{STAGE_TEXT['starttls']}", stage="starttls",
                            connected=True) from None
        except (OSError, ValueError) as exc:
            self.broken = True
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) \
                or str(exc) or type(exc).__name__
            err = SiteError("4.7.5", f"TLS handshake with {self.name_addr} failed: {reason}",
                            stage="starttls", connected=True)
            err.verify_failed = isinstance(exc, ssl.SSLCertVerificationError)
            err.reason = reason
            raise err from None
        self.conn.tls_started()
        await self._hello()

    # -- mail ------------------------------------------------------------------------

    async def transaction(self, sender: str, recipients, content: bytes, *,
                          size: int | None = None, body: str | None = None,
                          smtputf8: bool = False, ret: str | None = None,
                          envid: str | None = None, verify_only: bool = False) -> Outcome:
        """Send one message (``content`` in wire form: fastpost.daemons.smtp.wire);
        per-recipient replies, or SiteError if the session broke. ``verify_only``
        (address verification): MAIL and RCPT only, the RCPT replies are the outcome."""
        self.uses += 1
        conn = self.conn
        conn.mail(sender, recipients, size=size, body=body, smtputf8=smtputf8, ret=ret,
                  envid=envid, verify_only=verify_only)
        commands: dict[int, str] = {}  # id(reply) -> the command it answered
        keep = []  # the replies, so that their ids stay unique
        stage = "mail"
        n = len(recipients)
        rcpt_seen = 0
        while True:
            event = await self.next_event(stage)
            if isinstance(event, ev.TransactionResult):
                replies = []
                for _addr, reply in event.results:
                    replies.append((reply, commands.get(id(reply))))  # None: not sent
                if conn.closed:
                    self.broken = True
                return Outcome(replies, event.delivered)
            if not isinstance(event, ev.Response):
                continue
            command = event.command
            keep.append(event.reply)
            # A 421 answers every outstanding command: it belongs to the first.
            commands.setdefault(id(event.reply), command)
            if event.reply.code == 421:
                self.broken = True
                raise self._said(event.reply, commands[id(event.reply)])
            if command == "MAIL":
                stage = "rcpt"
            elif command == "RCPT":
                rcpt_seen += 1
                if rcpt_seen >= n:
                    stage = "data"
            elif command == "DATA" and event.reply.code == 354:
                stage = "body"
                txn = conn._txn
                if txn is not None and txn.failed is None and txn.accepted:
                    conn.send_wire(content)
                    conn.end_content()
                    await self._flush("body")
                stage = "dot"
            elif command == "UNSOLICITED":
                stage = "mail"

    async def rset(self) -> None:
        """RSET before reuse after a failed transaction; SiteError when that fails."""
        self.conn.rset()
        reply = await self._response("rset", "RSET")
        if reply.code != 250:
            self.broken = True
            raise self._said(reply, "RSET")

    async def quit(self) -> None:
        """Say QUIT (unless the session broke) and close; never raises."""
        try:
            if self.usable:
                self.conn.quit()
                if self.s.skip_quit_response:
                    await self._flush("quit")
                else:
                    await self._response("quit", "QUIT")
        except SiteError:
            pass
        except Exception as exc:  # noqa: BLE001 - closing must not fail a delivery
            log.debug("quit %s: %s", self.name_addr, exc)
        self.close()

    def close(self) -> None:
        self.broken = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001
            pass
