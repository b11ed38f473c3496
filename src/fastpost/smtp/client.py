"""ClientConnection: the sans-IO SMTP/LMTP client core for the delivery agents.

Postfix counterpart: src/smtp/smtp_proto.c (smtp_helo, smtp_start_tls,
smtp_loop: the pipelined MAIL/RCPT/DATA state machine, LMTP per-recipient replies)
and smtp_chat.c (reading multi-line replies).

    c = ClientConnection(ClientOptions(helo_name="mx.example", lmtp=False))
    c.receive_data(data)            # bytes from the server; b"" = closed
    ev = c.next_event()             # Response / TransactionResult / ConnectionClosed / NEED_DATA
    out = c.data_to_send()          # bytes to write now (may be b"")

    c.hello()                       # EHLO (LHLO for LMTP); after a 5xx, c.helo()
    c.starttls(); ...; c.tls_started(); c.hello()
    c.mail(sender, [Recipient(...), ...], size=..., body=..., ...)
    # after Response("DATA", 354) (or at once with use_bdat):
    c.send_content(chunk); ...; c.end_content()
    c.rset(); c.quit()

What the core does for the caller:

* EHLO keywords are parsed into ``extensions`` (upper-case keyword -> parameter
  text); PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN, CHUNKING, STARTTLS, AUTH are
  looked at. With PIPELINING, MAIL, every RCPT and DATA go out in one write
  (RFC 2920); without it, each command waits for the previous reply.
* ESMTP parameters are only sent when the server offers them: SIZE=, BODY= (if
  8BITMIME), SMTPUTF8, RET=/ENVID=/NOTIFY=/ORCPT= (if DSN).
* Content is dot-stuffed and bare LF becomes CR LF; BDAT is used only when asked
  and the server offers CHUNKING and PIPELINING.
* Results come per recipient (TransactionResult): an RCPT rejection, a MAIL or DATA
  rejection applied to every recipient, or the final reply - in LMTP one reply per
  accepted recipient after the end of content (RFC 2033 4.2).
* A 421 at any point ends the session: every outstanding command gets that reply
  and the connection is closed (Response("UNSOLICITED") when nothing was pending).
* A message that needs SMTPUTF8 when the server does not offer it, or that is larger
  than the server's SIZE, is not sent at all: mail() answers at once with a
  TransactionResult (5.6.7 / 5.3.4) for every recipient.
* When every recipient was refused, DATA is not sent (or, when it was pipelined
  and the server still answered 354, an empty message is ended at once), and the
  next mail() starts with RSET.

Parameters: the caller passes the HELO name and the reply line bound
(line_length_limit); it checks the message against ``max_size`` itself.

Diagnostics: RemoteProtocolError (fatal) for a malformed server reply or a reply
nothing was waiting for; LocalProtocolError for calls out of order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastpost.smtp import events as ev
from fastpost.smtp import grammar
from fastpost.smtp.errors import LocalProtocolError, RemoteProtocolError
from fastpost.smtp.events import NEED_DATA
from fastpost.smtp.lines import LineReader
from fastpost.smtp.replies import Reply

__all__ = ["ClientConnection", "ClientOptions", "Recipient", "parse_reply_line"]

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
#: A reply longer than this many lines is treated as garbage.
MAX_REPLY_LINES = 1000

_UNINTELLIGIBLE = Reply(451, "Error: server replied with unintelligible text", "4.5.0")
SMTPUTF8_NOT_OFFERED = Reply(554, "SMTPUTF8 is required, but was not offered by the server",
                             "5.6.7")


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient with its DSN parameters (RFC 3461)."""

    address: str
    notify: tuple[str, ...] | None = None  # ("SUCCESS", "DELAY") or ("NEVER",)
    orcpt: str | None = None  # "rfc822;addr" (decoded); encoded as xtext on the wire


@dataclass
class ClientOptions:
    """Settings of one client connection."""

    helo_name: str = "localhost"  # smtp_helo_name / lmtp_lhlo_name
    lmtp: bool = False  # speak LMTP (LHLO, per-recipient replies)
    line_length_limit: int = 2048  # longest reply line kept whole


def parse_reply_line(line: bytes) -> tuple[int, bool, str] | None:
    """Return (code, is_last, text) of one reply line, or None when malformed."""
    if len(line) < 3 or not line[:3].isdigit():
        return None
    code = int(line[:3])
    if not 200 <= code <= 599:
        return None
    if len(line) == 3:
        return code, True, ""
    sep = line[3:4]
    if sep not in (b" ", b"-"):
        return None
    return code, sep == b" ", line[4:].decode("utf-8", "surrogateescape")


def _make_reply(code: int, texts: list[str]) -> Reply:
    """Build a Reply, splitting off an enhanced status code the server sent."""
    m = _ENHANCED.match(texts[0]) if texts else None
    if m and m.group(1) == str(code)[0]:
        enhanced = f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        stripped = []
        for t in texts:
            if t.startswith(enhanced):
                t = t[len(enhanced):].lstrip(" ")
            stripped.append(t)
        return Reply(code, stripped, enhanced)
    return Reply(code, texts)


class _Transaction:
    """What the client remembers about the mail transaction in progress."""

    def __init__(self, recipients, use_bdat: bool):
        self.recipients = list(recipients)
        self.results: list[Reply | None] = [None] * len(self.recipients)
        self.mail_reply: Reply | None = None
        self.accepted: list[int] = []  # indexes of accepted recipients, in order
        self.use_bdat = use_bdat
        self.data_sent = False  # DATA (or the first BDAT) went out
        self.content_started = False
        self.lmtp_waiting: list[int] = []  # LMTP: recipients whose final reply is due
        self.failed: Reply | None = None  # a reply that failed the whole message
        self.verify_only = False  # address verification: stop after the RCPT replies


class ClientConnection:
    """The client side of one SMTP or LMTP session, without I/O (module docstring)."""

    def __init__(self, options: ClientOptions | None = None):
        self.options = options or ClientOptions()
        self._reader = LineReader(self.options.line_length_limit)
        self._out: list[bytes] = []
        self._pending: list[tuple] = [("GREETING",)]  # commands awaiting replies, FIFO
        self._later: list[tuple[bytes, tuple]] = []  # commands held back (no PIPELINING)
        self._lines: list[str] = []  # lines of a multi-line reply being read
        self._line_code = 0
        self._events: list[ev.Event] = []
        self._eof = False
        self._closed_sent = False
        self.closed = False
        self.esmtp = False
        self.extensions: dict[str, str] = {}
        self.tls = False
        self._txn: _Transaction | None = None
        self._needs_rset = False
        self._bol = True  # content: the next byte starts a line
        self._last_cr = False  # content: the last byte sent was CR

    # ---------------------------------------------------------------- properties

    @property
    def pipelining(self) -> bool:
        """True when the server offered PIPELINING."""
        return "PIPELINING" in self.extensions

    @property
    def max_size(self) -> int | None:
        """The server's SIZE limit (None when it announced none)."""
        value = self.extensions.get("SIZE", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    def offers(self, keyword: str) -> bool:
        """True when the server announced ``keyword`` in its EHLO reply."""
        return keyword.upper() in self.extensions

    # ---------------------------------------------------------------- bytes in/out

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes the caller must write now."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data) -> None:
        """Add bytes from the server; b"" means it closed the connection."""
        if not data:
            self._eof = True
            return
        self._reader.feed(data)

    def next_event(self):
        """Return the next event or NEED_DATA; raise RemoteProtocolError on garbage."""
        while not self._events:
            got = self._reader.read_line()
            if got is None:
                if self._eof and not self._closed_sent:
                    self._closed_sent = True
                    self.closed = True
                    return ev.ConnectionClosed()
                return NEED_DATA
            self._line(got[0])
        return self._events.pop(0)

    # ---------------------------------------------------------------- commands

    def _queue(self, line: bytes, pending: tuple, *, hold: bool = False) -> None:
        if self.closed:
            raise LocalProtocolError("the connection is closed")
        if hold:
            self._later.append((line, pending))
        else:
            self._out.append(line)
            self._pending.append(pending)

    def _release_one(self) -> None:
        """Send the next held-back command (the previous reply arrived)."""
        if self._later and not self._pending:
            line, pending = self._later.pop(0)
            self._out.append(line)
            self._pending.append(pending)

    def hello(self) -> None:
        """Send EHLO (LHLO in LMTP mode)."""
        verb = "LHLO" if self.options.lmtp else "EHLO"
        self._queue(f"{verb} {self.options.helo_name}\r\n".encode("utf-8", "surrogateescape"), (verb,))

    def helo(self) -> None:
        """Send HELO (the fallback after EHLO was refused; not in LMTP)."""
        if self.options.lmtp:
            raise LocalProtocolError("LMTP has no HELO")
        self._queue(f"HELO {self.options.helo_name}\r\n".encode("utf-8", "surrogateescape"), ("HELO",))

    def starttls(self) -> None:
        """Send STARTTLS; after a 220 the caller runs the handshake."""
        self._queue(b"STARTTLS\r\n", ("STARTTLS",))

    def tls_started(self) -> None:
        """The handshake succeeded: forget the EHLO reply (send hello() again)."""
        self.tls = True
        self.esmtp = False
        self.extensions = {}

    def rset(self) -> None:
        """Send RSET."""
        self._needs_rset = False
        self._queue(b"RSET\r\n", ("RSET",))

    def noop(self) -> None:
        """Send NOOP."""
        self._queue(b"NOOP\r\n", ("NOOP",))

    def quit(self) -> None:
        """Send QUIT."""
        self._queue(b"QUIT\r\n", ("QUIT",))

    def mail(self, sender: str, recipients, *, size: int | None = None,
             body: str | None = None, smtputf8: bool = False, ret: str | None = None,
             envid: str | None = None, use_bdat: bool = False,
             verify_only: bool = False) -> None:
        """Start a transaction: MAIL, every RCPT and (unless BDAT or ``verify_only``) DATA.

        ``verify_only`` (address verification probes): no DATA; the transaction ends
        with the RCPT replies (each recipient's own reply, 2xx included) and the
        server's open transaction is RSET before the connection is used again."""
        if self._txn is not None:
            raise LocalProtocolError("a transaction is already in progress")
        recipients = [r if isinstance(r, Recipient) else Recipient(r) for r in recipients]
        if not recipients:
            raise LocalProtocolError("mail() needs at least one recipient")
        use_bdat = use_bdat and self.offers("CHUNKING") and self.pipelining
        refusal = None
        if smtputf8 and self.esmtp and not self.offers("SMTPUTF8"):
            refusal = SMTPUTF8_NOT_OFFERED
        elif size is not None and self.max_size is not None and size > self.max_size:
            refusal = Reply(552, f"Message size {size} exceeds size limit {self.max_size} "
                                 f"of the server", "5.3.4")
        if refusal is not None:
            # Nothing is sent: the message cannot go to this server (Postfix's smtp
            # bounces it the same way, without trying).
            self._events.append(ev.TransactionResult(
                tuple((r.address, refusal) for r in recipients), False))
            return
        if self._needs_rset:
            self.rset()
        params = []
        if size is not None and self.offers("SIZE"):
            params.append(f"SIZE={size}")
        if body and body != "7BIT" and (self.offers("8BITMIME") or body == "BINARYMIME"):
            params.append(f"BODY={body}")
        if smtputf8 and self.offers("SMTPUTF8"):
            params.append("SMTPUTF8")
        dsn = self.offers("DSN")
        if dsn and ret:
            params.append(f"RET={ret}")
        if dsn and envid:
            params.append(f"ENVID={grammar.xtext_encode(envid)}")
        self._txn = txn = _Transaction(recipients, use_bdat)
        txn.verify_only = verify_only
        hold = not self.pipelining
        line = f"MAIL FROM:<{sender}>" + "".join(" " + p for p in params) + "\r\n"
        self._queue(line.encode("utf-8", "surrogateescape"), ("MAIL",))
        for i, rcpt in enumerate(recipients):
            rparams = []
            if dsn and rcpt.notify:
                rparams.append("NOTIFY=" + ",".join(rcpt.notify))
            if dsn and rcpt.orcpt:
                kind, _, addr = rcpt.orcpt.partition(";")
                rparams.append(f"ORCPT={kind};{grammar.xtext_encode(addr)}")
            rline = f"RCPT TO:<{rcpt.address}>" + "".join(" " + p for p in rparams) + "\r\n"
            self._queue(rline.encode("utf-8", "surrogateescape"), ("RCPT", i), hold=hold)
        if not use_bdat and not verify_only:
            self._queue(b"DATA\r\n", ("DATA",), hold=hold)
            if not hold:
                txn.data_sent = True
        self._bol = True
        self._last_cr = False

    def _stuff(self, data: bytes) -> bytes:
        """Return content with bare LF made CR LF and (DATA) leading dots doubled."""
        dot = not self._txn.use_bdat
        out = []
        if self._last_cr and data[:1] == b"\n":
            # The CR of this CR LF went out with the previous piece.
            out.append(b"\n")
            data = data[1:]
            self._bol = True
            self._last_cr = False
        if not data:
            return b"".join(out)
        segments = data.split(b"\n")
        last = len(segments) - 1
        for k, seg in enumerate(segments):
            if dot and self._bol and seg[:1] == b".":
                out.append(b".")  # RFC 5321 4.5.2 transparency
            if k < last:
                out.append(seg + b"\n" if seg[-1:] == b"\r" else seg + b"\r\n")
                self._bol = True
            elif seg:
                out.append(seg)
                self._bol = False
        self._last_cr = data[-1:] == b"\r"
        return b"".join(out)

    def send_content(self, data: bytes) -> None:
        """Send message content (after the 354, or at once when BDAT is used)."""
        txn = self._txn
        if txn is None or (not txn.use_bdat and not txn.content_started):
            raise LocalProtocolError("send_content() before the server's 354")
        if txn.failed is not None:
            return  # the message was refused; drop the content
        out = self._stuff(bytes(data))
        if not out:
            return
        if txn.use_bdat:
            self._queue(b"BDAT %d\r\n" % len(out) + out, ("BDAT",))
            txn.data_sent = True
        else:
            self._out.append(out)

    def end_content(self) -> None:
        """End the message (CR LF if needed, then "." - or BDAT 0 LAST)."""
        txn = self._txn
        if txn is None or (not txn.use_bdat and not txn.content_started):
            raise LocalProtocolError("end_content() before the server's 354")
        if txn.failed is not None and not txn.use_bdat:
            return
        tail = b"" if self._bol else (b"\n" if self._last_cr else b"\r\n")
        if txn.use_bdat:
            self._queue(b"BDAT %d LAST\r\n" % len(tail) + tail, ("DOT",))
            txn.data_sent = True
        else:
            self._queue(tail + b".\r\n", ("DOT",))
        if self.options.lmtp:
            # RFC 2033 4.2: one reply per accepted recipient, in RCPT order.
            txn.lmtp_waiting = list(txn.accepted)
            for _ in range(len(txn.accepted) - 1):
                self._pending.append(("DOT",))

    # ---------------------------------------------------------------- replies

    def _line(self, line: bytes) -> None:
        parsed = parse_reply_line(line)
        if parsed is None or (self._lines and parsed[0] != self._line_code):
            self._garbage()
        code, last, text = parsed
        self._line_code = code
        self._lines.append(text)
        if len(self._lines) > MAX_REPLY_LINES:
            self._garbage()
        if not last:
            return
        reply = _make_reply(code, self._lines)
        self._lines = []
        self._reply(reply)

    def _garbage(self):
        self.closed = True
        raise RemoteProtocolError(_UNINTELLIGIBLE, "REPLY", fatal=True)

    def _reply(self, reply: Reply) -> None:
        if not self._pending:
            if reply.code == 421:
                self._events.append(ev.Response("UNSOLICITED", reply))
                self._service_closing(reply)
                return
            self._garbage()
        pending = self._pending.pop(0)
        command = pending[0]
        if reply.code == 421:
            self._answer(pending, reply)
            self._service_closing(reply)
            return
        self._answer(pending, reply)
        if not self.pipelining:
            self._release_one()

    def _service_closing(self, reply: Reply) -> None:
        """421: every outstanding command gets this reply; the session is over."""
        while self._pending:
            self._answer(self._pending.pop(0), reply, closing=True)
        while self._later:
            self._answer(self._later.pop(0)[1], reply, closing=True)
        self.closed = True
        self._finish_txn(force=reply)

    def _answer(self, pending: tuple, reply: Reply, closing: bool = False) -> None:
        command = pending[0]
        txn = self._txn
        if command in ("EHLO", "LHLO"):
            if reply.code == 250:
                self.esmtp = True
                self.extensions = {}
                for text in reply.lines[1:]:
                    keyword, _, param = text.partition(" ")
                    if keyword:
                        self.extensions[keyword.upper()] = param
            self._events.append(ev.Response(command, reply))
        elif command == "HELO":
            if reply.code == 250:
                self.esmtp = False
                self.extensions = {}
            self._events.append(ev.Response(command, reply))
        elif command == "MAIL":
            txn.mail_reply = reply
            if reply.code >= 400:
                txn.failed = reply
            self._events.append(ev.Response(command, reply))
        elif command == "RCPT":
            index = pending[1]
            rcpt = txn.recipients[index]
            if txn.failed is not None and txn.mail_reply is not None and txn.mail_reply.code >= 400:
                txn.results[index] = txn.mail_reply
            elif reply.code < 400:
                txn.accepted.append(index)
                if txn.verify_only:
                    txn.results[index] = reply
            else:
                txn.results[index] = reply
            self._events.append(ev.Response("RCPT", reply, rcpt.address))
            if not self.pipelining and not closing:
                self._after_rcpt(index)
            elif txn.verify_only and not closing:
                self._finish_txn()
        elif command == "DATA":
            self._events.append(ev.Response("DATA", reply))
            if closing:
                return
            if reply.code == 354:
                txn.content_started = True
                if not txn.accepted or txn.failed is not None:
                    # Pipelined DATA although nothing was accepted: end it empty.
                    self._queue(b".\r\n", ("DOT-IGNORE",))
            else:
                txn.failed = txn.failed or reply
                self._finish_txn()
        elif command == "BDAT":
            self._events.append(ev.Response("BDAT", reply))
            if reply.code >= 400 and txn is not None:
                txn.failed = txn.failed or reply
        elif command == "DOT":
            if txn is None:
                return
            if self.options.lmtp and txn.lmtp_waiting and txn.failed is None:
                index = txn.lmtp_waiting.pop(0)
                txn.results[index] = reply
                self._events.append(ev.Response("DOT", reply, txn.recipients[index].address))
                if not txn.lmtp_waiting:
                    self._finish_txn()
            else:
                self._events.append(ev.Response("DOT", reply))
                if txn.use_bdat and txn.failed is not None:
                    self._finish_txn()
                    return
                for index in txn.accepted:
                    txn.results[index] = reply
                self._finish_txn()
        elif command == "DOT-IGNORE":
            self._finish_txn()
        elif command in ("STARTTLS", "RSET", "NOOP", "QUIT", "GREETING"):
            self._events.append(ev.Response(command, reply))
            if command == "QUIT":
                self.closed = True

    def _after_rcpt(self, index: int) -> None:
        """Without PIPELINING: after the last RCPT reply, send DATA or give up."""
        txn = self._txn
        if index != len(txn.recipients) - 1:
            if txn.failed is not None:
                # MAIL failed: do not send the other RCPTs.
                for i in range(index + 1, len(txn.recipients)):
                    txn.results[i] = txn.failed
                self._later = [item for item in self._later if item[1][0] not in ("RCPT", "DATA")]
                self._finish_txn()
            return
        if txn.accepted and txn.failed is None and not txn.verify_only:
            if txn.use_bdat:
                return
            txn.data_sent = True  # the held DATA goes out by _release_one()
        else:
            self._later = [item for item in self._later if item[1][0] != "DATA"]
            self._finish_txn()

    def _finish_txn(self, force: Reply | None = None) -> None:
        """Emit the TransactionResult once every recipient has its final reply."""
        txn = self._txn
        if txn is None:
            return
        if force is None:
            if any(p[0] in ("RCPT", "DATA", "DOT", "BDAT", "DOT-IGNORE") for p in self._pending):
                return
        fail = force or txn.failed
        results = []
        for i, rcpt in enumerate(txn.recipients):
            reply = txn.results[i]
            if reply is None or (force is not None and reply.code < 400):
                reply = fail if fail is not None else reply
            if reply is None:
                reply = txn.mail_reply if txn.mail_reply is not None and txn.mail_reply.code >= 400 else _UNINTELLIGIBLE
            results.append((rcpt.address, reply))
        delivered = force is None and any(r.code < 400 for _, r in results)
        self._events.append(ev.TransactionResult(tuple(results), delivered))
        self._txn = None
        if (not delivered or txn.verify_only) and not self.closed:
            self._needs_rset = True
