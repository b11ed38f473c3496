"""CleanupSink: smtpd hands every accepted message to the cleanup service.

Postfix counterpart: smtpd's conversation with cleanup(8) in src/smtpd/smtpd.c
(mail_open_stream at the first accepted recipient, the attributes and records it
sends, the X-Mailbox-Line and blank-line fix-ups of the first content line, and
mail_stream_finish waiting for cleanup's status), over fastpost's multiplexed cleanup
protocol (fastpost.mail.cleanup_proto, fastpost.mail.cleanup_clnt): every session of
an smtpd worker shares one persistent connection to cleanup.

    sink = CleanupSink.from_config(cfg)       # in post_init (the endpoint is relative)
    txn = sink.begin(client, envelope)        # at the first accepted RCPT
    queue_id = await txn.id_pending           # cleanup's answer to OPEN (before DATA)
    txn.add_recipient(rcpt); txn.write(data); queue_id = await txn.finish()

``250 ... queued as ID`` follows from finish() only after cleanup answered, and
cleanup answers only after the fdatasync that covers the message.

What smtpd decides and cleanup records: the client attributes (log_* from XFORWARD
when a content filter sent them), rewrite_context (``local`` when the client matches
local_header_rewrite_clients: permit_inet_interfaces, permit_mynetworks,
permit_sasl_authenticated, permit_tls_clientcerts, permit_tls_all_clientcerts,
check_address_map type:table or a bare type:table), content_filter, the
receive_override_options flags, DSN ENVID/RET/NOTIFY/ORCPT, BODY= as the encoding, and
the access policy's HOLD / DISCARD / FILTER / REDIRECT / BCC (Envelope fields, when
the policy sets them). The first line the client sends is fixed up as Postfix's smtpd
does: a ``From `` line (after any ``>``) becomes ``X-Mailbox-Line: From ...``, and a
line starting with white space gets an empty line before it (so that it cannot
continue the Received: header).

Parameters: cleanup_service_name, ipc_timeout, ipc_idle, ipc_ttl, content_filter,
receive_override_options, local_header_rewrite_clients, mynetworks, inet_interfaces,
proxy_interfaces, parent_domain_matches_subdomains.
Diagnostics: SinkError with cleanup's reply (content rejected, too many hops, message
too big, full disk, ...) or ``451 4.3.0 Error: queue file write error`` (logged as a
warning) when cleanup cannot be reached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time

from fastpost.daemons.smtpd.info import ClientInfo, Envelope, Recipient
from fastpost.daemons.smtpd.sink import MessageSink, SinkError, Transaction
from fastpost.mail import cleanup_proto as P
from fastpost.mail.cleanup_clnt import (CHUNK, CleanupClient, CleanupError, CleanupRefused,
                                         CleanupTxn)
from fastpost.mail.cleanup_clnt import _FINISHED, _OPEN, _OPENING
from fastpost.smtp import replies
from fastpost.smtp.replies import Reply
from fastpost.util import log

__all__ = ["CleanupSink", "LocalClients", "reply_of"]


def reply_of(code: int, text: str) -> Reply:
    """cleanup's (code, "d.d.d text") as a Reply."""
    dsn, _, rest = text.partition(" ")
    if len(dsn) >= 5 and dsn[0] in "245" and dsn[1] == ".":
        return Reply(code, rest or dsn, dsn)
    return Reply(code, text)


class LocalClients:
    """local_header_rewrite_clients: who gets rewrite_context=local (module docstring)."""

    def __init__(self, cfg):
        from fastpost.daemons.smtpd.netmatch import HostList, parent_matching
        from fastpost.mail import maps

        self.inet_interfaces = False
        self.mynetworks = None
        self.sasl = False
        self.tls_certs = False
        self.tls_all_certs = False
        self.tables: list = []
        words = cfg.get_list("local_header_rewrite_clients")
        i = 0
        while i < len(words):
            w = words[i]
            lw = w.lower()
            if lw == "permit_inet_interfaces":
                self.inet_interfaces = True
            elif lw == "permit_mynetworks":
                self.mynetworks = HostList(
                    cfg.get_list("mynetworks"),
                    parent=parent_matching("mynetworks", cfg.get("parent_domain_matches_subdomains")),
                    cfg=cfg)
            elif lw == "permit_sasl_authenticated":
                self.sasl = True
            elif lw == "permit_tls_clientcerts":
                self.tls_certs = True
            elif lw == "permit_tls_all_clientcerts":
                self.tls_all_certs = True
            elif lw == "check_address_map" and i + 1 < len(words):
                i += 1
                self.tables.append(maps.open_map(words[i], cfg))
            elif ":" in w:
                self.tables.append(maps.open_map(w, cfg))
            else:
                log.warn("local_header_rewrite_clients: unknown element '%s' ignored", w)
            i += 1
        self.interfaces: set[str] = set()
        self.any_interface = False
        for word in cfg.get_list("inet_interfaces") + cfg.get_list("proxy_interfaces"):
            lw = word.lower()
            if lw in ("all", "loopback-only", "localhost"):
                self.any_interface = lw == "all"
                self.interfaces.update({"127.0.0.1", "::1"})
                continue
            try:
                self.interfaces.add(str(ipaddress.ip_address(word.strip("[]"))))
            except ValueError:
                pass
        self._cache: dict = {}

    def is_local(self, client: ClientInfo) -> bool:
        """True when the client's message headers are rewritten as local mail."""
        if self.sasl and client.sasl_username is not None:
            return True
        tls = client.tls
        if tls is not None and tls.peer_cert:
            if self.tls_all_certs or (self.tls_certs and getattr(tls, "peer_verified", False)):
                return True
        addr = client.addr
        if self.inet_interfaces and addr and (
                addr in self.interfaces or (self.any_interface and addr == client.server_addr)):
            return True
        if self.mynetworks is not None and self.mynetworks.match(client.name, addr):
            return True
        for table in self.tables:
            if addr and table.get(addr) is not None:
                return True
        return False


#: client_address_type: AF_INET6 or AF_INET (Postfix's numbers)
_ADDR_TYPE_6 = ("client_address_type", "10")
_ADDR_TYPE_4 = ("client_address_type", "2")


def _first_line(head: bytes) -> bytes:
    """Postfix's fix-ups of the client's first line (module docstring)."""
    if head.lstrip(b">").startswith(b"From "):
        return b"X-Mailbox-Line: " + head
    if head[:1] in (b" ", b"\t"):
        return b"\r\n" + head
    return head


class _CleanupTransaction(CleanupTxn, Transaction):
    """One message: the session's transaction, the cleanup client's transaction and
    its listener in one object (one object and one call per step instead of three).

    cleanup's answers arrive here directly (cleanup_opened, cleanup_answered,
    cleanup_failed) and settle the two futures the session waits on: ``id_pending``
    (the queue ID, before DATA) and the one finish() returns (the commit, kept in
    CleanupTxn's ``result``). ``add_recipient``, ``write``, ``finish`` and ``abort``
    are the session's (sink.Transaction) and call CleanupTxn's.
    """

    __slots__ = ("queue_id", "envelope", "stage", "head", "id_pending", "path", "on_id")

    def __init__(self, envelope: Envelope, path: str, loop):
        # CleanupTxn's fields, set here (CleanupTxn.__init__(self, None, 0, self) would
        # be one Python call more per message); conn and tid are set by start().
        self.listener = self
        self.state = _OPENING
        self.opened = None
        self.result = None
        self._rcpts = []
        self._data = []
        self._size = 0
        self.done = False
        self.error = None
        self.queue_id = ""
        self.envelope = envelope
        self.stage = 0  # 0: Received: header next, 1: first client line next, 2: the rest
        self.head = b""
        #: a future of the queue ID while cleanup has not answered the OPEN (the session
        #: replies to RCPT meanwhile and waits for it before 354); SinkError if refused.
        #: (made here: get_running_loop() would cost a getpid())
        self.id_pending: asyncio.Future = loop.create_future()
        self.path = path  # cleanup's endpoint, for the diagnostics
        #: the session's ``_id_arrived(txn, id_pending)``, set by the session instead of
        #: a done-callback on id_pending (one loop handle and a closure less per
        #: message); called once, right after id_pending got the ID, then cleared (it
        #: references the session, which references this transaction).
        self.on_id = None

    # -- the cleanup client's listener ---------------------------------------------------

    def cleanup_opened(self, queue_id: str) -> None:
        self.queue_id = queue_id
        pending = self.id_pending
        if not pending.done():
            pending.set_result(queue_id)
        on_id = self.on_id
        if on_id is not None:
            self.on_id = None
            on_id(self, pending)

    def cleanup_answered(self, code: int, text: str, queue_id: str) -> None:
        # The last answer: break the self-reference (``listener`` is self) so that the
        # transaction, its futures, envelope and lists are freed by their reference
        # counts; left in a cycle they cost the cyclic GC ~12,000 instructions per
        # message (docs/accept.md, "Session 9: the cleanup-sink glue, a short round").
        self.listener = None
        result = self.result
        if result is None or result.done():
            return
        if code == 250:
            result.set_result(queue_id or self.queue_id)
        else:
            result.set_exception(SinkError(reply_of(code, text)))

    def cleanup_failed(self, exc: BaseException) -> None:
        pending = self.id_pending
        if not pending.done():
            if isinstance(exc, CleanupRefused):
                err = SinkError(reply_of(exc.code, exc.text))
            elif isinstance(exc, CleanupError):
                err = SinkError(replies.WRITE_ERROR, log=f"cleanup: {exc}")
            else:
                err = exc
            pending.set_exception(err)
            pending.exception()  # retrieved: the session may end before it looks
        result = self.result
        if result is not None and not result.done():
            result.set_exception(SinkError(replies.WRITE_ERROR, log=f"cleanup: {exc}")
                                 if isinstance(exc, CleanupError) else exc)
        self.listener = None  # no answer follows: break the self-reference (above)
        self.on_id = None  # (the session learns of the refusal from id_pending at DATA)

    # -- the session's transaction -------------------------------------------------------

    def add_recipient(self, recipient: Recipient) -> None:
        notify = recipient.notify
        self._rcpts.append((recipient.address, recipient.orcpt or "",
                            P.notify_bits(notify) if notify else 0))

    def write(self, data: bytes):
        stage = self.stage
        if stage != 2:
            if stage == 0:
                # smtpd's own lines (PREPENDs, then its Received: header) come first.
                if data.startswith(b"Received: "):
                    self.stage = 1
            else:
                # The client's first line: look at it whole (or at enough of it) first.
                head = self.head + data if self.head else data
                if head.find(b"\n") < 0 and len(head) < 1024:
                    self.head = head
                    return None
                self.head = b""
                self.stage = 2
                first = head[:1]
                if first == b">" or first == b" " or first == b"\t" or head.startswith(b"From "):
                    head = _first_line(head)
                data = head
        # CleanupTxn.write, inline (no second call per chunk)
        if self.done:
            return None
        self._data.append(data)
        size = self._size + len(data)
        self._size = size
        if size >= CHUNK:
            self._flush_data(P.DATA)
        conn = self.conn
        return conn.drain_waiter() if conn.paused else None

    def finish(self):
        """A future of the queue ID, set when cleanup answers (a plain future set by
        the listener: a coroutine would cost the session a Task per message)."""
        if self.head:
            head, self.head = self.head, b""
            self.stage = 2
            CleanupTxn.write(self, _first_line(head))
        env = self.envelope
        extra = None
        if env.hold or env.discard or env.filter or env.redirect or env.bcc:
            extra = {}
            for name in ("hold", "discard", "filter", "redirect"):
                value = getattr(env, name, None)
                if value:
                    extra[name] = value if isinstance(value, str) else "yes"
            if env.bcc:
                extra["bcc"] = list(env.bcc)
        if self.error is not None:  # the connection went away during the content
            raise SinkError(replies.WRITE_ERROR, log=f"cleanup: {self.error}")
        if self.done:
            raise RuntimeError("transaction already finished")
        # CleanupTxn.finish and _flush_data, inline: the END frame with what is left
        self.done = True
        if self.state == _OPEN:
            self.state = _FINISHED
        conn = self.conn
        result = conn.loop.create_future()
        self.result = result
        frame = {"o": P.END, "t": self.tid}
        if self._rcpts:
            frame["r"] = self._rcpts
            self._rcpts = []
        data = self._data
        if data:
            frame["d"] = data[0] if len(data) == 1 else b"".join(data)
            self._data = []
            self._size = 0
        if extra:
            frame.update(extra)
        conn.out.append(frame)
        if not conn.flush_scheduled and conn.ready:
            conn.flush_scheduled = True
            conn.loop.call_soon(conn.flush)
        if conn.watch_handle is None:
            conn.armed(self)
        return result

    def abort(self) -> None:
        CleanupTxn.abort(self)
        if self.tid not in self.conn.txns:  # forgotten: no answer reaches it any more
            self.listener = None
            self.on_id = None


class CleanupSink(MessageSink):
    """Messages to the cleanup service (module docstring)."""

    def __init__(self, client: CleanupClient, *, flags: int, content_filter: str = "",
                 local_clients: LocalClients | None = None):
        self.client = client
        self.flags = flags
        self.content_filter = content_filter
        self.local_clients = local_clients

    @classmethod
    def from_config(cls, cfg, queue_directory: str | None = None) -> "CleanupSink":
        from fastpost.mail import ipc

        qdir = queue_directory if queue_directory is not None else cfg.get("queue_directory")
        path = ipc.endpoint(qdir, cfg.get("cleanup_service_name"), ipc.PUBLIC)
        client = CleanupClient(path, timeout=float(cfg.get_time("ipc_timeout")),
                               idle=float(cfg.get_time("ipc_idle")),
                               ttl=float(cfg.get_time("ipc_ttl")))
        for word in P.unknown_override_options(cfg):
            log.warn("receive_override_options: unknown option '%s' ignored", word)
        return cls(client, flags=P.external_flags(cfg), content_filter=cfg.get("content_filter"),
                   local_clients=LocalClients(cfg))

    def begin(self, client: ClientInfo, envelope: Envelope):
        name = client.name
        addr = client.addr
        port = client.port
        helo = client.helo
        proto = client.protocol
        fwd = client.forwarded
        if fwd:  # XFORWARD from a content filter: the log_* attributes are the original's
            log_name = fwd.get("NAME", name)
            log_addr = fwd.get("ADDR", addr)
            log_port = fwd.get("PORT", port)
            log_helo = fwd.get("HELO", helo or "")
            log_proto = fwd.get("PROTO", proto)
        else:
            log_name, log_addr, log_port, log_helo, log_proto = name, addr, port, helo, proto
        # The attributes with a value, in this order, as (name, value) pairs (one test
        # per attribute; tuples: cleanup reads pairs, and the encoder takes any sequence).
        attrs = []
        add = attrs.append
        if log_name:
            add(("log_client_name", log_name))
        if log_addr:
            add(("log_client_address", log_addr))
        if log_port:
            add(("log_client_port", log_port))
        add(("log_message_origin", f"{log_name}[{log_addr}]"))
        if log_helo:
            add(("log_helo_name", log_helo))
        if log_proto:
            add(("log_protocol_name", log_proto))
        if name:
            add(("client_name", name))
        if client.reverse_name:
            add(("reverse_client_name", client.reverse_name))
        if addr:
            add(("client_address", addr))
        if port:
            add(("client_port", port))
        if client.server_addr:
            add(("server_address", client.server_addr))
        if client.server_port:
            add(("server_port", client.server_port))
        if helo:
            add(("helo_name", helo))
        if proto:
            add(("protocol_name", proto))
        add(_ADDR_TYPE_6 if ":" in addr else _ADDR_TYPE_4)
        if fwd and "IDENT" in fwd:
            add(("log_ident", fwd["IDENT"]))
        if client.sasl_method:
            add(("sasl_method", client.sasl_method))
            add(("sasl_username", client.sasl_username or ""))
        if fwd and "SOURCE" in fwd:
            local = fwd["SOURCE"] == "LOCAL"
        else:
            try:
                local = self.local_clients is not None and self.local_clients.is_local(client)
            except Exception as exc:  # noqa: BLE001 - a table that cannot answer: remote
                log.warn("local_header_rewrite_clients lookup failed: %s", exc)
                local = False
        meta = {"f": self.flags, "time": int(time.time() * 1e6), "s": envelope.sender, "a": attrs,
                "ctx": "local" if local else "remote", "ident": 1}
        if self.content_filter:
            meta["filter"] = self.content_filter
        body = envelope.body
        if body is not None:
            if body == "8BITMIME":
                meta["enc"] = "8bit"
            elif body == "7BIT":
                meta["enc"] = "7bit"
        if envelope.ret:
            meta["ret"] = P.RET.get(envelope.ret, "")
        if envelope.envid:
            meta["envid"] = envelope.envid
        # Not waiting for the queue ID here saves the session a round trip to cleanup
        # (RCPT is answered at once; the ID is needed at DATA, for the Received:
        # header, by when cleanup has long answered). A refused OPEN (full disk) is
        # then the reply to DATA/BDAT instead of RCPT. (The listener is called from a
        # later turn of the loop, never from start().)
        cc = self.client
        conn = cc.conn
        try:
            t = _CleanupTransaction(envelope, cc.path, conn.loop if conn is not None
                                    else asyncio.get_running_loop())
            cc.start(t, meta)
        except RuntimeError as exc:
            raise SinkError(replies.WRITE_ERROR, log=f"cleanup: {exc}") from None
        return t

    async def close(self) -> None:
        self.client.close()
